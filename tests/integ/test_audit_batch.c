/*
 * The audit trail's batching against a real redis-server: entries made in
 * one event-loop turn reach Redis as one command, every one of them in
 * order, and the file gets the same entries; a batch past AUDIT_BATCH_MAX
 * goes in more than one command; entries of a later turn are not held
 * back; a store that is down loses the batch, counted, and the next one
 * goes through; a batch that meets NOSCRIPT goes again as EVAL, whole.
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
#include <jansson.h>

#include "audit.h"
#include "harness.h"
#include "log.h"
#include "store.h"

static struct harness H;
static struct event_base *Base;
static char Url[400];

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

/* A Redis INFO commandstats count, "calls=N" of cmd; 0 when absent. */
static long long
cmd_calls(const char *cmd)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    char needle[64];
    const char *p;
    long long n = 0;

    assert_non_null(c);
    r = redisCommand(c, "INFO commandstats");
    assert_non_null(r);
    snprintf(needle, sizeof(needle), "cmdstat_%s:calls=", cmd);
    if (r->type == REDIS_REPLY_STRING && (p = strstr(r->str, needle)) != NULL)
        n = strtoll(p + strlen(needle), NULL, 10);
    freeReplyObject(r);
    redisFree(c);
    return n;
}

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

static long long Want;

static int
stream_has_want(void *arg)
{
    (void)arg;
    return h_redis_int(&H, "XLEN %s", "t:audit") >= Want;
}

/* The "n" field of every entry of the stream, in stream order, into n
 * (cap entries); the count. */
static size_t
stream_ns(long *n, size_t cap)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    size_t i, j, k = 0;

    assert_non_null(c);
    r = redisCommand(c, "XRANGE t:audit - +");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    for (i = 0; i < r->elements && k < cap; i++) {
        redisReply *f = r->element[i]->element[1];

        for (j = 0; j + 1 < f->elements; j += 2)
            if (strcmp(f->element[j]->str, "n") == 0)
                n[k++] = strtol(f->element[j + 1]->str, NULL, 10);
    }
    freeReplyObject(r);
    redisFree(c);
    return k;
}

static void
append_n(struct audit *a, int from, int count)
{
    char n[24];
    const char *kv[6] = {"type", "request", "n", n, "service", "svc \"x\""};
    int i;

    for (i = from; i < from + count; i++) {
        snprintf(n, sizeof(n), "%d", i);
        audit_append(a, NULL, kv, 6);
    }
}

struct turn {
    struct audit *a;
    int from, count;
};

/* Entries made from inside the loop, as a request's reply makes them. */
static void
on_turn(evutil_socket_t fd, short what, void *arg)
{
    struct turn *t = arg;

    (void)fd;
    (void)what;
    append_n(t->a, t->from, t->count);
}

static void
in_one_turn(struct audit *a, int from, int count)
{
    static struct turn t;
    struct timeval zero = {0, 0};

    t.a = a;
    t.from = from;
    t.count = count;
    assert_int_equal(event_base_once(Base, -1, EV_TIMEOUT, on_turn, &t, &zero),
                     0);
}

