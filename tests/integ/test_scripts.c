/*
 * The Lua scripts (scripts.h) against a real redis-server: each script's
 * branches with chosen keys, the digests Redis gives them, the store
 * loading them at connect and falling back to EVAL after SCRIPT FLUSH, and
 * the hash slots of every script's KEYS as the code names them.
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
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "delivery_def.h"
#include "evqueue.h"
#include "harness.h"
#include "keys.h"
#include "log.h"
#include "scripts.h"
#include "store.h"

static struct harness H;
static redisContext *R;
static redisReply *Last; /* the reply of the last ev/cmd, freed by the next */

/*---- Helpers ----*/

static void
keep(redisReply *r)
{
    if (Last != NULL)
        freeReplyObject(Last);
    Last = r;
    assert_non_null(r);
}

/* EVAL script id with nkeys keys, then arguments up to NULL. */
static redisReply *
ev(enum script_id id, int nkeys, ...)
{
    const char *argv[40];
    char n[8];
    int argc = 0;
    const char *a;
    va_list ap;

    snprintf(n, sizeof(n), "%d", nkeys);
    argv[argc++] = "EVAL";
    argv[argc++] = scripts_text(id);
    argv[argc++] = n;
    va_start(ap, nkeys);
    while ((a = va_arg(ap, const char *)) != NULL && argc < 40)
        argv[argc++] = a;
    va_end(ap);
    keep(redisCommandArgv(R, argc, argv, NULL));
    if (Last->type == REDIS_REPLY_ERROR)
        fprintf(stderr, "# %s: %s\n", scripts_name(id), Last->str);
    assert_int_not_equal(Last->type, REDIS_REPLY_ERROR);
    return Last;
}

static long long
integer_of(redisReply *r)
{
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    return r->integer;
}

#define EVI(...) integer_of(ev(__VA_ARGS__, NULL))
#define EVR(...) ev(__VA_ARGS__, NULL)

static redisReply *
cmd(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    keep(redisvCommand(R, fmt, ap));
    va_end(ap);
    return Last;
}

static long long
cmdi(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    keep(redisvCommand(R, fmt, ap));
    va_end(ap);
    return integer_of(Last);
}

/* The string reply of a command, "" for nil. */
static const char *
cmds(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    keep(redisvCommand(R, fmt, ap));
    va_end(ap);
    if (Last->type == REDIS_REPLY_NIL)
        return "";
    assert_int_equal(Last->type, REDIS_REPLY_STRING);
    return Last->str;
}

static const char *
elem(redisReply *r, size_t i)
{
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_true(i < r->elements);
    if (r->element[i]->type == REDIS_REPLY_INTEGER) {
        static char buf[32];

        snprintf(buf, sizeof(buf), "%lld", r->element[i]->integer);
        return buf;
    }
    return r->element[i]->type == REDIS_REPLY_NIL ? "" : r->element[i]->str;
}

static long long
now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int
setup(void **state)
{
    (void)state;
    log_init(LOG_LVL_ERROR, 0);
    signal(SIGPIPE, SIG_IGN);
    if (h_setup(&H) != 0)
        return -1;
    R = h_redis(&H);
    return R != NULL && !R->err ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    if (Last != NULL)
        freeReplyObject(Last);
    Last = NULL;
    redisFree(R);
    h_teardown(&H);
    return 0;
}

static int
flush(void **state)
{
    (void)state;
    keep(redisCommand(R, "FLUSHALL"));
    return 0;
}

/*---- The library ----*/

static void
test_names_unique_and_digests_match_redis(void **state)
{
    char sha[SCRIPTS_SHA1_HEX + 1];
    int i, j;

    (void)state;
    assert_null(scripts_text(SCRIPT_COUNT));
    assert_null(scripts_name(SCRIPT_COUNT));
    for (i = 0; i < SCRIPT_COUNT; i++) {
        const char *t = scripts_text((enum script_id)i);

        assert_non_null(t);
        assert_non_null(scripts_name((enum script_id)i));
        for (j = 0; j < i; j++)
            assert_string_not_equal(scripts_name((enum script_id)i),
                                    scripts_name((enum script_id)j));
        /* every script compiles, and its digest is the one Redis gives */
        cmd("SCRIPT LOAD %s", t);
        assert_int_equal(Last->type, REDIS_REPLY_STRING);
        assert_int_equal(scripts_sha1(t, strlen(t), sha), BRK_OK);
        assert_string_equal(Last->str, sha);
    }
}

/*---- The store: loaded at connect, EVAL again after NOSCRIPT ----*/

static struct event_base *Base;

struct result {
    int calls;
    enum brk_err err;
    long long integer;
};

static void
on_reply(enum brk_err err, struct redisReply *r, void *arg)
{
    struct result *res = arg;

    res->calls++;
    res->err = err;
    res->integer = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -99;
}

/* h_wait conditions that run the event loop between looks */
static int
is_up(void *arg)
{
    event_base_loop(Base, EVLOOP_NONBLOCK);
    return store_is_up(arg);
}

static int
answered(void *arg)
{
    event_base_loop(Base, EVLOOP_NONBLOCK);
    return ((struct result *)arg)->calls > 0;
}

static int
loaded(enum script_id id)
{
    char sha[SCRIPTS_SHA1_HEX + 1];
    const char *t = scripts_text(id);

    assert_int_equal(scripts_sha1(t, strlen(t), sha), BRK_OK);
    cmd("SCRIPT EXISTS %s", sha);
    assert_int_equal(Last->type, REDIS_REPLY_ARRAY);
    return (int)Last->element[0]->integer;
}

static void
test_store_loads_then_falls_back_to_eval(void **state)
{
    char url[400];
    struct store *s = NULL;
    struct result r = {0};
    const char *argv[5] = {"EVAL", scripts_text(SCRIPT_TOKEN_LOCK_RELEASE), "1",
                           "lock", "f1"};
    const char *bad[4] = {"EVAL", scripts_text(SCRIPT_TOKEN_LOCK_RELEASE), "2",
                          "lock"};
    const char *fake[3] = {"EVAL",
                           "redis.call('INCR', 'fake-tries')\n"
                           "return redis.error_reply('NOSCRIPT not really')\n",
                           "0"};
    int i;

    (void)state;
    Base = event_base_new();
    assert_non_null(Base);
    cmd("SCRIPT FLUSH");
    snprintf(url, sizeof(url), "unix://%s", H.redis_sock);
    assert_int_equal(store_new(Base, url, 2000, &s), BRK_OK);
    assert_true(h_wait(is_up, s, 5000));
    /* up means every script is in Redis's cache */
    for (i = 0; i < SCRIPT_COUNT; i++)
        assert_int_equal(loaded((enum script_id)i), 1);

    cmd("SCRIPT FLUSH");
    assert_int_equal(loaded(SCRIPT_TOKEN_LOCK_RELEASE), 0);
    cmd("SET lock f1");
    assert_int_equal(store_cmd_argv(s, on_reply, &r, 5, argv, NULL), BRK_OK);
    assert_true(h_wait(answered, &r, 5000));
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(r.integer, 1);
    assert_int_equal(cmdi("EXISTS lock"), 0);
    /* the EVAL loaded it again */
    assert_int_equal(loaded(SCRIPT_TOKEN_LOCK_RELEASE), 1);

    /* by digest now; an error of the script's own is the caller's */
    memset(&r, 0, sizeof(r));
    assert_int_equal(store_cmd_argv(s, on_reply, &r, 4, bad, NULL), BRK_OK);
    assert_true(h_wait(answered, &r, 5000));
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, BRK_ERR_STORE);

    /* a flush between two calls: each still answered once, right */
    cmd("SCRIPT FLUSH");
    memset(&r, 0, sizeof(r));
    assert_int_equal(store_cmd_argv(s, on_reply, &r, 5, argv, NULL), BRK_OK);
    assert_true(h_wait(answered, &r, 5000));
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(r.integer, 0);

    /* a script whose own error reads NOSCRIPT: unknown, it is sent as
     * EVAL once and runs once; loaded (by that EVAL), it runs by digest,
     * then once more as EVAL, and each call is answered once */
    memset(&r, 0, sizeof(r));
    assert_int_equal(store_cmd_argv(s, on_reply, &r, 3, fake, NULL), BRK_OK);
    assert_true(h_wait(answered, &r, 5000));
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, BRK_ERR_STORE);
    assert_string_equal(cmds("GET fake-tries"), "1");
    memset(&r, 0, sizeof(r));
    assert_int_equal(store_cmd_argv(s, on_reply, &r, 3, fake, NULL), BRK_OK);
    assert_true(h_wait(answered, &r, 5000));
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, BRK_ERR_STORE);
    assert_string_equal(cmds("GET fake-tries"), "3");
    store_free(s);
    event_base_free(Base);
    Base = NULL;
}

/*---- Event queues ----*/

