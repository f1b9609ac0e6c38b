/*
 * The shared upstream budget (SPEC §5) against a real redis-server: first
 * budget.c itself, two budgets on one Redis standing for two instances
 * (exact limits, the background half, the hour and per-API budgets, a
 * 45009 pause announced to an instance holding a block, the next block
 * asked for ahead so no take waits for Redis, a refusal of it leaving the
 * units held spendable, 45033, hostile notices, Redis down); then two
 * broker instances in front of the WeCom simulator, hammered through both:
 * at most the budget reaches WeCom and the rest gets 45009 at once;
 * WeCom's 45009 pauses the other instance too while another tenant goes
 * on; a 45033 lowers concurrency; Redis stopped is -1/503, never an
 * unlimited pass.
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
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "budget.h"
#include "budget_window.h"
#include "harness.h"
#include "keys.h"
#include "metrics.h"
#include "service.h"
#include "simclient.h"
#include "svcclient.h"
#include "tenantclient.h"
#include "store.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#define S1     H_SUITE
#define CORP1  "wwmockcorp0001"
#define CORP2  "wwmockcorp0002"
#define MEMBER "u00003" /* in the default visible range */
#define PREFIX "wb:"
#define CHAN   PREFIX "inval"
/* the brokers' budget: small enough to spend in a test */
#define PER_CORP 20

static struct harness H;
static pid_t Mock, Bpid;
static int MockPort, Aport, Bport;
static char Bconf[400], Blog[400];
static char *Reader_secret, *Tok1, *Tok2;

/*---- budget.c on its own ----*/

struct taken {
    int n[BUDGET__RESULTS];
    int calls;
};

static void
on_taken(enum budget_result res, void *arg)
{
    struct taken *t = arg;

    assert_true((unsigned)res < BUDGET__RESULTS);
    t->n[res]++;
    t->calls++;
}

struct inst {
    struct store *st, *sub;
    struct budget *b;
};

static struct event_base *Base;

static char *
redis_url(void)
{
    static char url[400];

    snprintf(url, sizeof(url), "unix://%s", H.redis_sock);
    return url;
}

/* Run the loop until fn(arg) or ms pass; returns fn's last value. */
static int
loop_until(int (*fn)(void *), void *arg, long ms)
{
    long end = h_now_ms() + ms;
    struct timeval tv = {0, 10000};

    while (!fn(arg) && h_now_ms() < end) {
        event_base_loopexit(Base, &tv);
        event_base_dispatch(Base);
    }
    return fn(arg);
}

static int
store_up(void *arg)
{
    return store_is_up(arg);
}

struct want_calls {
    struct taken *t;
    int calls;
};

static int
calls_done(void *arg)
{
    struct want_calls *w = arg;

    return w->t->calls >= w->calls;
}

static void
wait_calls(struct taken *t, int calls)
{
    struct want_calls w = {t, calls};

    assert_true(loop_until(calls_done, &w, 10000));
    assert_int_equal(t->calls, calls);
}

static void
on_inst_notice(const char *msg, size_t len, void *arg)
{
    struct inst *in = arg;

    if (len >= strlen(BUDGET_NOTICE_PREFIX) &&
        memcmp(msg, BUDGET_NOTICE_PREFIX, strlen(BUDGET_NOTICE_PREFIX)) == 0)
        budget_notice(in->b, msg, len);
}

static void
inst_start(struct inst *in, long per_corp, long per_corp_hour, long per_api,
           long per_api_hour)
{
    struct budget_opts o;

    memset(in, 0, sizeof(*in));
    memset(&o, 0, sizeof(o));
    o.key_prefix = PREFIX;
    o.channel = CHAN;
    o.per_corp = per_corp;
    o.per_corp_hour = per_corp_hour;
    o.per_api = per_api;
    o.per_api_hour = per_api_hour;
    assert_int_equal(store_new(Base, redis_url(), 2000, &in->st), BRK_OK);
    assert_int_equal(store_new_subscriber(Base, redis_url(), CHAN,
                                          on_inst_notice, in, &in->sub),
                     BRK_OK);
    assert_int_equal(budget_new(Base, in->st, &o, &in->b), BRK_OK);
    assert_true(loop_until(store_up, in->st, 5000));
}

static void
inst_stop(struct inst *in)
{
    budget_free(in->b);
    store_free(in->sub);
    store_free(in->st);
    memset(in, 0, sizeof(*in));
}

/* Forget every budget key: each test starts from an empty window. */
static void
flush_budget_keys(void)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    size_t i;

    assert_non_null(c);
    r = redisCommand(c, "KEYS %s*budget*", PREFIX);
    assert_non_null(r);
    for (i = 0; i < r->elements; i++)
        freeReplyObject(redisCommand(c, "DEL %s", r->element[i]->str));
    freeReplyObject(r);
    redisFree(c);
}

/* A minute window's "all" count of (corp, api) in Redis (corp NULL: the
 * API's own), summed over every minute window present. */
static long long
redis_count(const char *corp, const char *api, const char *field)
{
    redisContext *c = h_redis(&H);
    redisReply *r, *v;
    char pat[KEYS_MAX];
    long long n = 0;
    size_t i;

    assert_non_null(c);
    if (corp != NULL)
        assert_int_equal(
            keys_budget_corp(pat, sizeof(pat), PREFIX, corp, api, "m*"),
            BRK_OK);
    else
        assert_int_equal(keys_budget_api(pat, sizeof(pat), PREFIX, api, "m*"),
                         BRK_OK);
    r = redisCommand(c, "KEYS %s", pat);
    assert_non_null(r);
    for (i = 0; i < r->elements; i++) {
        v = redisCommand(c, "HGET %s %s", r->element[i]->str, field);
        if (v != NULL && v->type == REDIS_REPLY_STRING)
            n += strtoll(v->str, NULL, 10);
        freeReplyObject(v);
    }
    freeReplyObject(r);
    redisFree(c);
    return n;
}

