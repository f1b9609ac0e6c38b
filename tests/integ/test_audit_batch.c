/*
 * The audit trail's batching against a real redis-server: entries made in
 * one event-loop turn reach Redis as one pipeline of XADDs (one write),
 * every one of them in order, byte for byte, and every one's reply judged
 * on its own; the file gets the same entries; a batch past
 * AUDIT_BATCH_MAX goes in more than one pipeline, trimmed to MAXLEN;
 * entries of a later turn are not held back past the window; under load
 * the turns within one window go as one batch, when it ends; a window set
 * to 0 (a stop) sends a waiting batch in its turn. An entry Redis refuses
 * (the key of another type, maxmemory reached midway) counts as not
 * written and the rest of its batch as written. Entries Redis does not
 * take — made while it is down, unanswered when it dies, not queued by
 * hiredis — are held and go in once it is back, in order, ahead of later
 * ones, each counted once; the hold is bounded (past it, entries count as
 * not written) and what an audit freed still holds counts as not written.
 * And the store's batches themselves: every reply judged, in order,
 * before a command sent after them; a lost connection, a deadline passed
 * and a store freed with replies pending count each pending command once,
 * as unanswered (the batch's last), and answer the batch exactly once.
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
 * unseen) and with one (judged), and how many runs of consecutive XADDs
 * share one callback argument (a store batch). FailXadd > 0 makes the
 * FailXadd-th XADD from now refused, as hiredis refuses a command it
 * cannot queue; StringXadd > 0 sends the StringXadd-th XADD from now to
 * t:string, a string key, which Redis refuses (WRONGTYPE) as it would an
 * entry whose key changed type under it. */
static long XaddUnjudged, XaddJudged, XaddRuns;
static int FailXadd, StringXadd;
static void *LastPriv;
/* the store's Redis socket, and the writes to it that carried XADDs */
static int RedisFd = -1;
static long XaddWrites;

typedef int argv_cmd_fn(redisAsyncContext *ac, redisCallbackFn *fn,
                        void *privdata, int argc, const char **argv,
                        const size_t *argvlen);
typedef int fmt_cmd_fn(redisAsyncContext *ac, redisCallbackFn *fn,
                       void *privdata, const char *cmd, size_t len);
typedef ssize_t write_fn(int fd, const void *buf, size_t len);

/* Stands in for hiredis's: any other command the store sends ends a run
 * of XADDs (the audit's go through the one below). */
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
    LastPriv = NULL;
    return real(ac, fn, privdata, argc, argv, argvlen);
}

/* Stands in for hiredis's (the store sends the audit's XADDs, which the
 * audit formats itself, through this one): counts them, refuses the
 * FailXadd-th as hiredis refuses a command it cannot queue, and sends the
 * StringXadd-th to t:string. */
int
redisAsyncFormattedCommand(redisAsyncContext *ac, redisCallbackFn *fn,
                           void *privdata, const char *cmd, size_t len)
{
    static fmt_cmd_fn *real;
    static const char key[] = "$7\r\nt:audit\r\n";
    static const char other[] = "$8\r\nt:string\r\n";
    static char swapped[1 << 20];
    const char *k;
    size_t pre;

    if (real == NULL) {
        void *sym = dlsym(RTLD_NEXT, "redisAsyncFormattedCommand");

        assert_non_null(sym);
        memcpy(&real, &sym, sizeof(real));
    }
    if (memmem(cmd, len < 24 ? len : 24, "$4\r\nXADD\r\n", 10) == NULL) {
        LastPriv = NULL;
        return real(ac, fn, privdata, cmd, len);
    }
    if (FailXadd > 0 && --FailXadd == 0)
        return REDIS_ERR;
    RedisFd = ac->c.fd;
    if (fn == NULL) {
        XaddUnjudged++;
    } else {
        XaddJudged++;
        if (privdata != LastPriv)
            XaddRuns++;
        LastPriv = privdata;
    }
    if (StringXadd > 0 && --StringXadd == 0) {
        k = memmem(cmd, len, key, sizeof(key) - 1);
        assert_non_null(k);
        assert_true(len + 1 <= sizeof(swapped));
        pre = (size_t)(k - cmd);
        memcpy(swapped, cmd, pre);
        memcpy(swapped + pre, other, sizeof(other) - 1);
        memcpy(swapped + pre + sizeof(other) - 1, k + sizeof(key) - 1,
               len - pre - (sizeof(key) - 1));
        return real(ac, fn, privdata, swapped, len + 1);
    }
    return real(ac, fn, privdata, cmd, len);
}

/* Stands in for libc's (hiredis calls this one to send): counts the
 * writes to the store's Redis socket that carry an XADD. */