static void
test_evq_push_and_handover(void **state)
{
    const char *id;

    (void)state;
    assert_int_equal(EVI(SCRIPT_EVQ_PUSH, 4, "seen1", "ev", "ready", "seq",
                         "60", "", "f", "v"),
                     1);
    assert_int_equal(cmdi("XLEN ev"), 1);
    assert_int_equal(cmdi("EXISTS ready seq"), 0);
    assert_int_equal(cmdi("TTL seen1") > 0, 1);
    assert_int_equal(EVI(SCRIPT_EVQ_PUSH, 4, "seen1", "ev", "ready", "seq",
                         "60", "", "f", "v"),
                     0);
    assert_int_equal(cmdi("XLEN ev"), 1);
    assert_int_equal(EVI(SCRIPT_EVQ_PUSH, 4, "seen2", "q:c1", "ready", "seq",
                         "60", "c1", "f", "v"),
                     1);
    assert_string_equal(cmds("HGET seq c1"), "1");
    assert_int_equal(cmdi("ZCARD ready"), 1);

    cmd("XGROUP CREATE ev g 0");
    cmd("XREADGROUP GROUP g me COUNT 1 STREAMS ev >");
    assert_int_equal(Last->type, REDIS_REPLY_ARRAY);
    id = Last->element[0]->element[1]->element[0]->element[0]->str;
    {
        char idc[64];

        snprintf(idc, sizeof(idc), "%s", id);
        cmd("HSET att %s 2", idc);
        assert_int_equal(EVI(SCRIPT_EVQ_HANDOVER, 5, "ev", "att", "q:c1",
                             "ready", "seq", "g", idc, "c1", "k", "x"),
                         1);
        assert_int_equal(cmdi("HEXISTS att %s", idc), 0);
    }
    assert_int_equal(cmdi("XLEN ev"), 0);
    cmd("XPENDING ev g");
    assert_int_equal(Last->element[0]->integer, 0);
    assert_int_equal(cmdi("XLEN q:c1"), 2);
    assert_string_equal(cmds("HGET seq c1"), "2");
}

static void
test_evq_leases(void **state)
{
    redisReply *r;
    long long t = now_ms();

    (void)state;
    cmd("ZADD ready 0 c1 9999999999999 c2");
    cmd("HSET seq c1 3");
    r = EVR(SCRIPT_EVQ_CLAIM, 3, "ready", "lease", "seq", "1000", "me", "10");
    assert_int_equal(r->elements, 3);
    assert_string_equal(elem(r, 0), "c1");
    assert_string_equal(elem(r, 1), "3");
    assert_string_equal(elem(r, 2), "");
    assert_string_equal(cmds("HGET lease c1"), "me");
    assert_true(atoll(cmds("ZSCORE ready c1")) >= t + 1000);
    /* leased: not claimable until it runs out */
    r = EVR(SCRIPT_EVQ_CLAIM, 3, "ready", "lease", "seq", "1000", "other",
            "10");
    assert_int_equal(r->elements, 0);
    cmd("ZADD ready 0 c1");
    r = EVR(SCRIPT_EVQ_CLAIM, 3, "ready", "lease", "seq", "1000", "other",
            "10");
    assert_int_equal(r->elements, 3);
    assert_string_equal(elem(r, 2), "me");

    /* refresh: only the holder */
    assert_int_equal(
        EVI(SCRIPT_EVQ_REFRESH, 2, "ready", "lease", "c1", "me", "5000"), 0);
    assert_int_equal(
        EVI(SCRIPT_EVQ_REFRESH, 2, "ready", "lease", "c1", "other", "50000"),
        1);
    assert_true(atoll(cmds("ZSCORE ready c1")) >= t + 50000);

    /* reclaim: mine, except those kept */
    cmd("HSET lease c1 me c2 me c3 other");
    assert_int_equal(EVI(SCRIPT_EVQ_RECLAIM, 2, "ready", "lease", "me", "c2"),
                     1);
    assert_int_equal(cmdi("HEXISTS lease c1"), 0);
    assert_string_equal(cmds("HGET lease c2"), "me");
    assert_string_equal(cmds("HGET lease c3"), "other");
    assert_true(atoll(cmds("ZSCORE ready c1")) <= now_ms());

    /* backoff: only the holder; ready again after the delay */
    assert_int_equal(
        EVI(SCRIPT_EVQ_BACKOFF, 2, "ready", "lease", "c3", "me", "60000"), 0);
    assert_int_equal(
        EVI(SCRIPT_EVQ_BACKOFF, 2, "ready", "lease", "c3", "other", "60000"),
        1);
    assert_int_equal(cmdi("HEXISTS lease c3"), 0);
    assert_true(atoll(cmds("ZSCORE ready c3")) >= t + 60000);
}

static void
test_evq_release(void **state)
{
    (void)state;
    cmd("HSET lease c1 me");
    cmd("HSET seq c1 3");
    cmd("ZADD ready 9999999999999 c1");
    cmd("HSET qa x 1");
    assert_int_equal(EVI(SCRIPT_EVQ_RELEASE, 5, "ready", "lease", "seq", "q",
                         "qa", "c1", "3", "other"),
                     0);
    /* nothing new since the claim and the queue empty: dropped */
    assert_int_equal(EVI(SCRIPT_EVQ_RELEASE, 5, "ready", "lease", "seq", "q",
                         "qa", "c1", "3", "me"),
                     1);
    assert_int_equal(cmdi("EXISTS lease seq qa"), 0);
    assert_int_equal(cmdi("ZCARD ready"), 0);
    /* an event came in meanwhile: ready again */
    cmd("HSET lease c1 me");
    cmd("HSET seq c1 4");
    assert_int_equal(EVI(SCRIPT_EVQ_RELEASE, 5, "ready", "lease", "seq", "q",
                         "qa", "c1", "3", "me"),
                     2);
    assert_int_equal(cmdi("HEXISTS lease c1"), 0);
    assert_string_equal(cmds("HGET seq c1"), "4");
    assert_true(atoll(cmds("ZSCORE ready c1")) <= now_ms());
    /* the seq matches but the queue holds entries: ready again */
    cmd("HSET lease c1 me");
    cmd("XADD q * f v");
    assert_int_equal(EVI(SCRIPT_EVQ_RELEASE, 5, "ready", "lease", "seq", "q",
                         "qa", "c1", "4", "me"),
                     2);
    assert_int_equal(cmdi("XLEN q"), 1);
}

static void
test_evq_ack_and_dead(void **state)
{
    char id[64];
    redisReply *r;

    (void)state;
    snprintf(id, sizeof(id), "%s", cmds("XADD q * f v"));
    cmd("HSET qa %s 2", id);
    assert_int_equal(EVI(SCRIPT_EVQ_TENANT_ACK, 2, "q", "qa", id), 1);
    assert_int_equal(cmdi("XLEN q"), 0);
    assert_int_equal(cmdi("EXISTS qa"), 0);

    snprintf(id, sizeof(id), "%s", cmds("XADD q * f v"));
    cmd("HSET qa %s 5", id);
    assert_int_equal(EVI(SCRIPT_EVQ_TENANT_DEAD, 3, "q", "qa", "dead", id,
                         "gave up", "5", "c1"),
                     1);
    assert_int_equal(cmdi("XLEN q"), 0);
    assert_int_equal(cmdi("EXISTS qa"), 0);
    r = cmd("XRANGE dead - +");
    assert_int_equal(r->elements, 1);
    /* id, reason, attempts, corp, then the entry's own fields */
    assert_int_equal(r->element[0]->element[1]->elements, 10);
    assert_string_equal(r->element[0]->element[1]->element[7]->str, "c1");
    assert_string_equal(r->element[0]->element[1]->element[9]->str, "v");
    /* an entry already gone is dead-lettered without fields */
    assert_int_equal(EVI(SCRIPT_EVQ_TENANT_DEAD, 3, "q", "qa", "dead", "1-1",
                         "gone", "1", "c1"),
                     1);
    assert_int_equal(cmdi("XLEN dead"), 2);
}

static void
test_stream_ack_and_dead(void **state)
{
    char id1[64], id2[64];
    redisReply *r;

    (void)state;
    cmd("XGROUP CREATE ev g 0 MKSTREAM");
    snprintf(id1, sizeof(id1), "%s", cmds("XADD ev * a 1"));
    snprintf(id2, sizeof(id2), "%s", cmds("XADD ev * b 2"));
    cmd("XREADGROUP GROUP g me COUNT 2 STREAMS ev >");
    cmd("HSET att %s 1 %s 3", id1, id2);
    assert_int_equal(EVI(SCRIPT_STREAM_ACK, 2, "ev", "att", "g", id1), 1);
    assert_int_equal(cmdi("HEXISTS att %s", id1), 0);
    assert_int_equal(cmdi("XLEN ev"), 1);
    assert_int_equal(
        EVI(SCRIPT_STREAM_DEAD, 3, "ev", "att", "dead", "g", id2, "bad", "3"),
        1);
    assert_int_equal(cmdi("XLEN ev"), 0);
    assert_int_equal(cmdi("EXISTS att"), 0);
    cmd("XPENDING ev g");
    assert_int_equal(Last->element[0]->integer, 0);
    r = cmd("XRANGE dead - +");
    assert_int_equal(r->elements, 1);
    assert_int_equal(r->element[0]->element[1]->elements, 8);
    assert_string_equal(r->element[0]->element[1]->element[1]->str, id2);
    assert_string_equal(r->element[0]->element[1]->element[7]->str, "2");
}