/* Wait until no minute edge is near, so a burst stays in one window. */
static int
edge_far(void *arg)
{
    long long ms = (long long)time(NULL) * 1000 % 60000;

    (void)arg;
    return ms >= 1000 && ms < 50000;
}

static void
away_from_minute_edge(void)
{
    assert_true(h_wait(edge_far, NULL, 65000));
}

/* n takes of cls on in, alternating between a and b when b is given. */
static void
take_n(struct inst *a, struct inst *b, const char *corp, const char *api,
       enum budget_class cls, int n, struct taken *t)
{
    int i;

    for (i = 0; i < n; i++)
        assert_int_equal(budget_take((b != NULL && i % 2) ? b->b : a->b, corp,
                                     api, cls, on_taken, t),
                         BRK_OK);
}

static int
direct_setup(void **state)
{
    (void)state;
    flush_budget_keys();
    metrics_reset();
    away_from_minute_edge();
    return 0;
}

static void
test_two_instances_share_the_limit_exactly(void **state)
{
    struct inst a, b;
    struct taken t = {{0}, 0};
    int round;

    (void)state;
    inst_start(&a, 50, 100000, 100000, 1000000);
    inst_start(&b, 50, 100000, 100000, 1000000);
    /* bursts on both, some calls waiting on a lease under way */
    for (round = 0; round < 8; round++) {
        take_n(&a, &b, CORP1, "user/get", BUDGET_SERVICE, 10, &t);
        wait_calls(&t, (round + 1) * 10);
    }
    assert_int_equal(t.n[BUDGET_OK], 50);
    assert_int_equal(t.n[BUDGET_SPENT], 30);
    assert_int_equal(redis_count(CORP1, "user/get", "all"), 50);
    /* another API of the same tenant has its own budget */
    memset(&t, 0, sizeof(t));
    take_n(&a, &b, CORP1, "tag/list", BUDGET_SERVICE, 4, &t);
    wait_calls(&t, 4);
    assert_int_equal(t.n[BUDGET_OK], 4);
    inst_stop(&a);
    inst_stop(&b);
}

static void
test_background_takes_at_most_half(void **state)
{
    struct inst a, b;
    struct taken bg = {{0}, 0}, svc = {{0}, 0};

    (void)state;
    inst_start(&a, 50, 100000, 100000, 1000000);
    inst_start(&b, 50, 100000, 100000, 1000000);
    take_n(&a, &b, CORP1, "user/list", BUDGET_BACKGROUND, 40, &bg);
    wait_calls(&bg, 40);
    assert_int_equal(bg.n[BUDGET_OK], 25);
    assert_int_equal(bg.n[BUDGET_SPENT], 15);
    assert_int_equal(redis_count(CORP1, "user/list", "bg"), 25);
    /* services still get the other half */
    take_n(&a, &b, CORP1, "user/list", BUDGET_SERVICE, 40, &svc);
    wait_calls(&svc, 40);
    assert_int_equal(svc.n[BUDGET_OK], 25);
    assert_int_equal(redis_count(CORP1, "user/list", "all"), 50);
    inst_stop(&a);
    inst_stop(&b);
}

static void
test_hour_and_api_budgets(void **state)
{
    struct inst a, b;
    struct taken t = {{0}, 0}, u = {{0}, 0};
    char *m;

    (void)state;
    /* the hour budget below the minute's */
    inst_start(&a, 50, 12, 100000, 1000000);
    inst_start(&b, 50, 12, 100000, 1000000);
    take_n(&a, &b, CORP1, "department/list", BUDGET_SERVICE, 20, &t);
    wait_calls(&t, 20);
    assert_int_equal(t.n[BUDGET_OK], 12);
    assert_int_equal(t.n[BUDGET_SPENT], 8);
    inst_stop(&a);
    inst_stop(&b);
    /* the API's budget over every tenant */
    memset(&t, 0, sizeof(t));
    inst_start(&a, 50, 100000, 10, 1000000);
    inst_start(&b, 50, 100000, 10, 1000000);
    take_n(&a, &b, CORP1, "tag/get", BUDGET_SERVICE, 8, &t);
    wait_calls(&t, 8);
    take_n(&b, &a, CORP2, "tag/get", BUDGET_SERVICE, 8, &u);
    wait_calls(&u, 8);
    assert_int_equal(t.n[BUDGET_OK], 8);
    assert_int_equal(u.n[BUDGET_OK], 2);
    assert_int_equal(u.n[BUDGET_SPENT], 6);
    assert_int_equal(redis_count(NULL, "tag/get", "all"), 10);
    inst_stop(&a);
    inst_stop(&b);
    /* the refusals say which budget was spent */
    m = NULL;
    {
        struct dynbuf out;

        dynbuf_init(&out, 1 << 20);
        assert_int_equal(metrics_render(&out), BRK_OK);
        assert_int_equal(dynbuf_take(&out, &m, NULL), BRK_OK);
    }
    assert_non_null(strstr(m, "wecom_broker_budget_refusals_total{class="
                              "\"service\",reason=\"corp_hour\"} 8"));
    assert_non_null(strstr(m, "wecom_broker_budget_refusals_total{class="
                              "\"service\",reason=\"api_minute\"} 6"));
    brk_free(m);
}

static int
pause_stored(void *arg)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    int n;

    (void)arg;
    r = redisCommand(c, "EXISTS %s{%s}:budget:user/simplelist:pause", PREFIX,
                     CORP2);
    n = r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