static int
setup(void **state)
{
    (void)state;
    log_init(LOG_LVL_ERROR, 0);
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
test_one_turn_is_one_command(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long long xadd0, eval0, evalsha0;
    long n[64];
    char path[400], *text, *p;
    size_t i, lines = 0;

    (void)state;
    redis_do("DEL t:audit");
    snprintf(path, sizeof(path), "%s/audit-batch.jsonl", H.dir);
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(audit_new(Base, s, "t:", 1000, path, &a), BRK_OK);
    xadd0 = cmd_calls("xadd");
    eval0 = cmd_calls("eval");
    evalsha0 = cmd_calls("evalsha");

    in_one_turn(a, 0, 40);
    Want = 40;
    assert_true(until(stream_has_want, NULL, 5000));
    /* forty entries, one command (EVALSHA, or EVAL once if the script
     * was not loaded) */
    assert_int_equal(cmd_calls("xadd") - xadd0, 40);
    assert_int_equal(
        cmd_calls("eval") - eval0 + cmd_calls("evalsha") - evalsha0, 1);
    assert_int_equal(stream_ns(n, 64), 40);
    for (i = 0; i < 40; i++)
        assert_int_equal(n[i], (long)i);

    /* the file got the same entries, whole JSON lines */
    text = h_slurp(path);
    assert_non_null(text);
    for (p = text; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    assert_int_equal(lines, 40);
    assert_non_null(strstr(text, "\"n\":\"39\""));
    assert_non_null(strstr(text, "\"service\":\"svc \\\"x\\\"\""));
    free(text);
    audit_free(a);
    store_free(s);
}

static void
test_full_batch_goes_at_once(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long long eval0, evalsha0, cmds;
    long n[AUDIT_BATCH_MAX * 3];
    size_t i, total = AUDIT_BATCH_MAX * 2 + 5;

    (void)state;
    redis_do("DEL t:audit");
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(audit_new(Base, s, "t:", 100000, "", &a), BRK_OK);
    eval0 = cmd_calls("eval");
    evalsha0 = cmd_calls("evalsha");
    in_one_turn(a, 0, (int)total);
    Want = (long long)total;
    assert_true(until(stream_has_want, NULL, 5000));
    cmds = cmd_calls("eval") - eval0 + cmd_calls("evalsha") - evalsha0;
    /* two full batches sent as they filled, the rest at the turn's end */
    assert_int_equal(cmds, 3);
    assert_int_equal(stream_ns(n, AUDIT_BATCH_MAX * 3), total);
    for (i = 0; i < total; i++)
        assert_int_equal(n[i], (long)i);
    audit_free(a);
    store_free(s);
}

static void
test_later_turns_not_held_back(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;

    (void)state;
    redis_do("DEL t:audit");
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(audit_new(Base, s, "t:", 1000, "", &a), BRK_OK);
    /* a lone entry goes with its own turn, not with some later one */
    in_one_turn(a, 0, 1);
    Want = 1;
    assert_true(until(stream_has_want, NULL, 5000));
    in_one_turn(a, 1, 1);
    Want = 2;
    assert_true(until(stream_has_want, NULL, 5000));
    audit_free(a);
    store_free(s);
}

static void
test_store_down_then_up(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;

    (void)state;
    redis_do("DEL t:audit");
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(audit_new(Base, s, "t:", 1000, "", &a), BRK_OK);
    h_redis_stop(&H);
    in_one_turn(a, 0, 3);
    /* the batch is tried, refused (not connected) and dropped: the loop
     * goes on */
    event_base_loop(Base, EVLOOP_NONBLOCK);
    assert_int_equal(h_redis_start(&H), 0);
    assert_true(until(is_up, s, 10000));
    in_one_turn(a, 10, 2);
    Want = 2;
    assert_true(until(stream_has_want, NULL, 5000));
    assert_int_equal(h_redis_int(&H, "XLEN %s", "t:audit"), 2);
    audit_free(a);
    store_free(s);
}

/* Every entry of the stream as "n=<n> v=<v>\n" lines in stream order
 * (owned). */
static char *
stream_nv(void)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    char *out = calloc(1, 1);
    size_t i, j, len = 0;

    assert_non_null(c);
    assert_non_null(out);
    r = redisCommand(c, "XRANGE t:audit - +");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    for (i = 0; i < r->elements; i++) {
        redisReply *f = r->element[i]->element[1];
        const char *n = "", *v = "";
        size_t add;

        for (j = 0; j + 1 < f->elements; j += 2) {
            if (strcmp(f->element[j]->str, "n") == 0)
                n = f->element[j + 1]->str;
            else if (strcmp(f->element[j]->str, "v") == 0)
                v = f->element[j + 1]->str;
        }
        add = strlen(n) + strlen(v) + 6;
        out = realloc(out, len + add + 1);
        assert_non_null(out);
        snprintf(out + len, add + 1, "n=%s v=%s\n", n, v);
        len += add;
    }
    freeReplyObject(r);
    redisFree(c);
    return out;
}

/* Values that would show a batch cut or spliced wrong: RESP's own
 * framing, an empty string, a long one, UTF-8. */
static const char *const Odd[] = {
    "",         "*3\r\n$4\r\nEVAL\r\n",        "$40\r\n", "\r\n\r\n",
    "企业微信", "NOSCRIPT No matching script",
};

static void
append_odd(struct audit *a, int from, int count)
{
    char n[24], big[3000];
    const char *kv[6] = {"type", "request", "n", n, "v", NULL};
    int i;

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (i = from; i < from + count; i++) {
        snprintf(n, sizeof(n), "%d", i);
        kv[5] = i % 7 == 6 ? big : Odd[i % 7 % nitems(Odd)];
        audit_append(a, NULL, kv, 6);
    }
}

static void
on_odd_turn(evutil_socket_t fd, short what, void *arg)
{
    struct turn *t = arg;

    (void)fd;
    (void)what;
    append_odd(t->a, t->from, t->count);
}

static void
odd_in_one_turn(struct audit *a, int from, int count)
{
    static struct turn t;
    struct timeval zero = {0, 0};

    t.a = a;
    t.from = from;
    t.count = count;
    assert_int_equal(
        event_base_once(Base, -1, EV_TIMEOUT, on_odd_turn, &t, &zero), 0);
}

/* What the batches of entries from..from+count-1 must have left in the
 * stream, after the lines of earlier ones (out, owned). */
static char *
odd_expected(char *out, int from, int count)
{
    char big[3000], line[3100];
    size_t len = out ? strlen(out) : 0;
    int i;

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (i = from; i < from + count; i++) {
        snprintf(line, sizeof(line), "n=%d v=%s\n", i,
                 i % 7 == 6 ? big : Odd[i % 7 % nitems(Odd)]);
        out = realloc(out, len + strlen(line) + 1);
        assert_non_null(out);
        memcpy(out + len, line, strlen(line) + 1);
        len += strlen(line);
    }
    return out;
}

/* Redis lost its scripts (a restart, a failover, SCRIPT FLUSH): the batch
 * that meets NOSCRIPT goes again as EVAL, whole, in order, byte for
 * byte; the next one runs by digest again. */
static void
test_batch_survives_noscript(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long long eval0, evalsha0;
    char *want = NULL, *got;
    int total = AUDIT_BATCH_MAX + 9;

    (void)state;
    redis_do("DEL t:audit");
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(audit_new(Base, s, "t:", 100000, "", &a), BRK_OK);

    redis_do("SCRIPT FLUSH");
    eval0 = cmd_calls("eval");
    evalsha0 = cmd_calls("evalsha");
    odd_in_one_turn(a, 0, 40);
    Want = 40;
    assert_true(until(stream_has_want, NULL, 5000));
    /* by digest, refused, then the script itself: once each */
    assert_int_equal(cmd_calls("evalsha") - evalsha0, 1);
    assert_int_equal(cmd_calls("eval") - eval0, 1);
    want = odd_expected(want, 0, 40);
    got = stream_nv();
    assert_string_equal(got, want);
    free(got);

    /* loaded by that EVAL: the next batch runs by digest alone */
    odd_in_one_turn(a, 40, 5);
    Want = 45;
    assert_true(until(stream_has_want, NULL, 5000));
    assert_int_equal(cmd_calls("evalsha") - evalsha0, 2);
    assert_int_equal(cmd_calls("eval") - eval0, 1);

    /* flushed again under batches that fill up: each goes through */
    redis_do("SCRIPT FLUSH");
    odd_in_one_turn(a, 45, total);
    Want = 45 + total;
    assert_true(until(stream_has_want, NULL, 5000));
    assert_int_equal(h_redis_int(&H, "XLEN %s", "t:audit"), 45 + total);
    want = odd_expected(want, 40, 5 + total);
    got = stream_nv();
    assert_string_equal(got, want);
    free(got);
    free(want);
    audit_free(a);
    store_free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_turn_is_one_command),
        cmocka_unit_test(test_full_batch_goes_at_once),
        cmocka_unit_test(test_later_turns_not_held_back),
        cmocka_unit_test(test_store_down_then_up),
        cmocka_unit_test(test_batch_survives_noscript),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