/*---- Tickets, tokens, budgets ----*/

static void
test_suite_ticket_newest_wins(void **state)
{
    (void)state;
    assert_int_equal(
        EVI(SCRIPT_SUITE_TICKET_STORE, 1, "t", "100", "T100", "1", "600"), 1);
    assert_int_equal(
        EVI(SCRIPT_SUITE_TICKET_STORE, 1, "t", "100", "T100b", "2", "600"), 0);
    assert_int_equal(
        EVI(SCRIPT_SUITE_TICKET_STORE, 1, "t", "99", "T99", "3", "600"), 0);
    assert_string_equal(cmds("HGET t ticket"), "T100");
    assert_int_equal(
        EVI(SCRIPT_SUITE_TICKET_STORE, 1, "t", "101", "T101", "4", "600"), 1);
    assert_string_equal(cmds("HGET t ticket"), "T101");
    assert_string_equal(cmds("HGET t at"), "4");
    assert_true(cmdi("TTL t") > 0);
}

static void
test_access_tokens(void **state)
{
    char exp[24];

    (void)state;
    snprintf(exp, sizeof(exp), "%lld", now_ms() + 60000);
    /* without the lock held under our fence, nothing is stored */
    assert_int_equal(
        EVI(SCRIPT_ACCESS_TOKEN_STORE, 2, "tok", "lock", "f1", "S", exp, "fp"),
        0);
    cmd("SET lock f2");
    assert_int_equal(
        EVI(SCRIPT_ACCESS_TOKEN_STORE, 2, "tok", "lock", "f1", "S", exp, "fp"),
        0);
    assert_int_equal(cmdi("EXISTS tok"), 0);
    cmd("SET lock f1");
    assert_int_equal(
        EVI(SCRIPT_ACCESS_TOKEN_STORE, 2, "tok", "lock", "f1", "S", exp, "fp"),
        1);
    assert_string_equal(cmds("HGET tok tok"), "S");
    assert_true(cmdi("PTTL tok") > 0);
    assert_int_equal(cmdi("EXISTS lock"), 0);

    /* a refusal drops only the token it was about */
    assert_int_equal(EVI(SCRIPT_ACCESS_TOKEN_REJECT, 1, "tok", "other"), 0);
    assert_int_equal(cmdi("EXISTS tok"), 1);
    assert_int_equal(EVI(SCRIPT_ACCESS_TOKEN_REJECT, 1, "tok", "fp"), 1);
    assert_int_equal(cmdi("EXISTS tok"), 0);

    cmd("SET lock f3");
    assert_int_equal(EVI(SCRIPT_TOKEN_LOCK_RELEASE, 1, "lock", "f1"), 0);
    assert_int_equal(cmdi("EXISTS lock"), 1);
    assert_int_equal(EVI(SCRIPT_TOKEN_LOCK_RELEASE, 1, "lock", "f3"), 1);
    assert_int_equal(cmdi("EXISTS lock"), 0);
}

static redisReply *
lease(const char *want, const char *lm, const char *lh, const char *bg,
      const char *cm, const char *ch)
{
    return EVR(SCRIPT_BUDGET_LEASE, 3, "m", "h", "p", want, lm, lh, bg, cm, ch,
               "60000", "3600000", "7777");
}

static void
assert_lease(redisReply *r, long long granted, long long why)
{
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    assert_int_equal(r->element[0]->integer, granted);
    assert_int_equal(r->element[1]->integer, why);
}

static void
test_budget_lease_and_pause(void **state)
{
    redisReply *r;

    (void)state;
    assert_lease(lease("5", "8", "100", "0", "0", "0"), 5, 0);
    assert_lease(lease("5", "8", "100", "0", "0", "0"), 3, 0);
    assert_lease(lease("5", "8", "100", "0", "0", "0"), 0, 1);
    assert_true(cmdi("PTTL m") > 0);
    assert_true(cmdi("PTTL h") > 0);
    /* the hour is checked first */
    assert_lease(lease("5", "100", "8", "0", "0", "0"), 0, 2);
    cmd("DEL m h");
    /* background work within its own share */
    assert_lease(lease("5", "100", "100", "1", "2", "100"), 2, 0);
    assert_lease(lease("5", "100", "100", "1", "2", "100"), 0, 1);
    assert_lease(lease("5", "100", "100", "0", "2", "100"), 5, 0);
    assert_string_equal(cmds("HGET m bg"), "2");
    assert_string_equal(cmds("HGET m all"), "7");

    assert_int_equal(EVI(SCRIPT_BUDGET_PAUSE, 1, "p", "5000", "chan", "msg"),
                     1);
    assert_true(cmdi("PTTL p") > 0);
    r = lease("1", "100", "100", "0", "0", "0");
    assert_lease(r, 0, 3);
    assert_true(r->element[2]->integer > 0 && r->element[2]->integer <= 5000);
    /* a pause without expiry counts as ARGV[9] */
    cmd("SET p 1");
    r = lease("1", "100", "100", "0", "0", "0");
    assert_lease(r, 0, 3);
    assert_int_equal(r->element[2]->integer, 7777);
}

/*---- A tenant's lifecycle ----*/

static void
test_directory_activate(void **state)
{
    (void)state;
    cmd("HSET users:new u1 x");
    cmd("HSET parties p 1");
    cmd("HSET tags:new t1 y");
    /* without a tenant the directory is still swapped, the grant is not */
    assert_int_equal(EVI(SCRIPT_DIRECTORY_ACTIVATE, 7, "users", "parties",
                         "tags", "users:new", "parties:new", "tags:new",
                         "tenant", "status", "active"),
                     -1);
    assert_int_equal(cmdi("EXISTS users:new tags:new parties"), 0);
    assert_string_equal(cmds("HGET users u1"), "x");
    assert_int_equal(cmdi("EXISTS tenant"), 0);
    cmd("HSET tenant status installing");
    cmd("HSET parties:new p2 1");
    assert_int_equal(EVI(SCRIPT_DIRECTORY_ACTIVATE, 7, "users", "parties",
                         "tags", "users:new", "parties:new", "tags:new",
                         "tenant", "status", "active", "level", "1"),
                     1);
    assert_string_equal(cmds("HGET tenant status"), "active");
    assert_string_equal(cmds("HGET tenant level"), "1");
    assert_int_equal(cmdi("EXISTS users tags"), 0);
    assert_string_equal(cmds("HGET parties p2"), "1");
}

static void
test_tenant_install_and_state(void **state)
{
    redisReply *r;

    (void)state;
    r = EVR(SCRIPT_TENANT_STATE_READ, 2, "tenant", "gone");
    assert_string_equal(elem(r, 0), "");
    assert_string_equal(elem(r, 1), "0");
    assert_string_equal(elem(r, 2), "-1");

    /* a reset of no tenant */
    assert_int_equal(EVI(SCRIPT_TENANT_INSTALL, 2, "tenant", "gone", "100", "P",
                         "n", "1", "1", "", "s", "c"),
                     -4);
    assert_int_equal(EVI(SCRIPT_TENANT_INSTALL, 2, "tenant", "gone", "100", "P",
                         "Corp", "1", "0", "", "s", "c"),
                     1);
    assert_string_equal(cmds("HGET tenant status"), "installing");
    assert_string_equal(cmds("HGET tenant authorized_at"), "1");
    assert_string_equal(cmds("HGET tenant corpid"), "c");
    /* the global index is the caller's own step: another slot */
    assert_int_equal(cmdi("EXISTS idx"), 0);
    /* an older event than the one that installed it */
    assert_int_equal(EVI(SCRIPT_TENANT_INSTALL, 2, "tenant", "gone", "99", "P2",
                         "Corp", "2", "0", "", "s", "c"),
                     -3);
    /* a reset keeps the rest; authorized_at stays the first */
    cmd("HSET tenant status active");
    assert_int_equal(EVI(SCRIPT_TENANT_INSTALL, 2, "tenant", "gone", "101",
                         "P3", "", "3", "1", "", "s", "c"),
                     1);
    assert_string_equal(cmds("HGET tenant pcode"), "P3");
    assert_string_equal(cmds("HGET tenant status"), "active");
    assert_string_equal(cmds("HGET tenant event_ts"), "100");
    assert_int_equal(EVI(SCRIPT_TENANT_INSTALL, 2, "tenant", "gone", "102",
                         "P4", "Corp", "4", "0", "", "s", "c"),
                     1);
    assert_string_equal(cmds("HGET tenant status"), "active");
    assert_string_equal(cmds("HGET tenant authorized_at"), "1");
    /* cancelled at or after the event */
    cmd("HSET gone ts 200");
    assert_int_equal(EVI(SCRIPT_TENANT_INSTALL, 2, "tenant", "gone", "200",
                         "P5", "Corp", "5", "0", "", "s", "c"),
                     -2);
    r = EVR(SCRIPT_TENANT_STATE_READ, 2, "tenant", "gone");
    assert_string_equal(elem(r, 0), "active");
    assert_string_equal(elem(r, 1), "102");
    assert_string_equal(elem(r, 2), "200");
    /* one to install again: a reset is refused, an install starts over */
    cmd("DEL gone");
    cmd("HSET tenant status reinstall_required");
    assert_int_equal(EVI(SCRIPT_TENANT_INSTALL, 2, "tenant", "gone", "300",
                         "P6", "Corp", "6", "1", "", "s", "c"),
                     -4);
    assert_int_equal(EVI(SCRIPT_TENANT_INSTALL, 2, "tenant", "gone", "300",
                         "P6", "Corp", "6", "0", "", "s", "c"),
                     1);
    assert_string_equal(cmds("HGET tenant status"), "installing");
}