/* Every key of a script carries one hash tag: one Cluster slot. */
static void
test_script_keys_share_a_hash_tag(void **state)
{
    redisContext *c;
    redisReply *r;
    struct inst a;
    struct taken t = {{0}, 0};
    size_t i, n_corp = 0, n_api = 0;

    (void)state;
    inst_start(&a, 50, 100000, 100000, 1000000);
    take_n(&a, NULL, CORP2, "user/simplelist", BUDGET_BACKGROUND, 1, &t);
    wait_calls(&t, 1);
    budget_report(a.b, CORP2, "user/simplelist", 45009);
    assert_true(loop_until(pause_stored, NULL, 5000));
    inst_stop(&a);
    c = h_redis(&H);
    r = redisCommand(c, "KEYS %s*budget*", PREFIX);
    assert_non_null(r);
    for (i = 0; i < r->elements; i++) {
        const char *k = r->element[i]->str;

        if (strncmp(k, PREFIX "{" CORP2 "}:budget:user/simplelist:",
                    strlen(PREFIX "{" CORP2 "}:budget:user/simplelist:")) == 0)
            n_corp++;
        else if (strncmp(k, PREFIX "{api:user/simplelist}:budget:",
                         strlen(PREFIX "{api:user/simplelist}:budget:")) == 0)
            n_api++;
        else
            fail_msg("unexpected key %s", k);
    }
    /* minute, hour and pause of the tenant; minute and hour of the API */
    assert_int_equal(n_corp, 3);
    assert_int_equal(n_api, 2);
    freeReplyObject(r);
    redisFree(c);
}

struct until_paused {
    struct inst *in;
    struct taken t;
    int asked;
};

/* Take one call on in each time, until one comes back PAUSED. */
static int
paused_seen(void *arg)
{
    struct until_paused *u = arg;

    if (u->t.n[BUDGET_PAUSED] > 0)
        return 1;
    if (u->t.calls == u->asked) {
        if (budget_take(u->in->b, CORP1, "user/get", BUDGET_SERVICE, on_taken,
                        &u->t) == BRK_OK)
            u->asked++;
    }
    return 0;
}

static void
test_45009_pauses_an_instance_holding_a_block(void **state)
{
    struct inst a, b;
    struct taken t = {{0}, 0};
    struct until_paused u;
    long long held;
    redisContext *c;
    redisReply *r;
    char key[KEYS_MAX];
    int i;

    (void)state;
    /* a large budget: hot keys lease blocks of many calls */
    inst_start(&a, 9000, 140000, 36000, 1100000);
    inst_start(&b, 9000, 140000, 36000, 1100000);
    for (i = 0; i < 12; i++) {
        take_n(&b, NULL, CORP1, "user/get", BUDGET_SERVICE, 20, &t);
        wait_calls(&t, (i + 1) * 20);
    }
    assert_int_equal(t.n[BUDGET_OK], 240);
    /* one more: b then holds calls of a block it has not spent */
    take_n(&b, NULL, CORP1, "user/get", BUDGET_SERVICE, 1, &t);
    wait_calls(&t, 241);
    held = redis_count(CORP1, "user/get", "all") - 241;
    fprintf(stderr, "# b holds %lld calls\n", held);
    assert_true(held >= 2);
    /* blocks: far fewer Redis scripts than calls */
    {
        struct dynbuf out;
        char *m = NULL, *p;
        long leases;

        dynbuf_init(&out, 1 << 20);
        assert_int_equal(metrics_render(&out), BRK_OK);
        assert_int_equal(dynbuf_take(&out, &m, NULL), BRK_OK);
        p = strstr(m, "wecom_broker_budget_leases_total{scope=\"corp\","
                      "result=\"granted\"} ");
        assert_non_null(p);
        leases = strtol(strchr(p, '}') + 2, NULL, 10);
        fprintf(stderr, "# 240 calls, %ld leases\n", leases);
        assert_true(leases < 60);
        brk_free(m);
    }
    /* a sees WeCom's 45009 */
    memset(&t, 0, sizeof(t));
    take_n(&a, NULL, CORP1, "user/get", BUDGET_SERVICE, 1, &t);
    wait_calls(&t, 1);
    assert_int_equal(t.n[BUDGET_OK], 1);
    budget_report(a.b, CORP1, "user/get", 45009);
    memset(&t, 0, sizeof(t));
    take_n(&a, NULL, CORP1, "user/get", BUDGET_SERVICE, 1, &t);
    wait_calls(&t, 1);
    assert_int_equal(t.n[BUDGET_PAUSED], 1);
    /* b stops too, though it holds calls of its block: the notice */
    memset(&u, 0, sizeof(u));
    u.in = &b;
    assert_true(loop_until(paused_seen, &u, 5000));
    fprintf(stderr, "# b paused after %d more calls\n", u.t.n[BUDGET_OK]);
    assert_true(u.t.n[BUDGET_OK] < held - 1);
    /* the pause is in Redis for WeCom's 60 s */
    c = h_redis(&H);
    assert_int_equal(
        keys_budget_corp(key, sizeof(key), PREFIX, CORP1, "user/get", "pause"),
        BRK_OK);
    r = redisCommand(c, "PTTL %s", key);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer > 50000 && r->integer <= 60000);
    freeReplyObject(r);
    redisFree(c);
    /* another tenant, and another API, go on */
    memset(&t, 0, sizeof(t));
    take_n(&b, &a, CORP2, "user/get", BUDGET_SERVICE, 2, &t);
    take_n(&b, &a, CORP1, "user/list", BUDGET_SERVICE, 2, &t);
    wait_calls(&t, 4);
    assert_int_equal(t.n[BUDGET_OK], 4);
    /* an instance started later (no entry, no notice) asks Redis and is
     * refused all the same */
    inst_stop(&a);
    inst_start(&a, 9000, 140000, 36000, 1100000);
    memset(&t, 0, sizeof(t));
    take_n(&a, NULL, CORP1, "user/get", BUDGET_BACKGROUND, 1, &t);
    wait_calls(&t, 1);
    assert_int_equal(t.n[BUDGET_PAUSED], 1);
    inst_stop(&a);
    inst_stop(&b);
}

/* Lease answers of scope ("corp" or "api") with result ("granted",
 * "spent", "paused", "error") so far in this process. */
