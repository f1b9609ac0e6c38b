/*
 * The audit trail's batching against a real redis-server: entries made in
 * one event-loop turn reach Redis as one pipeline of XADDs of which only
 * the last is answered, every one of them in order, byte for byte, and
 * the file gets the same entries; a batch past AUDIT_BATCH_MAX goes in
 * more than one pipeline, trimmed to MAXLEN; entries of a later turn are
 * not held back; a store that is down, a Redis that dies with a batch
 * unanswered, a stream key of the wrong type and an XADD that cannot be
 * queued each count the whole batch as not written, once, and the next
 * batch goes through. And store_cmd_argv_noreply itself: its commands
 * run in order before the answered one that follows them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "audit.h"
#include "dynbuf.h"
#include "harness.h"
#include "log.h"
#include "metrics.h"
#include "store.h"

static struct harness H;
static struct event_base *Base;
static char Url[400];

/* The XADDs the store queued on hiredis: without a callback (their reply
 * dropped) and with one (answered); FailXadd > 0 makes the FailXadd-th
 * XADD from now refused, as hiredis refuses a command it cannot queue. */
static long XaddNoreply, XaddAnswered;
static int FailXadd;

typedef int argv_cmd_fn(redisAsyncContext *ac, redisCallbackFn *fn,
                        void *privdata, int argc, const char **argv,
                        const size_t *argvlen);

/* Stands in for hiredis's (the store calls this one), counts and calls
 * it. */
int
redisAsyncCommandArgv(redisAsyncContext *ac, redisCallbackFn *fn,
                      void *privdata, int argc, const char **argv,
                      const size_t *argvlen)
{
    static argv_cmd_fn *real;

    if (real == NULL) {
        void *sym = dlsym(RTLD_NEXT, "redisAsyncCommandArgv");

        assert_non_null(sym);
        memcpy(&real, &sym, sizeof(real));
    }
    if (argc > 0 && strcmp(argv[0], "XADD") == 0) {
        if (FailXadd > 0 && --FailXadd == 0)
            return REDIS_ERR;
        if (fn == NULL)
            XaddNoreply++;
        else
            XaddAnswered++;
    }
    return real(ac, fn, privdata, argc, argv, argvlen);
}