static void
test_tenant_lost_and_reinstall(void **state)
{
    (void)state;
    cmd("SET authx 1");
    assert_int_equal(EVI(SCRIPT_TENANT_LOST_COUNT, 2, "lost", "authx", "5"), 0);
    assert_int_equal(cmdi("EXISTS lost"), 0);
    cmd("DEL authx");
    assert_int_equal(EVI(SCRIPT_TENANT_LOST_COUNT, 2, "lost", "authx", "5"), 1);
    assert_string_equal(cmds("HGET lost count"), "1");
    assert_string_equal(cmds("HGET lost last_at"), "5");
    /* the lost count is read by the caller first (another slot) */
    cmd("HSET tenant status active");
    assert_int_equal(EVI(SCRIPT_TENANT_REINSTALL_MARK, 1, "tenant", "9", "100"),
                     0);
    cmd("DEL tenant");
    assert_int_equal(EVI(SCRIPT_TENANT_REINSTALL_MARK, 1, "tenant", "9", "100"),
                     1);
    assert_string_equal(cmds("HGET tenant status"), "reinstall_required");
    assert_string_equal(cmds("HGET tenant event_ts"), "100");
}

/* The reply of contact_apply: "kind gen-moved userid deps ..." with
 * gen-moved "+" when the generation after is past the one before. */
static const char *
contact(const char *type, const char *user, const char *new_user,
        const char *depts, const char *party, const char *parent,
        const char *tag, const char *add_u, const char *del_u,
        const char *add_p, const char *del_p)
{
    static char buf[256];
    redisReply *r;
    size_t i, off;

    r = EVR(SCRIPT_CONTACT_APPLY, 4, "parties", "users", "tags", "tenant", type,
            user, new_user, depts, party, parent, tag, add_u, del_u, add_p,
            del_p, "77");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_true(r->elements >= 3);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_INTEGER);
    off = (size_t)snprintf(
        buf, sizeof(buf), "%lld %s", r->element[0]->integer,
        strtoull(elem(r, 2), NULL, 10) > strtoull(elem(r, 1), NULL, 10) ? "+"
                                                                        : "=");
    for (i = 3; i < r->elements; i++)
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, " %s",
                                elem(r, i)[0] ? elem(r, i) : "-");
    return buf;
}

static void
test_contact_apply(void **state)
{
    (void)state;
    assert_string_equal(
        contact("create_user", "u1", "", "1,2", "", "", "", "", "", "", ""),
        "1 + u1 1,2");
    assert_string_equal(cmds("HGET users u1"), "1,2");
    assert_string_equal(cmds("HGET tenant updated_at"), "77");
    /* renamed, departments unchanged: the old value moves */
    assert_string_equal(
        contact("update_user", "u1", "u2", "", "", "", "", "", "", "", ""),
        "1 + u1 - u2 1,2");
    assert_int_equal(cmdi("HEXISTS users u1"), 0);
    assert_string_equal(cmds("HGET users u2"), "1,2");
    assert_string_equal(
        contact("update_user", "u2", "u3", "2", "", "", "", "", "", "", ""),
        "1 + u2 - u3 2");
    assert_string_equal(cmds("HGET users u3"), "2");
    /* an update of a member the directory does not hold, without
     * departments, stores nothing and says so */
    assert_string_equal(
        contact("update_user", "nobody", "", "", "", "", "", "", "", "", ""),
        "1 + nobody -");
    assert_int_equal(cmdi("HEXISTS users nobody"), 0);
    assert_string_equal(
        contact("delete_user", "u3", "", "", "", "", "", "", "", "", ""),
        "1 + u3 -");
    assert_int_equal(cmdi("HLEN users"), 0);

    assert_string_equal(
        contact("create_party", "", "", "", "5", "", "", "", "", "", ""),
        "2 +");
    assert_string_equal(cmds("HGET parties 5"), "1");
    assert_string_equal(
        contact("update_party", "", "", "", "5", "3", "", "", "", "", ""),
        "2 +");
    assert_string_equal(cmds("HGET parties 5"), "3");
    /* an update without a parent leaves it */
    assert_string_equal(
        contact("update_party", "", "", "", "5", "", "", "", "", "", ""),
        "2 +");
    assert_string_equal(cmds("HGET parties 5"), "3");
    assert_string_equal(
        contact("delete_party", "", "", "", "5", "", "", "", "", "", ""),
        "2 +");
    assert_int_equal(cmdi("HLEN parties"), 0);

    assert_string_equal(
        contact("update_tag", "", "", "", "", "", "9", "a,b", "", "1,2", ""),
        "2 +");
    assert_string_equal(cmds("HGET tags 9"),
                        "{\"users\":[\"a\",\"b\"],\"parties\":[1,2]}");
    assert_string_equal(
        contact("update_tag", "", "", "", "", "", "9", "b,c", "a", "", "1,2"),
        "2 +");
    assert_string_equal(cmds("HGET tags 9"),
                        "{\"users\":[\"b\",\"c\"],\"parties\":[]}");
    /* the generations reported are the stored ones, one apart */
    cmd("HSET tenant gen 41");
    assert_string_equal(
        contact("delete_user", "u9", "", "", "", "", "", "", "", "", ""),
        "1 + u9 -");
    assert_string_equal(cmds("HGET tenant gen"), "42");
    cmd("DEL tenant");
    assert_string_equal(
        contact("nonsense", "u1", "", "1", "", "", "", "", "", "", ""), "0 =");
    assert_int_equal(cmdi("EXISTS tenant"), 0);
}

static void
test_tenant_admins(void **state)
{
    (void)state;
    assert_int_equal(EVI(SCRIPT_TENANT_ADMINS_STORE, 1, "tenant", "[]", "5"),
                     -1);
    assert_int_equal(cmdi("EXISTS tenant"), 0);
    cmd("HSET tenant status active");
    assert_int_equal(EVI(SCRIPT_TENANT_ADMINS_STORE, 1, "tenant", "[1]", "5"),
                     1);
    assert_string_equal(cmds("HGET tenant admins"), "[1]");
    assert_string_equal(cmds("HGET tenant admins_at"), "5");
}

static void
test_purge_steps(void **state)
{
    (void)state;
    cmd("HSET tenant event_ts 200");
    assert_int_equal(
        EVI(SCRIPT_PURGE_MARK_GONE, 2, "gone", "tenant", "100", "1", "s"), -3);
    assert_int_equal(cmdi("EXISTS gone"), 0);
    assert_int_equal(
        EVI(SCRIPT_PURGE_MARK_GONE, 2, "gone", "tenant", "300", "2", "s"), 1);
    assert_string_equal(cmds("HGET gone ts"), "300");
    assert_string_equal(cmds("HGET gone suite_id"), "s");
    assert_string_equal(cmds("HGET gone purged_at"), "2");
    /* a repeated purge never moves the marker back */
    assert_int_equal(
        EVI(SCRIPT_PURGE_MARK_GONE, 2, "gone", "tenant", "250", "3", "s"), 1);
    assert_string_equal(cmds("HGET gone ts"), "300");

    cmd("SADD btoks h1 h2");
    cmd("SET p:btok:{h1} x");
    cmd("SET p:btok:{h3} x");
    assert_int_equal(EVI(SCRIPT_PURGE_BROKER_TOKENS, 1, "btoks", "p:"), 1);
    assert_int_equal(cmdi("EXISTS p:btok:{h1} p:btok:{h3}"), 1);

    assert_int_equal(EVI(SCRIPT_PURGE_REPORT, 1, "gone", "{\"n\":1}"), 1);
    assert_string_equal(cmds("HGET gone report"), "{\"n\":1}");
}

/*---- The service API ----*/

static redisReply *
mint(const char *now, const char *nonce, const char *reuse, const char *gen,
     const char *h, const char *write)
{
    return EVR(SCRIPT_SERVICE_TOKEN_MINT, 2, "cur", "ttoks", now, nonce, "7200",
               reuse, gen, h, write);
}