static long
leases(const char *scope, const char *result)
{
    struct dynbuf out;
    char *m = NULL, *p, pat[128];
    long n = 0;

    snprintf(pat, sizeof(pat),
             "wecom_broker_budget_leases_total{scope=\"%s\","
             "result=\"%s\"} ",
             scope, result);
    dynbuf_init(&out, 1 << 20);
    assert_int_equal(metrics_render(&out), BRK_OK);
    assert_int_equal(dynbuf_take(&out, &m, NULL), BRK_OK);
    p = strstr(m, pat);
    if (p != NULL)
        n = strtol(p + strlen(pat), NULL, 10);
    brk_free(m);
    return n;
}

struct want_leases {
    const char *scope, *result;
    long n;
};

static int
leases_at_least(void *arg)
{
    struct want_leases *w = arg;

    return leases(w->scope, w->result) >= w->n;
}

/* Units held of both budgets of (CORP1, api): leased in Redis, not taken. */
struct held {
    const char *api;
    long long taken;
    long long want;
    long long corp, all;
};

static int
holds_both(void *arg)
{
    struct held *h = arg;

    h->corp = redis_count(CORP1, h->api, "all") - h->taken;
    h->all = redis_count(NULL, h->api, "all") - h->taken;
    return h->corp >= h->want && h->all >= h->want;
}

static int
ping_any(void *arg)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    int ok;

    (void)arg;
    r = c != NULL ? redisCommand(c, "PING") : NULL;
    ok = r != NULL && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    redisFree(c);
    return ok;
}

/*
 * With a warm lease the next block is asked for ahead, while a quarter of
 * the one held is left: with Redis unable to answer, a whole block of
 * takes is answered at once from the units held, and none waits.
 */
static void
test_warm_lease_never_waits_for_redis(void **state)
{
    struct inst a;
    struct taken t = {{0}, 0};
    struct want_calls w;
    struct held h;
    long block = budget_block_max(9000), round;
    long long t0, answered_ms, paused_ms;
    redisContext *c;
    redisReply *r;
    int at_once;

    (void)state;
    inst_start(&a, 9000, 140000, 36000, 1100000);
    /* bursts of takes, as a hot key sees: blocks grow to the max, and
     * one asked for ahead comes while units of the one before are left */
    memset(&h, 0, sizeof(h));
    h.api = "externalcontact/get";
    h.want = block;
    for (round = 0; round < 60; round++) {
        take_n(&a, NULL, CORP1, h.api, BUDGET_SERVICE, 10, &t);
        wait_calls(&t, (int)(round + 1) * 10);
        h.taken = t.n[BUDGET_OK];
        if (loop_until(holds_both, &h, 50))
            break;
    }
    assert_int_equal(t.n[BUDGET_OK], t.calls);
    fprintf(stderr,
            "# after %d takes: %lld held of the tenant's budget, %lld of "
            "the API's\n",
            t.calls, h.corp, h.all);
    /* Redis answers no one for 600 ms */
    c = h_redis(&H);
    assert_non_null(c);
    r = redisCommand(c, "CLIENT PAUSE 600");
    t0 = h_now_ms();
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(c);
    memset(&t, 0, sizeof(t));
    take_n(&a, NULL, CORP1, h.api, BUDGET_SERVICE, (int)block, &t);
    w.t = &t;
    w.calls = (int)block;
    at_once = loop_until(calls_done, &w, 250);
    answered_ms = h_now_ms() - t0;
    /* the pause was real: Redis answers again only after it */
    assert_true(h_wait(ping_any, NULL, 5000));
    paused_ms = h_now_ms() - t0;
    wait_calls(&t, (int)block);
    fprintf(stderr,
            "# %ld takes with Redis paused: %s answered after %lld ms, "
            "Redis back after %lld ms\n",
            block, at_once ? "all" : "not all", answered_ms, paused_ms);
    inst_stop(&a);
    assert_true(paused_ms >= 500);
    assert_true(at_once);
    assert_true(answered_ms < paused_ms);
    assert_int_equal(t.n[BUDGET_OK], block);
}

/*
 * A "spent" answer to a block asked for ahead comes while units are still
 * held: they were granted within the limit, so they are spent, and only
 * then are takes refused. Exactly the limit passes over two instances.
 */
static void
test_spent_answer_ahead_leaves_held_units(void **state)
{
    const char *api = "externalcontact/list_id";
    const long limit = 2000;
    struct inst a, b;
    struct taken ta = {{0}, 0}, tb = {{0}, 0}, tc = {{0}, 0};
    struct held h;
    long long held;
    long spent_before, seen_at = -1,
                       low = budget_block_max(limit) / BUDGET_LOW_SHARE;
    int i;

    (void)state;
    inst_start(&a, limit, 100000, 100000, 1000000);
    inst_start(&b, limit, 100000, 100000, 1000000);
    /* a warms up: its blocks grow, and it holds some units */
    for (i = 0; i < 8; i++) {
        take_n(&a, NULL, CORP1, api, BUDGET_SERVICE, 10, &ta);
        wait_calls(&ta, (i + 1) * 10);
    }
    memset(&h, 0, sizeof(h));
    h.api = api;
    h.want = low + 2;
    h.taken = ta.n[BUDGET_OK];
    assert_true(loop_until(holds_both, &h, 2000));
    /* b spends the rest of the window, until it is refused */
    for (i = 0; i < 100 && tb.n[BUDGET_SPENT] == 0; i++) {
        take_n(&b, NULL, CORP1, api, BUDGET_SERVICE, 50, &tb);
        wait_calls(&tb, (i + 1) * 50);
    }
    assert_true(tb.n[BUDGET_SPENT] > 0);
    assert_int_equal(redis_count(CORP1, api, "all"), limit);
    held = limit - ta.n[BUDGET_OK] - tb.n[BUDGET_OK];
    fprintf(stderr, "# a: %d taken, %lld held; b: %d taken\n", ta.n[BUDGET_OK],
            held, tb.n[BUDGET_OK]);
    assert_true(held > low);
    /* a spends what it holds, one take at a time; the block it asks for
     * ahead is refused while units are left */
    spent_before = leases("corp", "spent");
    for (i = 0; i < held + 5 && tc.n[BUDGET_SPENT] == 0; i++) {
        take_n(&a, NULL, CORP1, api, BUDGET_SERVICE, 1, &tc);
        wait_calls(&tc, i + 1);
        if (seen_at < 0 && held - tc.n[BUDGET_OK] <= low) {
            struct want_leases wl = {"corp", "spent", spent_before + 1};

            if (loop_until(leases_at_least, &wl, 200))
                seen_at = tc.n[BUDGET_OK];
        }
    }
    fprintf(stderr,
            "# a: refused ahead after %ld of the %lld held; %d taken in "
            "all\n",
            seen_at, held, tc.n[BUDGET_OK]);
    inst_stop(&a);
    inst_stop(&b);
    assert_true(seen_at >= 0 && seen_at < held);
    assert_int_equal(tc.n[BUDGET_OK], held);
    assert_int_equal(tc.n[BUDGET_SPENT], 1);
    assert_int_equal(ta.n[BUDGET_OK] + tb.n[BUDGET_OK] + tc.n[BUDGET_OK],
                     limit);
    assert_int_equal(redis_count(CORP1, api, "all"), limit);
}