ssize_t
write(int fd, const void *buf, size_t len)
{
    static write_fn *real;

    if (real == NULL) {
        void *sym = dlsym(RTLD_NEXT, "write");

        if (sym == NULL)
            abort();
        memcpy(&real, &sym, sizeof(real));
    }
    if (fd == RedisFd && fd >= 0 && memmem(buf, len, "$4\r\nXADD\r\n", 10))
        XaddWrites++;
    return real(fd, buf, len);
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

/* An empty t:audit, a store on the test's Redis, up, and an audit on it
 * keeping maxlen entries, without a file. */
static void
fresh_audit(long long maxlen, struct store **s, struct audit **a)
{
    redis_do("DEL t:audit");
    assert_int_equal(store_new(Base, Url, 2000, s), BRK_OK);
    assert_true(until(is_up, *s, 5000));
    assert_int_equal(audit_new(Base, *s, "t:", maxlen, "", a), BRK_OK);
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
    long n[64], unjudged0, judged0, runs0, writes0;
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
    unjudged0 = XaddUnjudged;
    judged0 = XaddJudged;
    runs0 = XaddRuns;
    writes0 = XaddWrites;
    LastPriv = NULL;
    ok0 = redis_count("ok");
    err0 = redis_count("error");

    in_one_turn(a, 0, 40);
    Want = 40;
    assert_true(until(stream_has_want, NULL, 5000));
    /* forty entries, forty XADDs and no script, sent in one write as one
     * batch; every reply is judged, and they count the forty */
    assert_int_equal(cmd_calls("xadd") - xadd0, 40);
    assert_int_equal(
        cmd_calls("eval") - eval0 + cmd_calls("evalsha") - evalsha0, 0);
    assert_int_equal(XaddUnjudged - unjudged0, 0);
    assert_int_equal(XaddJudged - judged0, 40);
    assert_int_equal(XaddRuns - runs0, 1);
    assert_int_equal(XaddWrites - writes0, 1);
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
    long n[AUDIT_BATCH_MAX * 3], judged0, unjudged0, runs0;
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
    judged0 = XaddJudged;
    unjudged0 = XaddUnjudged;
    runs0 = XaddRuns;
    LastPriv = NULL;
    ok0 = redis_count("ok");
    in_one_turn(a, 0, (int)total);
    assert_true(
        until(xadds_done, &(long long){xadd0 + (long long)total}, 5000));
    assert_true(until(
        counted,
        &(struct want_count){ok0 + (long long)total, redis_count("error")},
        5000));
    /* two full batches sent as they filled, the rest at the turn's end:
     * three batches, every XADD judged */
    assert_int_equal(XaddRuns - runs0, 3);
    assert_int_equal(XaddJudged - judged0, (long)total);
    assert_int_equal(XaddUnjudged - unjudged0, 0);
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
    fresh_audit(1000, &s, &a);
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

/* Entries in the stream now. */
static size_t
stream_len(void)
{
    return (size_t)h_redis_int(&H, "XLEN %s", "t:audit");
}

/* Run the loop for ms, whatever happens. */
static void
run_for(long ms)
{
    long end = h_now_ms() + ms;

    while (h_now_ms() < end) {
        event_base_loop(Base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
}

/* Under load one pipeline a window: a lone entry goes with its own turn;
 * entries of later turns within the window of that batch wait for its end
 * and go together, as one batch. */
static void
test_window_gathers_turns(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long runs0, start;
    int i;

    (void)state;
    fresh_audit(1000, &s, &a);
    /* wide enough that the loop's own delays cannot reach it */
    audit_set_window(a, 1500);
    runs0 = XaddRuns;
    in_one_turn(a, 0, 1);
    Want = 1;
    assert_true(until(stream_has_want, NULL, 1000));
    start = h_now_ms();
    for (i = 1; i <= 3; i++) {
        in_one_turn(a, i, 1);
        run_for(20);
    }
    /* held: the last batch went less than the window ago */
    run_for(200);
    if (h_now_ms() - start < 1400)
        assert_int_equal(stream_len(), 1);
    Want = 4;
    assert_true(until(stream_has_want, NULL, 3000));
    /* not before the window since the first batch has passed */
    assert_true(h_now_ms() - start >= 1300);
    assert_int_equal(XaddRuns - runs0, 2);
    audit_free(a);
    store_free(s);
}

/* A window set to 0 (a stop) sends a waiting batch in this turn, and every
 * later one with its own turn. */
static void
test_window_zero_sends_now(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long start;

    (void)state;
    fresh_audit(1000, &s, &a);
    audit_set_window(a, 60000);
    in_one_turn(a, 0, 1);
    Want = 1;
    assert_true(until(stream_has_want, NULL, 1000));
    in_one_turn(a, 1, 2);
    run_for(100);
    assert_int_equal(stream_len(), 1);
    start = h_now_ms();
    audit_set_window(a, 0);
    Want = 3;
    assert_true(until(stream_has_want, NULL, 5000));
    in_one_turn(a, 3, 1);
    Want = 4;
    assert_true(until(stream_has_want, NULL, 5000));
    assert_true(h_now_ms() - start < 5000);
    audit_set_window(NULL, 0);
    audit_free(a);
    store_free(s);
}

/* The "held" count so far. */
static long long
held_count(void)
{
    return redis_count("held");
}

/* At least *arg entries have been held so far. */
static int
counted_held(void *arg)
{
    return held_count() >= *(long long *)arg;
}

/* The stream's "n" fields are exactly want[0..n). */
static void
stream_is(const long *want, size_t n)
{
    long got[512];
    size_t i;

    assert_true(n <= nitems(got));
    assert_int_equal(stream_ns(got, nitems(got)), n);
    for (i = 0; i < n; i++)
        assert_int_equal(got[i], want[i]);
}

/* Entries made while Redis is away are held, not dropped: once it is back
 * they go in first, in order, ahead of the entries made since, and each
 * counts once, as written. */
static void
test_store_down_then_up(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long long ok0, err0, held0;
    static const long want[] = {0, 1, 2, 10, 11};

    (void)state;
    fresh_audit(1000, &s, &a);
    h_redis_stop(&H);
    assert_true(until(is_down, s, 5000));
    ok0 = redis_count("ok");
    err0 = redis_count("error");
    held0 = held_count();
    in_one_turn(a, 0, 3);
    /* the batch is tried, held (not connected): the loop goes on, and the
     * hold is tried again while Redis stays away */
    run_for(700);
    assert_int_equal(held_count(), held0 + 3);
    assert_int_equal(redis_count("error"), err0);
    assert_int_equal(h_redis_start(&H), 0);
    assert_true(until(is_up, s, 10000));
    in_one_turn(a, 10, 2);
    Want = 5;
    assert_true(until(stream_has_want, NULL, 5000));
    assert_true(until(counted, &(struct want_count){ok0 + 5, err0}, 5000));
    stream_is(want, nitems(want));
    assert_int_equal(held_count(), held0 + 3);
    audit_free(a);
    store_free(s);
}

/* Entries held while Redis is away, with no entry made after it is back:
 * the retry sends them on its own. */
static void
test_held_sent_without_new_entries(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long long ok0, err0;
    static const long want[] = {0, 1, 2, 3};

    (void)state;
    fresh_audit(1000, &s, &a);
    h_redis_stop(&H);
    assert_true(until(is_down, s, 5000));
    ok0 = redis_count("ok");
    err0 = redis_count("error");
    in_one_turn(a, 0, 4);
    run_for(100);
    assert_int_equal(h_redis_start(&H), 0);
    Want = 4;
    assert_true(until(stream_has_want, NULL, 10000));
    assert_true(until(counted, &(struct want_count){ok0 + 4, err0}, 5000));
    stream_is(want, nitems(want));
    audit_free(a);
    store_free(s);
}

/* Redis stops answering with a whole batch sent (stopped), then dies:
 * every entry's answer is the lost connection, and all of them are held;
 * after a restart they go in, in order, before the entries made since,
 * each counted once as written. */
static void
test_redis_gone_mid_batch(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long long ok0, err0, held0;
    static const long want[] = {0, 1, 2, 3, 4, 5, 6, 10, 11};

    (void)state;
    fresh_audit(1000, &s, &a);
    ok0 = redis_count("ok");
    err0 = redis_count("error");
    held0 = held_count();
    assert_int_equal(kill(H.redis_pid, SIGSTOP), 0);
    in_one_turn(a, 0, 7);
    /* the turn, its flush and the writes of the pipeline */
    run_for(200);
    assert_int_equal(redis_count("ok"), ok0);
    assert_int_equal(redis_count("error"), err0);
    assert_int_equal(held_count(), held0);
    h_redis_stop(&H);
    assert_true(until(is_down, s, 5000));
    run_for(50);
    assert_int_equal(held_count(), held0 + 7);
    assert_int_equal(redis_count("error"), err0);
    assert_int_equal(h_redis_start(&H), 0);
    assert_true(until(is_up, s, 10000));
    in_one_turn(a, 10, 2);
    Want = 9;
    assert_true(until(stream_has_want, NULL, 5000));
    assert_true(until(counted, &(struct want_count){ok0 + 9, err0}, 5000));
    stream_is(want, nitems(want));
    audit_free(a);
    store_free(s);
}

/* Redis away long enough for the hold to fill: entries past
 * AUDIT_HOLD_BYTES count as not written (once each); the held ones, the
 * first made, go in once Redis is back, in order; the audit goes on. */
static void
test_hold_is_bounded(void **state)
{
    enum { VALUE = 8000 };
    struct store *s = NULL;
    struct audit *a = NULL;
    static char big[VALUE + 1];
    char n[24];
    const char *kv[6] = {"type", "request", "n", n, "v", big};
    long long ok0, err0, held0, held, lost;
    long total = 0, got[4];
    int i;

    (void)state;
    redis_do("DEL t:audit");
    assert_int_equal(store_new(Base, Url, 5000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(audit_new(Base, s, "t:", 1000000, "", &a), BRK_OK);
    h_redis_stop(&H);
    assert_true(until(is_down, s, 5000));
    ok0 = redis_count("ok");
    err0 = redis_count("error");
    held0 = held_count();
    memset(big, 'v', VALUE);
    /* a quarter more than the hold takes, a batch at a time */
    while (total * VALUE < AUDIT_HOLD_BYTES + AUDIT_HOLD_BYTES / 4) {
        for (i = 0; i < 16; i++, total++) {
            snprintf(n, sizeof(n), "%ld", total);
            audit_append(a, NULL, kv, 6);
        }
        event_base_loop(Base, EVLOOP_NONBLOCK);
    }
    run_for(20);
    held = held_count() - held0;
    lost = redis_count("error") - err0;
    assert_int_equal(held + lost, total);
    assert_true(held * VALUE <= AUDIT_HOLD_BYTES);
    assert_true(held * (VALUE + 64) > AUDIT_HOLD_BYTES - 2 * VALUE);
    assert_int_equal(h_redis_start(&H), 0);
    assert_true(until(is_up, s, 10000));
    Want = held;
    assert_true(until(stream_has_want, NULL, 20000));
    assert_true(
        until(counted, &(struct want_count){ok0 + held, err0 + lost}, 10000));
    assert_int_equal(h_redis_int(&H, "XLEN %s", "t:audit"), held);
    /* the first made are the ones kept */
    assert_int_equal(stream_ns(got, 4), 4);
    assert_int_equal(got[0], 0);
    assert_int_equal(got[3], 3);
    audit_free(a);
    store_free(s);
}

static int
not_replica(void **state)
{
    (void)state;
    redis_do("REPLICAOF NO ONE");
    return 0;
}

/* Redis turned replica (its primary unreachable) answers the batch's
 * XADDs READONLY: nothing is written, so the entries are held, not
 * counted as refused; every retry meets READONLY again and keeps them;
 * once it is a primary again they go in, in order, each counted once. */
static void
test_readonly_held(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long long ok0, err0, held0;
    static const long want[] = {0, 1, 2, 10};

    (void)state;
    fresh_audit(1000, &s, &a);
    ok0 = redis_count("ok");
    err0 = redis_count("error");
    held0 = held_count();
    redis_do("REPLICAOF 127.0.0.1 1");
    in_one_turn(a, 0, 3);
    assert_true(until(counted_held, &(long long){held0 + 3}, 5000));
    /* the retries meet READONLY too: still held, nothing refused */
    run_for(700);
    assert_int_equal(redis_count("error"), err0);
    assert_int_equal(redis_count("ok"), ok0);
    assert_int_equal(h_redis_int(&H, "XLEN %s", "t:audit"), 0);
    redis_do("REPLICAOF NO ONE");
    in_one_turn(a, 10, 1);
    Want = 4;
    assert_true(until(stream_has_want, NULL, 10000));
    assert_true(until(counted, &(struct want_count){ok0 + 4, err0}, 5000));
    stream_is(want, nitems(want));
    audit_free(a);
    store_free(s);
}

/* An audit freed with entries held: each counts once as not written. */
static void
test_free_with_held(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long long ok0, err0;

    (void)state;
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(audit_new(Base, s, "t:", 1000, "", &a), BRK_OK);
    h_redis_stop(&H);
    assert_true(until(is_down, s, 5000));
    ok0 = redis_count("ok");
    err0 = redis_count("error");
    in_one_turn(a, 0, 5);
    run_for(50);
    audit_free(a);
    assert_int_equal(redis_count("error"), err0 + 5);
    assert_int_equal(redis_count("ok"), ok0);
    assert_int_equal(h_redis_start(&H), 0);
    assert_true(until(is_up, s, 10000));
    store_free(s);
}

/* The stream's key holds a string: every XADD is refused, and each
 * WRONGTYPE counts its entry as not written; the connection stays up, and
 * once the key is a stream again the next batch goes in. */
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

/* hiredis refuses an XADD of the batch: in the middle or the last one.
 * The ones before it were sent and are written; the refused one and the
 * rest never went and are held, then sent again ahead of later entries:
 * in the end every entry is written once, in order, none counted as not
 * written. */
static void
test_queue_fails_midway(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long long ok0, err0, held0;
    static const long want[] = {0,   1,   2,   3,   4,   5,   6,   7,
                                8,   100, 101, 200, 201, 202, 203, 204,
                                205, 300, 400, 401, 402, 403};

    (void)state;
    fresh_audit(1000, &s, &a);
    ok0 = redis_count("ok");
    err0 = redis_count("error");
    held0 = held_count();

    /* the 4th of 9 refused: 3 sent and written, 6 held and sent again */
    FailXadd = 4;
    in_one_turn(a, 0, 9);
    Want = 9;
    assert_true(until(stream_has_want, NULL, 5000));
    assert_true(until(counted, &(struct want_count){ok0 + 9, err0}, 5000));
    assert_int_equal(FailXadd, 0);
    assert_int_equal(held_count(), held0 + 6);
    in_one_turn(a, 100, 2);
    Want = 11;
    assert_true(until(stream_has_want, NULL, 5000));

    /* the last one refused: the 5 before it written, it later */
    FailXadd = 6;
    in_one_turn(a, 200, 6);
    assert_true(until(counted, &(struct want_count){ok0 + 17, err0}, 5000));
    assert_int_equal(FailXadd, 0);
    /* one entry alone, refused: nothing sent; held and sent again */
    FailXadd = 1;
    in_one_turn(a, 300, 1);
    assert_true(until(counted, &(struct want_count){ok0 + 18, err0}, 5000));
    in_one_turn(a, 400, 4);
    Want = (long long)nitems(want);
    assert_true(until(stream_has_want, NULL, 5000));
    assert_true(until(counted,
                      &(struct want_count){ok0 + (long long)nitems(want), err0},
                      5000));
    stream_is(want, nitems(want));
    assert_int_equal(held_count(), held0 + 6 + 1 + 1);
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
    fresh_audit(1000, &s, &a);
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
    fresh_audit(100000, &s, &a);

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

/* An entry Redis refuses, not the batch's last: the 3rd of 8 goes to
 * t:string (StringXadd) and is answered WRONGTYPE. It counts as not
 * written and the other seven as written, which the stream confirms; the
 * connection stays up. Then the first of a batch of five. (When only the
 * last reply was judged, all eight counted as written.) */
static void
test_error_on_earlier_entry(void **state)
{
    struct store *s = NULL;
    struct audit *a = NULL;
    long long ok0, err0;
    unsigned long gen;
    long n[16];
    size_t i;
    static const long want[] = {0, 1, 3, 4, 5, 6, 7, 11, 12, 13, 14};

    (void)state;
    redis_do("DEL t:audit");
    redis_do("SET t:string text");
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    gen = store_generation(s);
    assert_int_equal(audit_new(Base, s, "t:", 1000, "", &a), BRK_OK);
    ok0 = redis_count("ok");
    err0 = redis_count("error");

    StringXadd = 3;
    in_one_turn(a, 0, 8);
    assert_true(until(counted, &(struct want_count){ok0 + 7, err0 + 1}, 5000));
    assert_int_equal(StringXadd, 0);
    assert_int_equal(stream_ns(n, 16), 7);

    StringXadd = 1;
    in_one_turn(a, 10, 5);
    assert_true(until(counted, &(struct want_count){ok0 + 11, err0 + 2}, 5000));
    assert_int_equal(stream_ns(n, 16), nitems(want));
    for (i = 0; i < nitems(want); i++)
        assert_int_equal(n[i], want[i]);
    assert_true(store_is_up(s));
    assert_int_equal(store_generation(s), gen);
    audit_free(a);
    store_free(s);
}

static struct audit *Big;

/* Entries from *arg on, VALUE_BIG bytes of value each, in one turn. */
#define BIG_ENTRIES 120
#define VALUE_BIG   2000
static void
on_big_turn(evutil_socket_t fd, short what, void *arg)
{
    static char big[VALUE_BIG + 1];
    char n[24];
    const char *kv[6] = {"type", "request", "n", n, "v", big};
    int i, from = *(int *)arg;

    (void)fd;
    (void)what;
    memset(big, 'x', VALUE_BIG);
    for (i = from; i < from + BIG_ENTRIES; i++) {
        snprintf(n, sizeof(n), "%d", i);
        audit_append(Big, NULL, kv, 6);
    }
}

/* The Redis side has counted this many entries in all. */
static int
counted_total(void *arg)
{
    return redis_count("ok") + redis_count("error") == *(long long *)arg;
}

static long long
used_memory(void)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    const char *p;
    long long v = -1;

    assert_non_null(c);
    r = redisCommand(c, "INFO memory");
    assert_non_null(r);
    if (r->type == REDIS_REPLY_STRING &&
        (p = strstr(r->str, "used_memory:")) != NULL)
        v = strtoll(p + strlen("used_memory:"), NULL, 10);
    freeReplyObject(r);
    redisFree(c);
    assert_true(v > 0);
    return v;
}

static int
no_maxmemory(void **state)
{
    (void)state;
    redis_do("CONFIG SET maxmemory 0");
    return 0;
}

/* Redis itself refuses the later entries of a batch, nothing interposed:
 * maxmemory (noeviction) 96 KiB above what Redis uses now, then one batch
 * of 120 entries of 2,000 bytes each (one batch: under AUDIT_BATCH_BYTES).
 * Redis checks maxmemory before each write command, so the XADDs that fit
 * go in and every one after the stream has grown past the limit is
 * answered OOM. Reliable both ways: the margin is well under the 240 KB
 * the batch adds (about 50 entries fit), so some entries are always
 * refused, and well over what else grows in Redis meanwhile (the store's
 * connection and its query buffer, a few tens of KiB; nothing else runs),
 * so some always go in. Each counts once, as written or not, and the
 * written ones are the batch's first, in order. (When only the last reply
 * was judged, all of them counted as not written.) */
static void
test_maxmemory_midway(void **state)
{
    struct store *s = NULL;
    long long ok0, err0, ok, total, len;
    static long n[BIG_ENTRIES];
    static int from;
    char cmd[64];
    size_t i;

    (void)state;
    redis_do("DEL t:audit");
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(audit_new(Base, s, "t:", 100000, "", &Big), BRK_OK);
    ok0 = redis_count("ok");
    err0 = redis_count("error");
    redis_do("CONFIG SET maxmemory-policy noeviction");
    snprintf(cmd, sizeof(cmd), "CONFIG SET maxmemory %lld",
             used_memory() + 96 * 1024);
    redis_do(cmd);

    from = 0;
    assert_int_equal(
        event_base_once(Base, -1, EV_TIMEOUT, on_big_turn, &from, &Zero), 0);
    total = ok0 + err0 + BIG_ENTRIES;
    assert_true(until(counted_total, &total, 5000));
    redis_do("CONFIG SET maxmemory 0");
    ok = redis_count("ok") - ok0;
    assert_true(ok >= 1);
    assert_true(ok < BIG_ENTRIES);
    len = h_redis_int(&H, "XLEN %s", "t:audit");
    assert_int_equal(len, ok);
    assert_int_equal(stream_ns(n, BIG_ENTRIES), (size_t)ok);
    for (i = 0; i < (size_t)ok; i++)
        assert_int_equal(n[i], (long)i);

    /* room again: the next batch goes in whole */
    from = 1000;
    assert_int_equal(
        event_base_once(Base, -1, EV_TIMEOUT, on_big_turn, &from, &Zero), 0);
    total += BIG_ENTRIES;
    assert_true(until(counted_total, &total, 5000));
    assert_int_equal(redis_count("ok"), ok0 + ok + BIG_ENTRIES);
    assert_int_equal(h_redis_int(&H, "XLEN %s", "t:audit"), ok + BIG_ENTRIES);
    assert_true(store_is_up(s));
    audit_free(Big);
    Big = NULL;
    store_free(s);
}

/*---- The store's batches ----*/

static int Seq; /* orders the callbacks below */

struct reply_seen {
    int calls, order;
    enum brk_err err;
    char text[256];
};

static void
on_reply_seen(enum brk_err err, struct redisReply *r, void *arg)
{
    struct reply_seen *seen = arg;
    size_t i, o = 0;

    seen->calls++;
    seen->order = ++Seq;
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

struct batch_seen {
    int calls, order;
    size_t ok, failed, unanswered;
    enum brk_err err;
    int has_why;
    char why[STORE_WHY_MAX];
};

static void
on_batch_seen(size_t ok, size_t failed, size_t unanswered, enum brk_err err,
              const char *why, void *arg)
{
    struct batch_seen *seen = arg;

    seen->calls++;
    seen->order = ++Seq;
    seen->ok = ok;
    seen->failed = failed;
    seen->unanswered = unanswered;
    seen->err = err;
    seen->has_why = why != NULL;
    snprintf(seen->why, sizeof(seen->why), "%s", why ? why : "");
}

static int
batch_seen_once(void *arg)
{
    return ((struct batch_seen *)arg)->calls > 0;
}

/* A PING through s answered: what the loop had to deliver before it has
 * been delivered. */
static void
round_trip(struct store *s)
{
    const char *ping[1] = {"PING"};
    struct reply_seen seen = {0, 0, BRK_OK, ""};

    assert_int_equal(store_cmd_argv(s, on_reply_seen, &seen, 1, ping, NULL),
                     BRK_OK);
    assert_true(until(seen_once, &seen, 5000));
    assert_int_equal(seen.err, BRK_OK);
}

/* Redis's blocked_clients is *arg. */
static int
blocked_is(void *arg)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    const char *p;
    long long v = -1;

    assert_non_null(c);
    r = redisCommand(c, "INFO clients");
    assert_non_null(r);
    if (r->type == REDIS_REPLY_STRING &&
        (p = strstr(r->str, "blocked_clients:")) != NULL)
        v = strtoll(p + strlen("blocked_clients:"), NULL, 10);
    freeReplyObject(r);
    redisFree(c);
    return v == *(long long *)arg;
}

/* Queue a command given as arguments: formatted by hiredis, as the
 * store's batches take commands in RESP. */
static enum brk_err
batch_try(struct store_batch *b, int argc, const char **argv,
          const size_t *lens)
{
    char *cmd = NULL;
    long long len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    enum brk_err err;

    assert_true(len > 0);
    err = store_batch_add_resp(b, cmd, (size_t)len);
    redisFreeCommand(cmd);
    return err;
}

static void
batch_add(struct store_batch *b, int argc, const char **argv)
{
    assert_int_equal(batch_try(b, argc, argv, NULL), BRK_OK);
}

/* Every reply of a batch judged on its own: two error replies among six
 * commands (neither the last) make 4 ok and 2 failed, the first error's
 * text given; the commands ran in order, and a command sent after the
 * batch is answered after it, with its own reply. EVAL, an inline command, a
 * command after the end, a batch with nothing queued and a store that is down
 * are refused or never answered. */
static void
test_batch_each_reply_judged(void **state)
{
    struct store *s = NULL;
    struct store_batch *b = NULL, *none = NULL;
    struct reply_seen seen = {0, 0, BRK_OK, ""};
    struct batch_seen bs = {0}, empty = {0};
    const char *push[3] = {"RPUSH", "t:l", NULL};
    const char *incr[2] = {"INCR", "t:s"};
    const char *xadd[5] = {"XADD", "t:s", "*", "f", "v"};
    const char *range[4] = {"LRANGE", "t:l", "0", "-1"};
    const char *eval[3] = {"EVAL", "return 1", "0"};
    const char *vals[4] = {"a", "b\r\n$1\r\nx", "", "d"};
    size_t vlens[3] = {5, 3, 0};
    unsigned long gen;
    int i;

    (void)state;
    redis_do("DEL t:l");
    redis_do("SET t:s text");
    assert_int_equal(store_new(Base, Url, 2000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    gen = store_generation(s);
    assert_int_equal(store_batch_begin(s, on_batch_seen, &bs, &b), BRK_OK);
    assert_non_null(b);
    for (i = 0; i < 4; i++) {
        push[2] = vals[i];
        vlens[2] = strlen(vals[i]);
        assert_int_equal(batch_try(b, 3, push, vlens), BRK_OK);
        if (i == 0)
            batch_add(b, 2, incr);
        if (i == 2)
            batch_add(b, 5, xadd);
    }
    assert_int_equal(batch_try(b, 3, eval, NULL), BRK_ERR_INVAL);
    /* an inline command, not an array of bulk strings */
    assert_int_equal(store_batch_add_resp(b, "PING\r\n", 6), BRK_ERR_INVAL);
    store_batch_end(b);
    assert_int_equal(batch_try(b, 3, push, NULL), BRK_ERR_INVAL);
    assert_int_equal(bs.calls, 0);
    assert_int_equal(store_cmd_argv(s, on_reply_seen, &seen, 4, range, NULL),
                     BRK_OK);
    assert_true(until(seen_once, &seen, 5000));
    assert_int_equal(bs.calls, 1);
    assert_true(bs.order < seen.order);
    assert_int_equal(bs.ok, 4);
    assert_int_equal(bs.failed, 2);
    assert_int_equal(bs.unanswered, 0);
    assert_int_equal(bs.err, BRK_ERR_STORE);
    assert_true(bs.has_why);
    assert_non_null(strstr(bs.why, "not an integer"));
    assert_int_equal(seen.err, BRK_OK);
    assert_string_equal(seen.text, "a,b\r\n$1\r\nx,,d,");
    assert_true(store_is_up(s));
    assert_int_equal(store_generation(s), gen);

    /* nothing queued: never answered */
    assert_int_equal(store_batch_begin(s, on_batch_seen, &empty, &none),
                     BRK_OK);
    store_batch_end(none);
    round_trip(s);
    round_trip(s);
    assert_int_equal(empty.calls, 0);
    assert_int_equal(bs.calls, 1);

    h_redis_stop(&H);
    assert_true(until(is_down, s, 5000));
    none = NULL;
    assert_int_equal(store_batch_begin(s, on_batch_seen, &empty, &none),
                     BRK_ERR_STORE);
    assert_null(none);
    assert_int_equal(h_redis_start(&H), 0);
    assert_true(until(is_up, s, 10000));
    store_free(s);
}

/* A batch whose third command blocks (BLPOP on an empty list): the two
 * before it are answered; Redis does not read the three after it while
 * the client is blocked. Redis has written those two replies before it
 * answers the INFO that shows the client blocked, so they are read before
 * the close that CLIENT KILL then makes. The batch is answered once: 2 ok,
 * 4 unanswered (each pending command once, the batch's last), no error
 * text; the store
 * reconnects and nothing more comes. */
static void
test_batch_connection_lost(void **state)
{
    struct store *s = NULL;
    struct store_batch *b = NULL;
    struct batch_seen bs = {0};
    const char *push[3] = {"RPUSH", "t:l", "x"};
    const char *blpop[3] = {"BLPOP", "t:never", "0"};
    long long zero = 0, one = 1;
    int i;

    (void)state;
    redis_do("DEL t:l t:never");
    assert_true(until(blocked_is, &zero, 5000));
    assert_int_equal(store_new(Base, Url, 5000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(store_batch_begin(s, on_batch_seen, &bs, &b), BRK_OK);
    for (i = 0; i < 6; i++)
        batch_add(b, 3, i == 2 ? blpop : push);
    store_batch_end(b);
    assert_true(until(blocked_is, &one, 5000));
    redis_do("CLIENT KILL TYPE normal");
    assert_true(until(batch_seen_once, &bs, 5000));
    assert_int_equal(bs.ok, 2);
    assert_int_equal(bs.failed, 0);
    assert_int_equal(bs.unanswered, 4);
    assert_int_equal(bs.err, BRK_ERR_STORE);
    assert_false(bs.has_why);
    assert_int_equal(h_redis_int(&H, "LLEN %s", "t:l"), 2);
    assert_true(until(is_up, s, 10000));
    round_trip(s);
    assert_int_equal(bs.calls, 1);
    store_free(s);
    assert_int_equal(bs.calls, 1);
}

/* The same blocked batch with a short deadline and no kill: the deadline
 * drops the connection, and the batch is answered once, BRK_ERR_TIMEOUT,
 * the one answer before the block ok, the two from it on unanswered. */
static void
test_batch_deadline(void **state)
{
    struct store *s = NULL;
    struct store_batch *b = NULL;
    struct batch_seen bs = {0};
    const char *push[3] = {"RPUSH", "t:l", "x"};
    const char *blpop[3] = {"BLPOP", "t:never", "0"};
    long long zero = 0;
    unsigned long gen;

    (void)state;
    redis_do("DEL t:l t:never");
    assert_true(until(blocked_is, &zero, 5000));
    assert_int_equal(store_new(Base, Url, 300, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    gen = store_generation(s);
    assert_int_equal(store_batch_begin(s, on_batch_seen, &bs, &b), BRK_OK);
    batch_add(b, 3, push);
    batch_add(b, 3, blpop);
    batch_add(b, 3, push);
    store_batch_end(b);
    assert_true(until(batch_seen_once, &bs, 5000));
    assert_int_equal(bs.ok, 1);
    assert_int_equal(bs.failed, 0);
    assert_int_equal(bs.unanswered, 2);
    assert_int_equal(bs.err, BRK_ERR_TIMEOUT);
    assert_true(until(is_up, s, 10000));
    assert_true(store_generation(s) > gen);
    round_trip(s);
    assert_int_equal(bs.calls, 1);
    assert_int_equal(h_redis_int(&H, "LLEN %s", "t:l"), 1);
    store_free(s);
}

/* The store freed with a batch unanswered: answered once, from
 * store_free, BRK_ERR_SHUTDOWN, every command unanswered. */
static void
test_batch_store_freed(void **state)
{
    struct store *s = NULL;
    struct store_batch *b = NULL;
    struct batch_seen bs = {0};
    const char *push[3] = {"RPUSH", "t:l", "x"};
    const char *blpop[3] = {"BLPOP", "t:never", "0"};
    long long zero = 0, one = 1;

    (void)state;
    redis_do("DEL t:never");
    assert_true(until(blocked_is, &zero, 5000));
    assert_int_equal(store_new(Base, Url, 5000, &s), BRK_OK);
    assert_true(until(is_up, s, 5000));
    assert_int_equal(store_batch_begin(s, on_batch_seen, &bs, &b), BRK_OK);
    batch_add(b, 3, blpop);
    batch_add(b, 3, push);
    store_batch_end(b);
    assert_true(until(blocked_is, &one, 5000));
    assert_int_equal(bs.calls, 0);
    store_free(s);
    assert_int_equal(bs.calls, 1);
    assert_int_equal(bs.ok, 0);
    assert_int_equal(bs.failed, 0);
    assert_int_equal(bs.unanswered, 2);
    assert_int_equal(bs.err, BRK_ERR_SHUTDOWN);
    assert_true(until(blocked_is, &zero, 5000));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_turn_is_one_pipeline),
        cmocka_unit_test(test_full_batch_goes_at_once),
        cmocka_unit_test(test_later_turns_not_held_back),
        cmocka_unit_test(test_window_gathers_turns),
        cmocka_unit_test(test_window_zero_sends_now),
        cmocka_unit_test(test_store_down_then_up),
        cmocka_unit_test(test_held_sent_without_new_entries),
        cmocka_unit_test(test_hold_is_bounded),
        cmocka_unit_test(test_free_with_held),
        cmocka_unit_test_teardown(test_readonly_held, not_replica),
        cmocka_unit_test(test_odd_values_byte_for_byte),
        cmocka_unit_test(test_redis_gone_mid_batch),
        cmocka_unit_test(test_wrong_type_key),
        cmocka_unit_test(test_queue_fails_midway),
        cmocka_unit_test(test_empty_entry_alone_refused),
        cmocka_unit_test(test_error_on_earlier_entry),
        cmocka_unit_test_teardown(test_maxmemory_midway, no_maxmemory),
        cmocka_unit_test(test_batch_each_reply_judged),
        cmocka_unit_test(test_batch_connection_lost),
        cmocka_unit_test(test_batch_deadline),
        cmocka_unit_test(test_batch_store_freed),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