static void
test_service_token_mint(void **state)
{
    char now[24], later[24];
    long long t = now_ms() / 1000;
    redisReply *r;

    (void)state;
    snprintf(now, sizeof(now), "%lld", t);
    snprintf(later, sizeof(later), "%lld", t + 7000);
    /* asked without writing: nothing current, nothing written */
    r = mint(now, "N1", "300", "0", "h1", "0");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 0);
    assert_int_equal(cmdi("EXISTS cur ttoks"), 0);
    r = mint(now, "N1", "300", "0", "h1", "1");
    assert_string_equal(elem(r, 0), "N1");
    assert_string_equal(elem(r, 1), now);
    assert_int_equal(atoll(elem(r, 2)), t + 7200);
    assert_true(cmdi("TTL cur") > 7000);
    assert_int_equal(cmdi("SISMEMBER ttoks h1"), 1);
    /* the current one, while it has more than the margin left, with or
     * without write */
    r = mint(now, "N2", "300", "0", "h2", "0");
    assert_string_equal(elem(r, 0), "N1");
    r = mint(now, "N2", "300", "0", "h2", "1");
    assert_string_equal(elem(r, 0), "N1");
    assert_int_equal(cmdi("SISMEMBER ttoks h2"), 0);
    /* a new one near its end, or for another generation */
    r = mint(later, "N3", "300", "0", "h3", "0");
    assert_int_equal(r->elements, 0);
    r = mint(later, "N3", "300", "0", "h3", "1");
    assert_string_equal(elem(r, 0), "N3");
    r = mint(later, "N4", "300", "1", "h4", "1");
    assert_string_equal(elem(r, 0), "N4");
    assert_string_equal(cmds("HGET cur gen"), "1");
}

static void
test_oauth_code_and_ticket(void **state)
{
    redisReply *r;

    (void)state;
    cmd("SET code rec");
    r = EVR(SCRIPT_OAUTH_CODE_TAKE, 1, "code");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "rec");
    r = EVR(SCRIPT_OAUTH_CODE_TAKE, 1, "code");
    assert_int_equal(r->type, REDIS_REPLY_NIL);

    r = EVR(SCRIPT_MEMBER_TICKET_READ, 2, "ticket", "detail", "100");
    assert_int_equal(r->elements, 1);
    assert_string_equal(elem(r, 0), "0");
    cmd("HSET ticket exp 100 userid u1");
    r = EVR(SCRIPT_MEMBER_TICKET_READ, 2, "ticket", "detail", "100");
    assert_int_equal(r->elements, 1);
    assert_string_equal(elem(r, 0), "1");
    r = EVR(SCRIPT_MEMBER_TICKET_READ, 2, "ticket", "detail", "99");
    assert_int_equal(r->elements, 1);
    assert_string_equal(elem(r, 0), "1"); /* no detail: as expired */
    cmd("SET detail D");
    r = EVR(SCRIPT_MEMBER_TICKET_READ, 2, "ticket", "detail", "99");
    assert_int_equal(r->elements, 3);
    assert_string_equal(elem(r, 0), "2");
    assert_string_equal(elem(r, 1), "D");
    assert_string_equal(elem(r, 2), "u1");
}

/*---- The browser flows ----*/

static long long
save(const char *now, const char *state_key, const char *addr_set,
     const char *id, const char *client)
{
    return EVI(SCRIPT_BROWSER_STATE_SAVE, 3, state_key, "live", addr_set, now,
               "600", "2", id, "1", "flow", "install", "client", client);
}

static void
test_browser_states(void **state)
{
    redisReply *r;

    (void)state;
    assert_int_equal(save("1000", "st:1", "live:a", "1", "a"), 1);
    assert_true(cmdi("TTL st:1") > 0);
    /* the address holds its share */
    assert_int_equal(save("1000", "st:2", "live:a", "2", "a"), -1);
    assert_int_equal(save("1000", "st:3", "live:b", "3", "b"), 1);
    /* the suite is full */
    assert_int_equal(save("1000", "st:4", "live:c", "4", "c"), 0);
    assert_int_equal(cmdi("EXISTS st:2 st:4"), 0);
    /* states past their time free their places */
    assert_int_equal(save("1700", "st:5", "live:a", "5", "a"), 1);

    /* taken once, with a budget: the first install spends it */
    r = EVR(SCRIPT_BROWSER_STATE_TAKE, 3, "st:5", "live", "inst", "5",
            "live:", "1", "60");
    assert_int_equal(r->elements, 4);
    assert_int_equal(cmdi("EXISTS st:5"), 0);
    assert_string_equal(cmds("ZSCORE live 5"), "");
    assert_int_equal(cmdi("ZCARD live:a"), 0);
    assert_string_equal(cmds("GET inst"), "1");
    assert_true(cmdi("TTL inst") > 0);
    r = EVR(SCRIPT_BROWSER_STATE_TAKE, 3, "st:3", "live", "inst", "3",
            "live:", "1", "60");
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, -1);
    assert_int_equal(cmdi("EXISTS st:3"), 1);
    /* without a budget */
    r = EVR(SCRIPT_BROWSER_STATE_TAKE, 3, "st:3", "live", "inst", "3",
            "live:", "", "60");
    assert_int_equal(r->elements, 4);
    assert_int_equal(cmdi("ZCARD live:b"), 0);
    assert_string_equal(cmds("GET inst"), "1");
    r = EVR(SCRIPT_BROWSER_STATE_TAKE, 3, "st:3", "live", "inst", "3",
            "live:", "", "60");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 0);
}

static void
test_authcode_and_login(void **state)
{
    (void)state;
    assert_int_equal(
        EVI(SCRIPT_AUTHCODE_ENQUEUE, 2, "seen", "ev", "60", "kind", "install"),
        1);
    assert_int_equal(
        EVI(SCRIPT_AUTHCODE_ENQUEUE, 2, "seen", "ev", "60", "kind", "install"),
        0);
    assert_int_equal(cmdi("XLEN ev"), 1);

    assert_int_equal(EVI(SCRIPT_MEMBER_LOGIN_STORE, 4, "code", "ticket",
                         "detail", "tenant", "R", "60", "1", "D", "u1", "9",
                         "70", "80"),
                     0);
    cmd("HSET tenant status active");
    assert_int_equal(EVI(SCRIPT_MEMBER_LOGIN_STORE, 4, "code", "ticket",
                         "detail", "tenant", "R", "60", "", "", "u1", "9", "70",
                         "80"),
                     1);
    assert_string_equal(cmds("GET code"), "R");
    assert_int_equal(cmdi("EXISTS ticket detail"), 0);
    assert_int_equal(EVI(SCRIPT_MEMBER_LOGIN_STORE, 4, "code", "ticket",
                         "detail", "tenant", "R", "60", "1", "", "u1", "9",
                         "70", "80"),
                     1);
    assert_string_equal(cmds("HGET ticket userid"), "u1");
    assert_int_equal(cmdi("EXISTS detail"), 0);
    assert_int_equal(EVI(SCRIPT_MEMBER_LOGIN_STORE, 4, "code", "ticket",
                         "detail", "tenant", "R", "60", "1", "D", "u1", "9",
                         "70", "80"),
                     1);
    assert_string_equal(cmds("GET detail"), "D");
    assert_true(cmdi("TTL detail") > 70);
}

/*---- brokerctl ----*/

static void
test_cli_scripts(void **state)
{
    (void)state;
    cmd("SET k old PX 100000");
    assert_int_equal(EVI(SCRIPT_KEY_SWAP, 1, "k", "other", "new"), 0);
    assert_int_equal(EVI(SCRIPT_KEY_SWAP, 1, "k", "old", "new"), 1);
    assert_string_equal(cmds("GET k"), "new");
    assert_true(cmdi("PTTL k") > 0);
    cmd("SET k2 old");
    assert_int_equal(EVI(SCRIPT_KEY_SWAP, 1, "k2", "old", "new"), 1);
    assert_int_equal(cmdi("PTTL k2"), -1);

    /* the record only: the name and the index are brokerctl's next
     * steps (other slots) */
    assert_int_equal(EVI(SCRIPT_SERVICE_ADD, 1, "svc", "id1", "n", "salt",
                         "hash", "[]", "s", "[]", "[]", "5", "messages"),
                     1);
    assert_string_equal(cmds("HGET svc gen"), "0");
    assert_string_equal(cmds("HGET svc name"), "n");
    assert_string_equal(cmds("HGET svc capabilities"), "messages");
    assert_int_equal(EVI(SCRIPT_SERVICE_ADD, 1, "svc", "id1", "n2", "salt",
                         "hash", "[]", "s", "[]", "[]", "5", ""),
                     0);
    assert_string_equal(cmds("HGET svc name"), "n");

    assert_int_equal(EVI(SCRIPT_SERVICE_END, 2, "none", "toks", "6", "", "",
                         "p:", "m", "chan"),
                     -1);
    cmd("SADD toks h1");
    cmd("SET p:btok:{h1} x");
    assert_int_equal(EVI(SCRIPT_SERVICE_END, 2, "svc", "toks", "6", "salt2",
                         "hash2", "p:", "m", "chan"),
                     1);
    assert_string_equal(cmds("HGET svc salt"), "salt2");
    assert_string_equal(cmds("HGET svc gen"), "1");
    assert_int_equal(cmdi("EXISTS toks p:btok:{h1}"), 0);
    assert_int_equal(EVI(SCRIPT_SERVICE_END, 2, "svc", "toks", "7", "", "",
                         "p:", "m", "chan"),
                     1);
    assert_string_equal(cmds("HGET svc revoked_at"), "7");
    assert_int_equal(EVI(SCRIPT_SERVICE_END, 2, "svc", "toks", "8", "", "",
                         "p:", "m", "chan"),
                     -2);

    assert_int_equal(EVI(SCRIPT_TENANT_EXISTS, 2, "tenant", "dk"), 0);
    cmd("SET dk x");
    assert_int_equal(EVI(SCRIPT_TENANT_EXISTS, 2, "tenant", "dk"), 1);
    cmd("HSET tenant a b");
    assert_int_equal(EVI(SCRIPT_TENANT_EXISTS, 2, "tenant", "dk"), 2);
}