static void
test_45033_lowers_concurrency(void **state)
{
    struct inst a;
    struct taken t = {{0}, 0};
    int i;

    (void)state;
    inst_start(&a, 9000, 140000, 36000, 1100000);
    take_n(&a, NULL, CORP1, "externalcontact/list", BUDGET_SERVICE, 4, &t);
    wait_calls(&t, 4);
    assert_int_equal(t.n[BUDGET_OK], 4);
    /* four under way; one answers 45033: two at once from now */
    budget_report(a.b, CORP1, "externalcontact/list", 45033);
    memset(&t, 0, sizeof(t));
    take_n(&a, NULL, CORP1, "externalcontact/list", BUDGET_SERVICE, 3, &t);
    wait_calls(&t, 3);
    assert_int_equal(t.n[BUDGET_BUSY], 3);
    /* three under way still: one more may start when two have ended */
    budget_report(a.b, CORP1, "externalcontact/list", 0);
    budget_report(a.b, CORP1, "externalcontact/list", 0);
    memset(&t, 0, sizeof(t));
    take_n(&a, NULL, CORP1, "externalcontact/list", BUDGET_SERVICE, 3, &t);
    wait_calls(&t, 3);
    assert_int_equal(t.n[BUDGET_OK], 1);
    assert_int_equal(t.n[BUDGET_BUSY], 2);
    /* as calls end, others may start; another tenant is not limited */
    for (i = 0; i < 3; i++)
        budget_report(a.b, CORP1, "externalcontact/list", 0);
    memset(&t, 0, sizeof(t));
    take_n(&a, NULL, CORP1, "externalcontact/list", BUDGET_SERVICE, 3, &t);
    take_n(&a, NULL, CORP2, "externalcontact/list", BUDGET_SERVICE, 5, &t);
    wait_calls(&t, 8);
    assert_int_equal(t.n[BUDGET_OK], 7);
    assert_int_equal(t.n[BUDGET_BUSY], 1);
    assert_int_equal(budget_errcode(BUDGET_BUSY), 45033);
    inst_stop(&a);
}

static void
test_hostile_input_refused(void **state)
{
    static const char *const bad[] = {
        "budget",
        "budget ",
        "budget pause",
        "budget pause " CORP1,
        "budget pause " CORP1 " user/get",
        "budget pause " CORP1 " user/get ",
        "budget pause " CORP1 " user/get 60000x",
        "budget pause " CORP1 " user/get -5",
        "budget pause " CORP1 " user/get 0",
        "budget pause " CORP1 " user/get 60001",
        "budget pause " CORP1 " user/get 99999999999999999999999",
        "budget pause {" CORP1 "} user/get 60000",
        "budget pause " CORP1 " user/get\r\n 60000",
        "budget pause " CORP1 "  user/get 60000",
        "budget resume " CORP1 " user/get 60000",
    };
    struct inst a;
    struct taken t = {{0}, 0};
    char longapi[BUDGET_API_MAX + 2];
    size_t i;

    (void)state;
    inst_start(&a, 9000, 140000, 36000, 1100000);
    take_n(&a, NULL, CORP1, "user/get", BUDGET_SERVICE, 1, &t);
    wait_calls(&t, 1);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        budget_notice(a.b, bad[i], strlen(bad[i]));
    budget_notice(a.b, "budget pause " CORP1 " user/get 60000", 16);
    take_n(&a, NULL, CORP1, "user/get", BUDGET_SERVICE, 1, &t);
    wait_calls(&t, 2);
    assert_int_equal(t.n[BUDGET_OK], 2);
    /* names that cannot be keys are refused, and cb never runs */
    memset(longapi, 'a', sizeof(longapi) - 1);
    longapi[sizeof(longapi) - 1] = '\0';
    assert_int_equal(
        budget_take(a.b, "", "user/get", BUDGET_SERVICE, on_taken, &t),
        BRK_ERR_INVAL);
    assert_int_equal(
        budget_take(a.b, "ww{x}", "user/get", BUDGET_SERVICE, on_taken, &t),
        BRK_ERR_INVAL);
    assert_int_equal(
        budget_take(a.b, CORP1, "user get", BUDGET_SERVICE, on_taken, &t),
        BRK_ERR_INVAL);
    assert_int_equal(
        budget_take(a.b, CORP1, "/cgi-bin/x", BUDGET_SERVICE, on_taken, &t),
        BRK_ERR_INVAL);
    assert_int_equal(
        budget_take(a.b, CORP1, longapi, BUDGET_SERVICE, on_taken, &t),
        BRK_ERR_INVAL);
    assert_int_equal(
        budget_take(a.b, CORP1, "user/get", (enum budget_class)7, on_taken, &t),
        BRK_ERR_INVAL);
    assert_int_equal(
        budget_take(a.b, CORP1, "user/get", BUDGET_SERVICE, NULL, &t),
        BRK_ERR_INVAL);
    /* reports of calls never allowed change nothing */
    budget_report(a.b, CORP1, "tag/list", 0);
    budget_report(a.b, "ww{x}", "user/get", 45009);
    take_n(&a, NULL, CORP1, "tag/list", BUDGET_SERVICE, 1, &t);
    wait_calls(&t, 3);
    assert_int_equal(t.n[BUDGET_OK], 3);
    inst_stop(&a);
}