/* wecom_broker_audit_writes_total{sink="redis",result=...} so far. */
static long long
redis_count(const char *result)
{
    struct dynbuf d;
    char needle[128];
    const char *p;
    long long v = 0;

    dynbuf_init(&d, 1 << 22);
    assert_int_equal(metrics_render(&d), BRK_OK);
    snprintf(needle, sizeof(needle),
             "wecom_broker_audit_writes_total{sink=\"redis\",result=\"%s\"} ",
             result);
    if (d.buf != NULL && (p = strstr(d.buf, needle)) != NULL)
        v = strtoll(p + strlen(needle), NULL, 10);
    dynbuf_free(&d);
    return v;
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

struct want_count {
    long long ok, error;
};

/* The Redis side's counts are exactly these. */
static int
counted(void *arg)
{
    const struct want_count *w = arg;

    return redis_count("ok") == w->ok && redis_count("error") == w->error;
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
test_one_turn_is_one_pipeline(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long long xadd0, eval0, evalsha0, ok0, err0;
    long n[64], noreply0, answered0;
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
    noreply0 = XaddNoreply;
    answered0 = XaddAnswered;
    ok0 = redis_count("ok");
    err0 = redis_count("error");

    in_one_turn(a, 0, 40);
    Want = 40;
    assert_true(until(stream_has_want, NULL, 5000));
    /* forty entries, forty XADDs and no script; only the last one is
     * answered, and it counts the forty */
    assert_int_equal(cmd_calls("xadd") - xadd0, 40);
    assert_int_equal(
        cmd_calls("eval") - eval0 + cmd_calls("evalsha") - evalsha0, 0);
    assert_int_equal(XaddNoreply - noreply0, 39);
    assert_int_equal(XaddAnswered - answered0, 1);
    assert_int_equal(stream_ns(n, 64), 40);
    for (i = 0; i < 40; i++)
        assert_int_equal(n[i], (long)i);
    assert_true(until(counted, &(struct want_count){ok0 + 40, err0}, 5000));

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

/* Redis has run at least *arg XADDs. */
static int
xadds_done(void *arg)
{
    return cmd_calls("xadd") >= *(long long *)arg;
}

static struct audit *Empty;
static const struct timeval Zero = {0, 0};

/* One entry, then one without a field, then one more, in one turn. */
static void
on_empty_turn(evutil_socket_t fd, short what, void *arg)
{
    const char **kv = arg;

    (void)fd;
    (void)what;
    audit_append(Empty, NULL, kv, 2);
    audit_append(Empty, NULL, kv, 0);
    audit_append(Empty, NULL, kv, 2);
}

static void
test_full_batch_goes_at_once(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long long eval0, evalsha0, xadd0, len, ok0;
    long n[AUDIT_BATCH_MAX * 3], answered0, noreply0;
    size_t i, total = AUDIT_BATCH_MAX * 2 + 5;

    (void)state;
    redis_do("DEL t:audit");
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    /* a stream of at most about 10 entries: Redis trims whole nodes of
     * stream-node-max-entries (100) */
    assert_int_equal(audit_new(Base, s, "t:", 10, "", &a), BRK_OK);
    eval0 = cmd_calls("eval");
    evalsha0 = cmd_calls("evalsha");
    xadd0 = cmd_calls("xadd");
    answered0 = XaddAnswered;
    noreply0 = XaddNoreply;
    ok0 = redis_count("ok");
    in_one_turn(a, 0, (int)total);
    assert_true(
        until(xadds_done, &(long long){xadd0 + (long long)total}, 5000));
    assert_true(until(
        counted,
        &(struct want_count){ok0 + (long long)total, redis_count("error")},
        5000));
    /* two full batches sent as they filled, the rest at the turn's end:
     * three answered XADDs */
    assert_int_equal(XaddAnswered - answered0, 3);
    assert_int_equal(XaddNoreply - noreply0, (long)total - 3);
    assert_int_equal(
        cmd_calls("eval") - eval0 + cmd_calls("evalsha") - evalsha0, 0);
    /* trimmed, and what is left is the newest, in order */
    len = h_redis_int(&H, "XLEN %s", "t:audit");
    assert_true(len >= 10);
    assert_true(len <= 10 + 100);
    assert_int_equal(stream_ns(n, AUDIT_BATCH_MAX * 3), (size_t)len);
    for (i = 0; i < (size_t)len; i++)
        assert_int_equal(n[i], (long)(total - (size_t)len + i));
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
    long long ok0, err0;

    (void)state;
    redis_do("DEL t:audit");
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(audit_new(Base, s, "t:", 1000, "", &a), BRK_OK);
    h_redis_stop(&H);
    ok0 = redis_count("ok");
    err0 = redis_count("error");
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
    assert_true(until(counted, &(struct want_count){ok0 + 2, err0 + 3}, 5000));
    audit_free(a);
    store_free(s);
}

/* Redis stops answering with a whole batch sent (stopped), then dies:
 * the batch's one answer is the lost connection, which counts all of it
 * as not written, once; after a restart the next batch goes through. */
static void
test_redis_gone_mid_batch(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long long ok0, err0, end;

    (void)state;
    redis_do("DEL t:audit");
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(audit_new(Base, s, "t:", 1000, "", &a), BRK_OK);
    ok0 = redis_count("ok");
    err0 = redis_count("error");
    assert_int_equal(kill(H.redis_pid, SIGSTOP), 0);
    in_one_turn(a, 0, 7);
    /* the turn, its flush and the writes of the pipeline */
    end = h_now_ms() + 200;
    while (h_now_ms() < end) {
        event_base_loop(Base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
    assert_int_equal(redis_count("ok"), ok0);
    assert_int_equal(redis_count("error"), err0);
    h_redis_stop(&H);
    assert_true(until(counted, &(struct want_count){ok0, err0 + 7}, 5000));
    assert_int_equal(h_redis_start(&H), 0);
    assert_true(until(is_up, s, 10000));
    in_one_turn(a, 10, 2);
    Want = 2;
    assert_true(until(stream_has_want, NULL, 5000));
    assert_true(until(counted, &(struct want_count){ok0 + 2, err0 + 7}, 5000));
    audit_free(a);
    store_free(s);
}

/* The stream's key holds a string: every XADD is refused; the batch's
 * answer (the last one's WRONGTYPE) counts it all as not written, the
 * connection stays up, and once the key is a stream again the next batch
 * goes in. */
static void
test_wrong_type_key(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long long ok0, err0;
    unsigned long gen;
    long n[8];

    (void)state;
    redis_do("DEL t:audit");
    redis_do("SET t:audit not-a-stream");
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    gen = store_generation(s);
    assert_int_equal(audit_new(Base, s, "t:", 1000, "", &a), BRK_OK);
    ok0 = redis_count("ok");
    err0 = redis_count("error");
    in_one_turn(a, 0, 5);
    assert_true(until(counted, &(struct want_count){ok0, err0 + 5}, 5000));
    assert_true(store_is_up(s));
    assert_int_equal(store_generation(s), gen);

    redis_do("DEL t:audit");
    in_one_turn(a, 5, 3);
    Want = 3;
    assert_true(until(stream_has_want, NULL, 5000));
    assert_true(until(counted, &(struct want_count){ok0 + 3, err0 + 5}, 5000));
    assert_int_equal(stream_ns(n, 8), 3);
    assert_int_equal(n[0], 5);
    assert_int_equal(n[2], 7);
    assert_int_equal(store_generation(s), gen);
    audit_free(a);
    store_free(s);
}

/* hiredis refuses an XADD of the batch: in the middle (the ones before
 * it went unanswered, the rest never go) or the last, answered one.
 * Either way the whole batch counts as not written, exactly once, and
 * the next batch goes through and counts as written. */
static void
test_queue_fails_midway(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long long ok0, err0;
    long n[32];

    (void)state;
    redis_do("DEL t:audit");
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(audit_new(Base, s, "t:", 1000, "", &a), BRK_OK);
    ok0 = redis_count("ok");
    err0 = redis_count("error");

    /* the 4th of 9 refused: 3 sent unanswered, 9 counted as errors */
    FailXadd = 4;
    in_one_turn(a, 0, 9);
    assert_true(until(counted, &(struct want_count){ok0, err0 + 9}, 5000));
    assert_int_equal(FailXadd, 0);
    /* the next batch's answer comes after those 3 (which did go in) */
    in_one_turn(a, 100, 2);
    Want = 5;
    assert_true(until(stream_has_want, NULL, 5000));
    assert_true(until(counted, &(struct want_count){ok0 + 2, err0 + 9}, 5000));
    assert_int_equal(stream_ns(n, 32), 5);
    assert_int_equal(n[2], 2);
    assert_int_equal(n[3], 100);

    /* the last one, the answered one, refused */
    FailXadd = 6;
    in_one_turn(a, 200, 6);
    assert_true(until(counted, &(struct want_count){ok0 + 2, err0 + 15}, 5000));
    assert_int_equal(FailXadd, 0);
    /* one entry alone, refused: its batch is that one */
    FailXadd = 1;
    in_one_turn(a, 300, 1);
    assert_true(until(counted, &(struct want_count){ok0 + 2, err0 + 16}, 5000));
    in_one_turn(a, 400, 4);
    Want = 5 + 5 + 4;
    assert_true(until(stream_has_want, NULL, 5000));
    assert_true(until(counted, &(struct want_count){ok0 + 6, err0 + 16}, 5000));
    assert_int_equal(stream_ns(n, 32), 14);
    assert_int_equal(n[13], 403);
    audit_free(a);
    store_free(s);
}

/* An entry without a field is refused alone (an XADD needs one): the
 * others of its batch go in and count as written. */
static void
test_empty_entry_alone_refused(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    const char *kv[2] = {"type", "request"};
    long long ok0, err0;

    (void)state;
    redis_do("DEL t:audit");
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(audit_new(Base, s, "t:", 1000, "", &a), BRK_OK);
    ok0 = redis_count("ok");
    err0 = redis_count("error");
    Empty = a;
    assert_int_equal(
        event_base_once(Base, -1, EV_TIMEOUT, on_empty_turn, kv, &Zero), 0);
    Want = 2;
    assert_true(until(stream_has_want, NULL, 5000));
    assert_true(until(counted, &(struct want_count){ok0 + 2, err0}, 5000));
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

/* Values that would show an entry cut or spliced wrong across the
 * pipeline (the strings' lengths come from their offsets): empty ones
 * among them, long ones, UTF-8, RESP's own framing; in batches that fill
 * up. Each lands byte for byte, in order. */
static void
test_odd_values_byte_for_byte(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    char *want = NULL, *got;
    int total = AUDIT_BATCH_MAX + 9;

    (void)state;
    redis_do("DEL t:audit");
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(audit_new(Base, s, "t:", 100000, "", &a), BRK_OK);

    odd_in_one_turn(a, 0, 40);
    Want = 40;
    assert_true(until(stream_has_want, NULL, 5000));
    want = odd_expected(want, 0, 40);
    got = stream_nv();
    assert_string_equal(got, want);
    free(got);

    odd_in_one_turn(a, 40, total);
    Want = 40 + total;
    assert_true(until(stream_has_want, NULL, 5000));
    assert_int_equal(h_redis_int(&H, "XLEN %s", "t:audit"), 40 + total);
    want = odd_expected(want, 40, total);
    got = stream_nv();
    assert_string_equal(got, want);
    free(got);
    free(want);
    audit_free(a);
    store_free(s);
}

struct reply_seen {
    int calls;
    enum brk_err err;
    char text[256];
};

static void
on_reply_seen(enum brk_err err, struct redisReply *r, void *arg)
{
    struct reply_seen *seen = arg;
    size_t i, o = 0;

    seen->calls++;
    seen->err = err;
    seen->text[0] = '\0';
    if (r == NULL)
        return;
    if (r->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < r->elements && o + 2 < sizeof(seen->text); i++)
            o += (size_t)snprintf(seen->text + o, sizeof(seen->text) - o, "%s,",
                                  r->element[i]->str);
    } else if (r->type == REDIS_REPLY_INTEGER) {
        snprintf(seen->text, sizeof(seen->text), "int %lld", r->integer);
    } else if (r->str != NULL) {
        snprintf(seen->text, sizeof(seen->text), "%s", r->str);
    }
}

static int
seen_once(void *arg)
{
    return ((struct reply_seen *)arg)->calls > 0;
}

/* store_cmd_argv_noreply: the commands run in order, an error among them
 * is dropped with its reply, and the answered command that follows gets
 * its own reply (not one of theirs) after they all ran. EVAL and a store
 * that is down are refused. */
static void
test_noreply_then_answered(void **state)
{
    struct store *s = NULL;
    struct reply_seen seen = {0, BRK_OK, ""};
    const char *push[3] = {"RPUSH", "t:l", NULL};
    const char *bad[2] = {"INCR", "t:s"};
    const char *range[4] = {"LRANGE", "t:l", "0", "-1"};
    const char *eval[3] = {"EVAL", "return 1", "0"};
    const char *vals[4] = {"a", "b\r\n$1\r\nx", "", "d"};
    size_t vlens[3];
    long long gen;
    int i;

    (void)state;
    redis_do("DEL t:l");
    redis_do("SET t:s text");
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    gen = (long long)store_generation(s);
    for (i = 0; i < 4; i++) {
        push[2] = vals[i];
        vlens[0] = 5;
        vlens[1] = 3;
        vlens[2] = strlen(vals[i]);
        assert_int_equal(store_cmd_argv_noreply(s, 3, push, vlens), BRK_OK);
        /* a refused command among them: its error reply is dropped */
        if (i == 1)
            assert_int_equal(store_cmd_argv_noreply(s, 2, bad, NULL), BRK_OK);
    }
    assert_int_equal(store_cmd_argv(s, on_reply_seen, &seen, 4, range, NULL),
                     BRK_OK);
    assert_true(until(seen_once, &seen, 5000));
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.err, BRK_OK);
    assert_string_equal(seen.text, "a,b\r\n$1\r\nx,,d,");
    assert_int_equal((long long)store_generation(s), gen);
    assert_true(store_is_up(s));

    assert_int_equal(store_cmd_argv_noreply(s, 3, eval, NULL), BRK_ERR_INVAL);
    h_redis_stop(&H);
    assert_true(until(is_down, s, 5000));
    push[2] = "e";
    assert_int_equal(store_cmd_argv_noreply(s, 3, push, NULL), BRK_ERR_STORE);
    assert_int_equal(h_redis_start(&H), 0);
    assert_true(until(is_up, s, 10000));
    store_free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_turn_is_one_pipeline),
        cmocka_unit_test(test_full_batch_goes_at_once),
        cmocka_unit_test(test_later_turns_not_held_back),
        cmocka_unit_test(test_store_down_then_up),
        cmocka_unit_test(test_odd_values_byte_for_byte),
        cmocka_unit_test(test_redis_gone_mid_batch),
        cmocka_unit_test(test_wrong_type_key),
        cmocka_unit_test(test_queue_fails_midway),
        cmocka_unit_test(test_empty_entry_alone_refused),
        cmocka_unit_test(test_noreply_then_answered),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