/*---- Writes ----*/

static void
test_write_scripts(void **state)
{
    redisReply *r;

    (void)state;
    /* the customer index: pairs added once each, removed one by one */
    assert_int_equal(EVI(SCRIPT_CUSTIDX_ADD, 1, "ci", "c1", "u1", "c1", "u2",
                         "c1", "u1", "c2", "u3"),
                     3);
    assert_string_equal(cmds("HGET ci c1"), "u1 u2");
    assert_int_equal(EVI(SCRIPT_CUSTIDX_DEL, 1, "ci", "c1", "u1"), 1);
    assert_string_equal(cmds("HGET ci c1"), "u2");
    assert_int_equal(EVI(SCRIPT_CUSTIDX_DEL, 1, "ci", "c1", "u2", "c2", ""), 2);
    assert_int_equal(cmdi("EXISTS ci"), 0);
    /* a WelcomeCode: its service, inside the window, once */
    assert_int_equal(EVI(SCRIPT_WELCOME_RECORD, 1, "wc", "s1", "1000", "60000"),
                     1);
    assert_true(cmdi("PTTL wc") > 0);
    assert_int_equal(EVI(SCRIPT_WELCOME_TAKE, 1, "wc", "s2", "2000", "20000"),
                     41050);
    assert_int_equal(EVI(SCRIPT_WELCOME_TAKE, 1, "wc", "s1", "21001", "20000"),
                     41050);
    assert_int_equal(EVI(SCRIPT_WELCOME_TAKE, 1, "wc", "s1", "2000", "20000"),
                     0);
    assert_int_equal(EVI(SCRIPT_WELCOME_TAKE, 1, "wc", "s1", "2001", "20000"),
                     41051);
    assert_int_equal(EVI(SCRIPT_WELCOME_TAKE, 1, "none", "s1", "1", "20000"),
                     41050);
    /* an idempotency key: new, pending, another body, done, released */
    r = EVR(SCRIPT_IDEM_BEGIN, 1, "ik", "h1", "100");
    assert_string_equal(r->element[0]->str, "new");
    r = EVR(SCRIPT_IDEM_BEGIN, 1, "ik", "h1", "100");
    assert_string_equal(r->element[0]->str, "pending");
    r = EVR(SCRIPT_IDEM_BEGIN, 1, "ik", "h2", "100");
    assert_string_equal(r->element[0]->str, "conflict");
    assert_true(cmdi("TTL ik") <= 100);
    assert_int_equal(EVI(SCRIPT_IDEM_FINISH, 1, "ik", "h2", "x", "86400"), 0);
    assert_int_equal(
        EVI(SCRIPT_IDEM_FINISH, 1, "ik", "h1", "{\"errcode\":0}", "86400"), 1);
    assert_true(cmdi("TTL ik") > 100);
    r = EVR(SCRIPT_IDEM_BEGIN, 1, "ik", "h1", "100");
    assert_string_equal(r->element[0]->str, "done");
    assert_string_equal(r->element[1]->str, "{\"errcode\":0}");
    assert_int_equal(EVI(SCRIPT_IDEM_FINISH, 1, "ik", "h1", "", "1"), 1);
    assert_int_equal(cmdi("EXISTS ik"), 0);
    /* a write rate of 2 a minute */
    assert_int_equal(EVI(SCRIPT_WRITE_RATE, 1, "wr", "2"), 1);
    assert_int_equal(EVI(SCRIPT_WRITE_RATE, 1, "wr", "2"), 1);
    assert_int_equal(EVI(SCRIPT_WRITE_RATE, 1, "wr", "2"), 0);
    assert_string_equal(cmds("GET wr"), "2");
    assert_true(cmdi("TTL wr") > 0);
}

/*---- Hash slots ----*/

/* CRC16-CCITT (XMODEM), as Redis Cluster computes key slots. */
static unsigned
crc16(const char *buf, size_t len)
{
    unsigned crc = 0;
    size_t i;
    int b;

    for (i = 0; i < len; i++) {
        crc ^= (unsigned)(unsigned char)buf[i] << 8;
        for (b = 0; b < 8; b++)
            crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff
                               : (crc << 1) & 0xffff;
    }
    return crc;
}

/* The Cluster slot of key: its hash tag's if it has a non-empty one. */
static unsigned
slot_of(const char *key)
{
    const char *o = strchr(key, '{'), *c;

    if (o != NULL && (c = strchr(o + 1, '}')) != NULL && c > o + 1)
        return crc16(o + 1, (size_t)(c - o - 1)) & 16383;
    return crc16(key, strlen(key)) & 16383;
}

static void
test_crc16_known_slots(void **state)
{
    (void)state;
    /* Redis Cluster's specification: the check value, and sample keys */
    assert_int_equal(crc16("123456789", 9), 0x31c3);
    assert_int_equal(slot_of("foo"), 12182);
    assert_int_equal(slot_of("{user1000}.following"),
                     slot_of("{user1000}.followers"));
    assert_int_equal(slot_of("foo{}{bar}"), crc16("foo{}{bar}", 10) & 16383);
}

#define P     "wb:"
#define SUITE "ww0123456789abcdef"
#define CORP  "wwcorp42"
#define MAXK  8

struct script_keys {
    enum script_id id;
    int nkeys;
    char keys[MAXK][KEYS_MAX];
};

static int
distinct_slots(const struct script_keys *s)
{
    unsigned seen[MAXK];
    int n = 0, i, j;

    for (i = 0; i < s->nkeys; i++) {
        unsigned sl = slot_of(s->keys[i]);

        for (j = 0; j < n && seen[j] != sl; j++)
            ;
        if (j == n)
            seen[n++] = sl;
    }
    return n;
}

static struct script_keys *
add(struct script_keys *t, int *n, enum script_id id)
{
    struct script_keys *s = &t[(*n)++];

    memset(s, 0, sizeof(*s));
    s->id = id;
    return s;
}

#define K(s)  ((s)->keys[(s)->nkeys++])
#define OK(e) assert_int_equal((e), BRK_OK)