static void
test_free_answers_waiting_takes(void **state)
{
    struct inst a;
    struct taken t = {{0}, 0};
    struct store *st;

    (void)state;
    inst_start(&a, 50, 100000, 100000, 1000000);
    take_n(&a, NULL, CORP1, "tag/list", BUDGET_SERVICE, 5, &t);
    /* every one is waiting for the lease under way */
    assert_int_equal(t.calls, 0);
    budget_free(a.b);
    assert_int_equal(t.calls, 5);
    assert_int_equal(t.n[BUDGET_UNAVAILABLE], 5);
    /* the Redis reply still due is answered into the freed budget's
     * memory only after store_free delivers it */
    st = a.st;
    store_free(a.sub);
    store_free(st);
}

static int
store_down(void *arg)
{
    return !store_is_up(arg);
}

static void
test_redis_down_refuses(void **state)
{
    struct inst a;
    struct taken t = {{0}, 0};
    int i;

    (void)state;
    inst_start(&a, 9000, 140000, 36000, 1100000);
    for (i = 0; i < 6; i++) {
        take_n(&a, NULL, CORP1, "tag/list", BUDGET_SERVICE, 5, &t);
        wait_calls(&t, (i + 1) * 5);
    }
    assert_int_equal(t.n[BUDGET_OK], 30);
    assert_true(redis_count(CORP1, "tag/list", "all") > 30);
    h_redis_stop(&H);
    assert_true(loop_until(store_down, a.st, 10000));
    memset(&t, 0, sizeof(t));
    /* the block it holds is not spent while Redis is away */
    take_n(&a, NULL, CORP1, "tag/list", BUDGET_SERVICE, 3, &t);
    take_n(&a, NULL, CORP2, "tag/list", BUDGET_BACKGROUND, 3, &t);
    wait_calls(&t, 6);
    assert_int_equal(t.n[BUDGET_UNAVAILABLE], 6);
    assert_int_equal(budget_errcode(BUDGET_UNAVAILABLE), -1);
    assert_int_equal(h_redis_start(&H), 0);
    assert_true(loop_until(store_up, a.st, 15000));
    memset(&t, 0, sizeof(t));
    take_n(&a, NULL, CORP2, "tag/list", BUDGET_SERVICE, 1, &t);
    wait_calls(&t, 1);
    assert_int_equal(t.n[BUDGET_OK], 1);
    inst_stop(&a);
}

/*---- Two brokers ----*/

#define NPAR 64

/* n GETs of path_query at once, alternating between the two brokers;
 * counts of replies by errcode into ok, e45009, e45033, other. */
struct tally {
    int ok, e45009, e45033, other;
};

static void
hammer(const char *pq, int n, struct tally *t)
{
    struct sc_resp r[NPAR];
    CURL *e[NPAR];
    CURLM *m = curl_multi_init();
    char url[2100];
    int i, running = 1;

    assert_true(n <= NPAR);
    memset(t, 0, sizeof(*t));
    for (i = 0; i < n; i++) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s",
                 i % 2 ? Bport : Aport, pq);
        e[i] = sc_easy(&r[i], "GET", url, NULL, 0, NULL);
        curl_multi_add_handle(m, e[i]);
    }
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (i = 0; i < n; i++) {
        sc_resp_done(e[i], &r[i]);
        if (r[i].status == 200 && sc_ecode(&r[i]) == 0)
            t->ok++;
        else if (r[i].status == 200 && sc_ecode(&r[i]) == 45009)
            t->e45009++;
        else if (r[i].status == 200 && sc_ecode(&r[i]) == 45033)
            t->e45033++;
        else {
            fprintf(stderr, "# %ld %.200s\n", r[i].status, r[i].body);
            t->other++;
        }
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
        sc_resp_free(&r[i]);
    }
    curl_multi_cleanup(m);
}

/* Requests the simulator received on path, by minute window of their
 * arrival: the largest count in one window into *max. */
static size_t
mock_calls(const char *path, size_t *max)
{
    char p[256];
    json_t *v, *e;
    size_t n = 0, i, run = 0;
    long long w = -1, ww;

    snprintf(p, sizeof(p), "/__mock/requests?path=%s", path);
    v = h_sim_json(MockPort, "GET", p, NULL);
    if (max != NULL)
        *max = 0;
    json_array_foreach(v, i, e)
    {
        ww = json_integer_value(json_object_get(e, "ts_ms")) / 60000;
        run = ww == w ? run + 1 : 1;
        w = ww;
        if (max != NULL && run > *max)
            *max = run;
        n++;
    }
    json_decref(v);
    return n;
}

static void
fault(const char *json)
{
    h_sim_ok(MockPort, "POST", "/__mock/faults", json);
}

static int
is_active(void *arg)
{
    int rc;
    json_t *t =
        tc_ctl(&rc, "tenant", "show", (const char *)arg, (const char *)NULL);
    int ok = strcmp(h_str(t, "status"), "active") == 0;

    json_decref(t);
    return ok;
}

static const char *
broker_extra(void)
{
    static char extra[512];

    snprintf(extra, sizeof(extra),
             "wecom_api_base = http://127.0.0.1:%d\n"
             "upstream_timeout_ms = 5000\n"
             "upstream_rate_per_corp = %d\n"
             "upstream_rate_per_corp_hour = 10000\n"
             "upstream_rate_per_api = 10000\n"
             "upstream_rate_per_api_hour = 100000\n",
             MockPort, PER_CORP);
    return extra;
}

static int
b_ready(void *arg)
{
    char url[64], *body = NULL;
    long st;

    (void)arg;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", Bport);
    st = h_http("GET", url, NULL, 0, &body);
    free(body);
    return st == 200;
}

static int
setup(void **state)
{
    const char *extra[] = {"--suite", S1 ":" H_SECRET, "--corps",
                           "3",       "--quiet",       NULL};
    static char corp1[] = CORP1, corp2[] = CORP2;
    int cb, ip, rc;
    json_t *v;

    (void)state;
    if (h_setup(&H) != 0)
        return -1;
    if (getenv("KEEP_TEST_DIR") != NULL)
        fprintf(stderr, "# test directory: %s\n", H.dir);
    Base = event_base_new();
    if (Base == NULL)
        return -1;
    Mock = h_mock_start(H.dir, extra, &MockPort);
    if (Mock == 0)
        return -1;
    if (h_write_conf(&H, 0, broker_extra()) != 0 || h_broker_start(&H) != 0)
        return -1;
    Aport = H.int_port;
    snprintf(Bconf, sizeof(Bconf), "%s/broker-b.conf", H.dir);
    snprintf(Blog, sizeof(Blog), "%s/broker-b.log", H.dir);
    cb = H.cb_port;
    ip = H.int_port;
    rc = h_write_conf_to(&H, Bconf, 0, broker_extra());
    Bport = H.int_port;
    H.cb_port = cb;
    H.int_port = ip;
    if (rc != 0)
        return -1;
    Bpid = h_spawn_broker(Bconf, Blog);
    if (Bpid == 0 || !h_wait(b_ready, NULL, 20000))
        return -1;
    tc_init(&H, MockPort);
    tc_push_ticket(S1);
    tc_install(S1, CORP1, h_next_ts());
    tc_install(S1, CORP2, h_next_ts());
    if (!h_wait(is_active, corp1, 30000) || !h_wait(is_active, corp2, 30000))
        return -1;
    v = tc_ctl(&rc, "service", "add", "reader", "--scopes", "contacts.read",
               (const char *)NULL);
    if (rc != 0)
        return -1;
    Reader_secret = strdup(h_str(v, "secret"));
    json_decref(v);
    Tok1 = tc_token_for(Aport, Reader_secret, CORP1);
    Tok2 = tc_token_for(Aport, Reader_secret, CORP2);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    tc_done();
    if (Bpid > 0)
        h_stop(Bpid, SIGKILL);
    if (Mock > 0)
        h_stop(Mock, SIGTERM);
    free(Reader_secret);
    free(Tok1);
    free(Tok2);
    h_teardown(&H);
    if (Base != NULL)
        event_base_free(Base);
    return 0;
}

static void
test_brokers_spend_one_budget(void **state)
{
    struct tally t;
    struct sc_resp r;
    char pq[512];
    size_t max, calls, before;
    char *metrics = NULL, *url;

    (void)state;
    h_sim_ok(MockPort, "DELETE", "/__mock/requests", NULL);
    away_from_minute_edge();
    snprintf(pq, sizeof(pq), "/cgi-bin/user/get?access_token=%s&userid=%s",
             Tok1, MEMBER);
    hammer(pq, 40, &t);
    fprintf(stderr, "# 40 at once: %d ok, %d 45009\n", t.ok, t.e45009);
    assert_int_equal(t.ok, PER_CORP);
    assert_int_equal(t.e45009, 40 - PER_CORP);
    assert_int_equal(t.other, 0);
    hammer(pq, 30, &t);
    calls = mock_calls("/cgi-bin/user/get", &max);
    fprintf(stderr,
            "# WeCom got %zu user/get calls, at most %zu in a "
            "minute\n",
            calls, max);
    /* one minute, one budget, over both instances */
    assert_int_equal(calls, PER_CORP);
    assert_true(max <= PER_CORP);
    assert_int_equal(t.ok, 0);
    assert_int_equal(t.e45009, 30);
    assert_int_equal(t.other, 0);
    /* refused at once, without calling WeCom */
    sc_call(&r, Bport, "GET", NULL, "%s", pq);
    SC_EXPECT(&r, 200, 45009);
    assert_true(strlen(h_str(r.json, "errmsg")) > 0);
    assert_null(json_object_get(r.json, "userid"));
    sc_resp_free(&r);
    assert_int_equal(mock_calls("/cgi-bin/user/get", NULL), PER_CORP);
    /* another tenant has its own budget */
    before = mock_calls("/cgi-bin/user/get", NULL);
    sc_call(&r, Aport, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", Tok2, MEMBER);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    assert_int_equal(mock_calls("/cgi-bin/user/get", NULL), before + 1);
    /* and the refusals are counted */
    url = h_int_url(&H, "/metrics");
    assert_int_equal(h_http("GET", url, NULL, 0, &metrics), 200);
    assert_non_null(strstr(metrics,
                           "wecom_broker_budget_refusals_total{"
                           "class=\"service\",reason=\"corp_minute\"}"));
    assert_non_null(
        strstr(metrics, "wecom_broker_budget_grants_total{class=\"service\"}"));
    free(metrics);
    free(url);
}

/* The other instance refuses department/list for corp 1 (paused). */
static int
b_paused(void *arg)
{
    struct sc_resp r;
    int paused;

    (void)arg;
    sc_call(&r, Bport, "GET", NULL, "/cgi-bin/department/list?access_token=%s",
            Tok1);
    paused = r.status == 200 && sc_ecode(&r) == 45009;
    sc_resp_free(&r);
    return paused;
}

static void
test_wecom_45009_pauses_every_instance(void **state)
{
    struct sc_resp r;
    size_t before;
    int i;

    (void)state;
    sc_call(&r, Bport, "GET", NULL, "/cgi-bin/department/list?access_token=%s",
            Tok1);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    fault("{\"path\":\"/cgi-bin/department/list\",\"count\":1,"
          "\"errcode\":45009}");
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/department/list?access_token=%s",
            Tok1);
    SC_EXPECT(&r, 200, 45009);
    sc_resp_free(&r);
    /* the pause reaches the other instance through Redis, an instant after
     * this one answered: until then a block it holds may still pass */
    assert_true(h_wait(b_paused, NULL, 5000));
    before = mock_calls("/cgi-bin/department/list", NULL);
    /* the other instance, and this one, refuse without calling WeCom */
    for (i = 0; i < 4; i++) {
        sc_call(&r, i % 2 ? Aport : Bport, "GET", NULL,
                "/cgi-bin/department/list?access_token=%s", Tok1);
        SC_EXPECT(&r, 200, 45009);
        assert_null(json_object_get(r.json, "department"));
        sc_resp_free(&r);
    }
    assert_int_equal(mock_calls("/cgi-bin/department/list", NULL), before);
    /* another tenant is not paused */
    sc_call(&r, Bport, "GET", NULL, "/cgi-bin/department/list?access_token=%s",
            Tok2);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/department/list?access_token=%s",
            Tok2);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    assert_int_equal(mock_calls("/cgi-bin/department/list", NULL), before + 2);
}