static void
test_keys_share_a_slot(void **state)
{
    static struct script_keys t[SCRIPT_COUNT + 8];
    struct evq_keys ek;
    struct script_keys *s;
    int n = 0, i, covered[SCRIPT_COUNT] = {0};
    const char *dirs[3] = {"dir:parents", "dir:users", "dir:tags"};
    /* the cancel marker is named by an HMAC, not by the corp */
    const char *gone_h = "3f1c";

    (void)state;
    OK(evq_keys(&ek, P, SUITE, CORP));
    s = add(t, &n, SCRIPT_EVQ_PUSH);
    OK(keys_suite_seen(K(s), KEYS_MAX, P, SUITE, "ab12"));
    snprintf(K(s), KEYS_MAX, "%s", ek.q);
    snprintf(K(s), KEYS_MAX, "%s", ek.ready);
    snprintf(K(s), KEYS_MAX, "%s", ek.seq);
    s = add(t, &n, SCRIPT_EVQ_PUSH); /* the suite stream */
    OK(keys_suite_seen(K(s), KEYS_MAX, P, SUITE, "ab12"));
    snprintf(K(s), KEYS_MAX, "%s", ek.events);
    snprintf(K(s), KEYS_MAX, "%s", ek.ready);
    snprintf(K(s), KEYS_MAX, "%s", ek.seq);
    s = add(t, &n, SCRIPT_EVQ_HANDOVER);
    snprintf(K(s), KEYS_MAX, "%s", ek.events);
    snprintf(K(s), KEYS_MAX, "%s", ek.attempts);
    snprintf(K(s), KEYS_MAX, "%s", ek.q);
    snprintf(K(s), KEYS_MAX, "%s", ek.ready);
    snprintf(K(s), KEYS_MAX, "%s", ek.seq);
    s = add(t, &n, SCRIPT_EVQ_CLAIM);
    snprintf(K(s), KEYS_MAX, "%s", ek.ready);
    snprintf(K(s), KEYS_MAX, "%s", ek.lease);
    snprintf(K(s), KEYS_MAX, "%s", ek.seq);
    {
        enum script_id two[3] = {SCRIPT_EVQ_RECLAIM, SCRIPT_EVQ_REFRESH,
                                 SCRIPT_EVQ_BACKOFF};

        for (i = 0; i < 3; i++) {
            s = add(t, &n, two[i]);
            snprintf(K(s), KEYS_MAX, "%s", ek.ready);
            snprintf(K(s), KEYS_MAX, "%s", ek.lease);
        }
    }
    s = add(t, &n, SCRIPT_EVQ_RELEASE);
    snprintf(K(s), KEYS_MAX, "%s", ek.ready);
    snprintf(K(s), KEYS_MAX, "%s", ek.lease);
    snprintf(K(s), KEYS_MAX, "%s", ek.seq);
    snprintf(K(s), KEYS_MAX, "%s", ek.q);
    snprintf(K(s), KEYS_MAX, "%s", ek.qa);
    s = add(t, &n, SCRIPT_EVQ_TENANT_ACK);
    snprintf(K(s), KEYS_MAX, "%s", ek.q);
    snprintf(K(s), KEYS_MAX, "%s", ek.qa);
    s = add(t, &n, SCRIPT_EVQ_TENANT_DEAD);
    snprintf(K(s), KEYS_MAX, "%s", ek.q);
    snprintf(K(s), KEYS_MAX, "%s", ek.qa);
    snprintf(K(s), KEYS_MAX, "%s", ek.dead);

    s = add(t, &n, SCRIPT_STREAM_ACK);
    OK(keys_suite_events(K(s), KEYS_MAX, P, SUITE));
    OK(keys_suite(K(s), KEYS_MAX, P, SUITE, "attempts"));
    s = add(t, &n, SCRIPT_STREAM_DEAD);
    OK(keys_suite_events(K(s), KEYS_MAX, P, SUITE));
    OK(keys_suite(K(s), KEYS_MAX, P, SUITE, "attempts"));
    OK(keys_suite(K(s), KEYS_MAX, P, SUITE, "dead"));

    s = add(t, &n, SCRIPT_SUITE_TICKET_STORE);
    OK(keys_suite_ticket(K(s), KEYS_MAX, P, SUITE));
    s = add(t, &n, SCRIPT_ACCESS_TOKEN_STORE); /* the suite's token */
    OK(keys_suite(K(s), KEYS_MAX, P, SUITE, "token"));
    OK(keys_suite(K(s), KEYS_MAX, P, SUITE, "lock:token"));
    s = add(t, &n, SCRIPT_ACCESS_TOKEN_STORE); /* a tenant's */
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "token"));
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "lock:token"));
    s = add(t, &n, SCRIPT_TOKEN_LOCK_RELEASE);
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "lock:token"));
    s = add(t, &n, SCRIPT_ACCESS_TOKEN_REJECT);
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "token"));

    s = add(t, &n, SCRIPT_BUDGET_LEASE);
    OK(keys_budget_corp(K(s), KEYS_MAX, P, CORP, "gettoken", "m1"));
    OK(keys_budget_corp(K(s), KEYS_MAX, P, CORP, "gettoken", "h1"));
    OK(keys_budget_corp(K(s), KEYS_MAX, P, CORP, "gettoken", "pause"));
    s = add(t, &n, SCRIPT_BUDGET_LEASE);
    OK(keys_budget_api(K(s), KEYS_MAX, P, "gettoken", "m1"));
    OK(keys_budget_api(K(s), KEYS_MAX, P, "gettoken", "h1"));
    OK(keys_budget_api(K(s), KEYS_MAX, P, "gettoken", "pause"));
    s = add(t, &n, SCRIPT_BUDGET_PAUSE);
    OK(keys_budget_corp(K(s), KEYS_MAX, P, CORP, "gettoken", "pause"));

    s = add(t, &n, SCRIPT_DIRECTORY_ACTIVATE);
    for (i = 0; i < 3; i++)
        OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, dirs[i]));
    for (i = 0; i < 3; i++) {
        char what[32];

        snprintf(what, sizeof(what), "%s:new", dirs[i]);
        OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, what));
    }
    OK(keys_tenant(K(s), KEYS_MAX, P, CORP, SUITE));
    s = add(t, &n, SCRIPT_CONTACT_APPLY);
    for (i = 0; i < 3; i++)
        OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, dirs[i]));
    OK(keys_tenant(K(s), KEYS_MAX, P, CORP, SUITE));
    s = add(t, &n, SCRIPT_TENANT_ADMINS_STORE);
    OK(keys_tenant(K(s), KEYS_MAX, P, CORP, SUITE));
    s = add(t, &n, SCRIPT_TENANT_REINSTALL_MARK);
    OK(keys_tenant(K(s), KEYS_MAX, P, CORP, SUITE));
    s = add(t, &n, SCRIPT_TENANT_STATE_READ);
    OK(keys_tenant(K(s), KEYS_MAX, P, CORP, SUITE));
    OK(keys_gone(K(s), KEYS_MAX, P, CORP, gone_h));
    s = add(t, &n, SCRIPT_TENANT_INSTALL);
    OK(keys_tenant(K(s), KEYS_MAX, P, CORP, SUITE));
    OK(keys_gone(K(s), KEYS_MAX, P, CORP, gone_h));
    s = add(t, &n, SCRIPT_TENANT_LOST_COUNT);
    OK(keys_suite(K(s), KEYS_MAX, P, SUITE, "lost"));
    OK(keys_suite(K(s), KEYS_MAX, P, SUITE, "authx:ab12"));

    s = add(t, &n, SCRIPT_PURGE_MARK_GONE);
    OK(keys_gone(K(s), KEYS_MAX, P, CORP, gone_h));
    OK(keys_tenant(K(s), KEYS_MAX, P, CORP, SUITE));
    s = add(t, &n, SCRIPT_PURGE_BROKER_TOKENS);
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "btoks"));
    s = add(t, &n, SCRIPT_PURGE_REPORT);
    OK(keys_gone(K(s), KEYS_MAX, P, CORP, gone_h));

    s = add(t, &n, SCRIPT_SERVICE_TOKEN_MINT);
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "svccur:svc1"));
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "btoks"));
    s = add(t, &n, SCRIPT_OAUTH_CODE_TAKE);
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "oauth:code:ab"));
    s = add(t, &n, SCRIPT_MEMBER_TICKET_READ);
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "oauth:ticket:ab"));
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "oauth:detail:ab"));

    s = add(t, &n, SCRIPT_BROWSER_STATE_SAVE);
    OK(keys_suite(K(s), KEYS_MAX, P, SUITE, "oauth:state:id1"));
    OK(keys_suite(K(s), KEYS_MAX, P, SUITE, "oauth:states"));
    OK(keys_suite(K(s), KEYS_MAX, P, SUITE, "oauth:live:c0ffee"));
    s = add(t, &n, SCRIPT_BROWSER_STATE_TAKE);
    OK(keys_suite(K(s), KEYS_MAX, P, SUITE, "oauth:state:id1"));
    OK(keys_suite(K(s), KEYS_MAX, P, SUITE, "oauth:states"));
    OK(keys_suite(K(s), KEYS_MAX, P, SUITE, "installs:c0ffee"));
    s = add(t, &n, SCRIPT_AUTHCODE_ENQUEUE);
    OK(keys_suite(K(s), KEYS_MAX, P, SUITE, "seen:authcode:ab"));
    OK(keys_suite_events(K(s), KEYS_MAX, P, SUITE));
    s = add(t, &n, SCRIPT_MEMBER_LOGIN_STORE);
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "oauth:code:ab"));
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "oauth:ticket:ab"));
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "oauth:detail:ab"));
    OK(keys_tenant(K(s), KEYS_MAX, P, CORP, SUITE));

    s = add(t, &n, SCRIPT_KEY_SWAP);
    OK(keys_suite_dk(K(s), KEYS_MAX, P, SUITE));
    s = add(t, &n, SCRIPT_SERVICE_ADD);
    OK(keys_service(K(s), KEYS_MAX, P, "svc1", NULL));
    s = add(t, &n, SCRIPT_SERVICE_END);
    OK(keys_service(K(s), KEYS_MAX, P, "svc1", NULL));
    OK(keys_service(K(s), KEYS_MAX, P, "svc1", "toks"));
    s = add(t, &n, SCRIPT_TENANT_EXISTS);
    OK(keys_tenant(K(s), KEYS_MAX, P, CORP, SUITE));
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "dk"));
    /* writes: each script one key of the tenant */
    s = add(t, &n, SCRIPT_CUSTIDX_ADD);
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "wr:cust"));
    s = add(t, &n, SCRIPT_CUSTIDX_DEL);
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "wr:cust"));
    s = add(t, &n, SCRIPT_WELCOME_RECORD);
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "wr:welcome:ab"));
    s = add(t, &n, SCRIPT_WELCOME_TAKE);
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "wr:welcome:ab"));
    s = add(t, &n, SCRIPT_IDEM_BEGIN);
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "wr:idem:ab"));
    s = add(t, &n, SCRIPT_IDEM_FINISH);
    OK(keys_tenant_sub(K(s), KEYS_MAX, P, CORP, SUITE, "wr:idem:ab"));
    s = add(t, &n, SCRIPT_WRITE_RATE);
    OK(keys_service(K(s), KEYS_MAX, P, "svc1", "wrate:1"));

    /* a service's delivery: every key under the service's hash tag */
    {
        struct delivery_keys dk;

        OK(delivery_keys(&dk, P, "svc1", SUITE, CORP));
        s = add(t, &n, SCRIPT_DLV_SET);
        OK(keys_service(K(s), KEYS_MAX, P, "svc1", NULL));
        snprintf(K(s), KEYS_MAX, "%s", dk.dlv);
        s = add(t, &n, SCRIPT_DLV_READ);
        OK(keys_service(K(s), KEYS_MAX, P, "svc1", NULL));
        snprintf(K(s), KEYS_MAX, "%s", dk.dlv);
        s = add(t, &n, SCRIPT_DLV_PUSH);
        snprintf(K(s), KEYS_MAX, "%s", dk.dlv);
        OK(delivery_seen_key(K(s), KEYS_MAX, P, "svc1", "ab12"));
        snprintf(K(s), KEYS_MAX, "%s", dk.q);
        snprintf(K(s), KEYS_MAX, "%s", dk.ready);
        snprintf(K(s), KEYS_MAX, "%s", dk.seq);
        snprintf(K(s), KEYS_MAX, "%s", dk.tenants);
        snprintf(K(s), KEYS_MAX, "%s", dk.qa);
        snprintf(K(s), KEYS_MAX, "%s", dk.lease);
        s = add(t, &n, SCRIPT_DLV_HEAD);
        snprintf(K(s), KEYS_MAX, "%s", dk.q);
        snprintf(K(s), KEYS_MAX, "%s", dk.qa);
        s = add(t, &n, SCRIPT_DLV_RELEASE);
        snprintf(K(s), KEYS_MAX, "%s", dk.ready);
        snprintf(K(s), KEYS_MAX, "%s", dk.lease);
        snprintf(K(s), KEYS_MAX, "%s", dk.seq);
        snprintf(K(s), KEYS_MAX, "%s", dk.q);
        snprintf(K(s), KEYS_MAX, "%s", dk.qa);
        snprintf(K(s), KEYS_MAX, "%s", dk.dead);
        snprintf(K(s), KEYS_MAX, "%s", dk.tenants);
        s = add(t, &n, SCRIPT_DLV_DEAD);
        snprintf(K(s), KEYS_MAX, "%s", dk.q);
        snprintf(K(s), KEYS_MAX, "%s", dk.qa);
        snprintf(K(s), KEYS_MAX, "%s", dk.dead);
        s = add(t, &n, SCRIPT_DLV_RETRY);
        snprintf(K(s), KEYS_MAX, "%s", dk.dead);
        snprintf(K(s), KEYS_MAX, "%s", dk.q);
        snprintf(K(s), KEYS_MAX, "%s", dk.ready);
        snprintf(K(s), KEYS_MAX, "%s", dk.seq);
        snprintf(K(s), KEYS_MAX, "%s", dk.tenants);
        s = add(t, &n, SCRIPT_DLV_PURGE);
        snprintf(K(s), KEYS_MAX, "%s", dk.q);
        snprintf(K(s), KEYS_MAX, "%s", dk.qa);
        snprintf(K(s), KEYS_MAX, "%s", dk.dead);
        snprintf(K(s), KEYS_MAX, "%s", dk.ready);
        snprintf(K(s), KEYS_MAX, "%s", dk.lease);
        snprintf(K(s), KEYS_MAX, "%s", dk.seq);
        snprintf(K(s), KEYS_MAX, "%s", dk.tenants);
    }

    for (i = 0; i < n; i++) {
        int got = distinct_slots(&t[i]);

        /* Cluster runs a script only when all its KEYS share a slot */
        if (got != 1)
            fprintf(stderr, "# %s: KEYS in %d slots\n", scripts_name(t[i].id),
                    got);
        assert_int_equal(got, 1);
        covered[t[i].id] = 1;
    }
    for (i = 0; i < SCRIPT_COUNT; i++) {
        if (!covered[i])
            fprintf(stderr, "# %s: no slot check\n",
                    scripts_name((enum script_id)i));
        assert_true(covered[i]);
    }
}