static void
test_wecom_45033_lowers_concurrency(void **state)
{
    struct tally t;
    struct sc_resp r;
    char pq[512];
    size_t before;

    (void)state;
    snprintf(pq, sizeof(pq), "/cgi-bin/user/get?access_token=%s&userid=%s",
             Tok2, MEMBER);
    fault("{\"path\":\"/cgi-bin/user/get\",\"count\":1,"
          "\"errcode\":45033}");
    sc_call(&r, Aport, "GET", NULL, "%s", pq);
    SC_EXPECT(&r, 200, 45033);
    sc_resp_free(&r);
    /* one at a time now, on this instance: slow calls make them overlap */
    fault("{\"path\":\"/cgi-bin/user/get\",\"count\":10,"
          "\"delay_ms\":1500}");
    before = mock_calls("/cgi-bin/user/get", NULL);
    {
        struct sc_resp rr[4];
        CURL *e[4];
        CURLM *m = curl_multi_init();
        char url[700];
        int i, running = 1;

        memset(&t, 0, sizeof(t));
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", Aport, pq);
        for (i = 0; i < 4; i++) {
            e[i] = sc_easy(&rr[i], "GET", url, NULL, 0, NULL);
            curl_multi_add_handle(m, e[i]);
        }
        while (running) {
            curl_multi_perform(m, &running);
            if (running)
                curl_multi_poll(m, NULL, 0, 100, NULL);
        }
        for (i = 0; i < 4; i++) {
            sc_resp_done(e[i], &rr[i]);
            if (sc_ecode(&rr[i]) == 0)
                t.ok++;
            else if (sc_ecode(&rr[i]) == 45033)
                t.e45033++;
            else
                t.other++;
            curl_multi_remove_handle(m, e[i]);
            curl_easy_cleanup(e[i]);
            sc_resp_free(&rr[i]);
        }
        curl_multi_cleanup(m);
    }
    fprintf(stderr, "# after 45033: %d ok, %d refused 45033\n", t.ok, t.e45033);
    assert_int_equal(t.ok, 1);
    assert_int_equal(t.e45033, 3);
    assert_int_equal(t.other, 0);
    assert_int_equal(mock_calls("/cgi-bin/user/get", NULL), before + 1);
}

static void
test_redis_down_fails_closed(void **state)
{
    struct sc_resp r;
    size_t before;
    int i;

    (void)state;
    for (i = 0; i < 2; i++) {
        sc_call(&r, i ? Bport : Aport, "GET", NULL,
                "/cgi-bin/department/list?access_token=%s", Tok2);
        SC_EXPECT(&r, 200, 0);
        sc_resp_free(&r);
    }
    before = mock_calls("/cgi-bin/department/list", NULL);
    h_redis_stop(&H);
    for (i = 0; i < 6; i++) {
        sc_call(&r, i % 2 ? Bport : Aport, "GET", NULL,
                "/cgi-bin/department/list?access_token=%s", Tok2);
        SC_EXPECT(&r, 503, -1);
        assert_null(json_object_get(r.json, "department"));
        sc_resp_free(&r);
    }
    assert_int_equal(h_redis_start(&H), 0);
    /* not one call reached WeCom while the budget was out of reach */
    assert_int_equal(mock_calls("/cgi-bin/department/list", NULL), before);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_two_instances_share_the_limit_exactly,
                               direct_setup),
        cmocka_unit_test_setup(test_background_takes_at_most_half,
                               direct_setup),
        cmocka_unit_test_setup(test_hour_and_api_budgets, direct_setup),
        cmocka_unit_test_setup(test_script_keys_share_a_hash_tag, direct_setup),
        cmocka_unit_test_setup(test_45009_pauses_an_instance_holding_a_block,
                               direct_setup),
        cmocka_unit_test_setup(test_warm_lease_never_waits_for_redis,
                               direct_setup),
        cmocka_unit_test_setup(test_spent_answer_ahead_leaves_held_units,
                               direct_setup),
        cmocka_unit_test_setup(test_45033_lowers_concurrency, direct_setup),
        cmocka_unit_test_setup(test_hostile_input_refused, direct_setup),
        cmocka_unit_test_setup(test_free_answers_waiting_takes, direct_setup),
        cmocka_unit_test_setup_teardown(test_brokers_spend_one_budget,
                                        direct_setup, tc_clear_faults),
        cmocka_unit_test_teardown(test_wecom_45009_pauses_every_instance,
                                  tc_clear_faults),
        cmocka_unit_test_teardown(test_wecom_45033_lowers_concurrency,
                                  tc_clear_faults),
        /* Redis restarts empty: these come last */
        cmocka_unit_test(test_redis_down_fails_closed),
        cmocka_unit_test_setup(test_redis_down_refuses, direct_setup),
    };

    curl_global_init(CURL_GLOBAL_DEFAULT);
    return cmocka_run_group_tests(tests, setup, teardown);
}