/* dlv_head: up to n entries from the head; {0} while the head is the
 * entry held next; the acknowledged entry and its attempts go; a
 * WelcomeCode inside its window alone and first. */
static void
test_dlv_head_batches_and_acks(void **state)
{
    char id[5][64], now[24];
    redisReply *r;
    int i;

    (void)state;
    for (i = 0; i < 5; i++)
        snprintf(id[i], sizeof(id[i]), "%s", cmds("XADD q * n %d", i));
    /* nothing held: the first three */
    r = EVR(SCRIPT_DLV_HEAD, 2, "q", "qa", "20000", "3", "", "");
    assert_int_equal(r->elements, 2);
    assert_int_equal(r->element[0]->integer, 1);
    assert_int_equal(r->element[1]->elements, 3);
    assert_string_equal(r->element[1]->element[2]->element[0]->str, id[2]);
    /* ack the first, id[1] held next: nothing read */
    cmd("HSET qa %s 2", id[0]);
    r = EVR(SCRIPT_DLV_HEAD, 2, "q", "qa", "20000", "3", id[0], id[1]);
    assert_int_equal(r->elements, 1);
    assert_int_equal(r->element[0]->integer, 0);
    assert_int_equal(cmdi("XLEN q"), 4);
    assert_int_equal(cmdi("HEXISTS qa %s", id[0]), 0);
    /* the held entry is not the head (the queue changed): read again */
    r = EVR(SCRIPT_DLV_HEAD, 2, "q", "qa", "20000", "3", id[1], id[3]);
    assert_int_equal(r->element[0]->integer, 1);
    assert_int_equal(r->element[1]->elements, 3);
    assert_string_equal(r->element[1]->element[0]->element[0]->str, id[2]);
    /* a WelcomeCode inside its window: it alone, though another is held */
    snprintf(now, sizeof(now), "%lld", now_ms());
    cmd("HSET qa p:%s %s", id[4], now);
    r = EVR(SCRIPT_DLV_HEAD, 2, "q", "qa", "20000", "3", id[2], id[3]);
    assert_int_equal(r->element[0]->integer, 1);
    assert_int_equal(r->element[1]->elements, 1);
    assert_string_equal(r->element[1]->element[0]->element[0]->str, id[4]);
    /* acknowledged, its note goes too; then the head again */
    r = EVR(SCRIPT_DLV_HEAD, 2, "q", "qa", "20000", "3", id[4], "");
    assert_int_equal(r->element[0]->integer, 1);
    assert_int_equal(r->element[1]->elements, 1);
    assert_string_equal(r->element[1]->element[0]->element[0]->str, id[3]);
    assert_int_equal(cmdi("HEXISTS qa p:%s", id[4]), 0);
    /* emptied: none */
    r = EVR(SCRIPT_DLV_HEAD, 2, "q", "qa", "20000", "3", id[3], "");
    assert_int_equal(r->element[0]->integer, 1);
    assert_int_equal(r->element[1]->elements, 0);
    assert_int_equal(cmdi("XLEN q"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_known_slots),
        cmocka_unit_test(test_keys_share_a_slot),
        cmocka_unit_test_setup(test_write_scripts, flush),
        cmocka_unit_test_setup(test_names_unique_and_digests_match_redis,
                               flush),
        cmocka_unit_test_setup(test_store_loads_then_falls_back_to_eval, flush),
        cmocka_unit_test_setup(test_evq_push_and_handover, flush),
        cmocka_unit_test_setup(test_evq_leases, flush),
        cmocka_unit_test_setup(test_evq_release, flush),
        cmocka_unit_test_setup(test_dlv_head_batches_and_acks, flush),
        cmocka_unit_test_setup(test_evq_ack_and_dead, flush),
        cmocka_unit_test_setup(test_stream_ack_and_dead, flush),
        cmocka_unit_test_setup(test_suite_ticket_newest_wins, flush),
        cmocka_unit_test_setup(test_access_tokens, flush),
        cmocka_unit_test_setup(test_budget_lease_and_pause, flush),
        cmocka_unit_test_setup(test_directory_activate, flush),
        cmocka_unit_test_setup(test_tenant_install_and_state, flush),
        cmocka_unit_test_setup(test_tenant_lost_and_reinstall, flush),
        cmocka_unit_test_setup(test_contact_apply, flush),
        cmocka_unit_test_setup(test_tenant_admins, flush),
        cmocka_unit_test_setup(test_purge_steps, flush),
        cmocka_unit_test_setup(test_service_token_mint, flush),
        cmocka_unit_test_setup(test_oauth_code_and_ticket, flush),
        cmocka_unit_test_setup(test_browser_states, flush),
        cmocka_unit_test_setup(test_authcode_and_login, flush),
        cmocka_unit_test_setup(test_cli_scripts, flush),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
