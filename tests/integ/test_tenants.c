/*
 * Independent tenants end to end: each tenant's events wait in a queue of
 * its own, so a tenant whose every WeCom call fails delays no other one,
 * even with one lane per instance (a tenant in backoff holds none); and
 * two instances drain a thousand tenants' queues with nothing lost or done
 * twice.
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
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "harness.h"
#include "simclient.h"
#include "tenantclient.h"

#define S1      H_SUITE
#define CORP1   "wwmockcorp0001"
#define CORP2   "wwmockcorp0002"
#define CORP3   "wwmockcorp0003"
#define CORP4   "wwmockcorp0004"
#define NCORPS  1000
#define NEVENTS 1000

static struct harness H;
static pid_t Mock, Second;
static int MockPort, SecondCb, SecondInt;
static char SecondConf[400], SecondLog[400];

/*---- helpers ----*/

/* Sum of the series of metric name with this result, on the
 * internal listener at port. */
static long
metric_sum(int port, const char *name, const char *result)
{
    char url[128], want[64], head[96], *body = NULL, *line, *save = NULL;
    long sum = 0;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    snprintf(want, sizeof(want), "result=\"%s\"", result);
    snprintf(head, sizeof(head), "%s{", name);
    if (h_http("GET", url, NULL, 0, &body) != 200) {
        free(body);
        return -1;
    }
    for (line = strtok_r(body, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *sp;

        if (strncmp(line, head, strlen(head)) != 0 ||
            strstr(line, want) == NULL || (sp = strrchr(line, ' ')) == NULL)
            continue;
        sum += strtol(sp + 1, NULL, 10);
    }
    free(body);
    return sum;
}

static long
events_with(int port, const char *result)
{
    return metric_sum(port, "wecom_broker_events_total", result);
}

static int
retried(void *arg)
{
    (void)arg;
    return events_with(H.int_port, "retry") > 0;
}

static int
parties_are_3(void *arg)
{
    json_t *t = tc_ctl_json("tenant", "show", arg, S1);
    json_t *p = json_object_get(json_object_get(t, "visible"), "parties");
    int ok = json_array_size(p) == 1 &&
             json_integer_value(json_array_get(p, 0)) == 3;

    json_decref(t);
    return ok;
}

static long long
redis_int(const char *fmt, const char *arg)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    long long v = -1;

    assert_non_null(c);
    r = redisCommand(c, fmt, arg);
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    if (r != NULL && r->type == REDIS_REPLY_ARRAY)
        v = (long long)r->elements;
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

/*---- fixtures ----*/

static int
setup(void **state)
{
    char corps[16];
    const char *extra[] = {"--suite", S1 ":" H_SECRET, "--corps", corps, NULL};
    char broker[512];

    (void)state;
    snprintf(corps, sizeof(corps), "%d", NCORPS);
    if (h_setup(&H) != 0)
        return -1;
    Mock = h_mock_start(H.dir, extra, &MockPort);
    if (Mock == 0)
        return -1;
    /* one lane per instance: a tenant in backoff must not hold it */
    snprintf(broker, sizeof(broker),
             "wecom_api_base = http://127.0.0.1:%d\n"
             "event_claim_idle = 3\n"
             "event_max_attempts = 50\n"
             "event_concurrency = 1\n"
             "upstream_timeout_ms = 1000\n",
             MockPort);
    if (h_write_conf(&H, 0, broker) != 0 || h_broker_start(&H) != 0)
        return -1;
    tc_init(&H, MockPort);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    tc_done();
    if (Second > 0)
        h_stop(Second, SIGTERM);
    if (Mock > 0)
        h_stop(Mock, SIGTERM);
    h_teardown(&H);
    return 0;
}

/*---- tests ----*/

static void
test_failing_tenant_delays_no_other(void **state)
{
    long t0, ms;
    int i;

    (void)state;
    tc_push_ticket(S1);
    tc_install(S1, CORP1, h_next_ts());
    tc_install(S1, CORP2, h_next_ts());
    tc_wait_status(S1, CORP1, "active", 30000);
    tc_wait_status(S1, CORP2, "active", 30000);
    /* CORP1's authorization stops working upstream: each of its events
     * fails on every WeCom call and is retried with backoff */
    h_sim_ok(MockPort, "POST", "/__mock/cancel",
             "{\"suite_id\":\"" S1 "\",\"corpid\":\"" CORP1 "\"}");
    for (i = 0; i < 3; i++)
        tc_corp_event(S1, "change_auth", CORP1, h_next_ts(), NULL, NULL);
    assert_true(h_wait(retried, NULL, 20000));
    /* CORP2's change waits behind nothing */
    h_sim_ok(MockPort, "POST", "/__mock/privilege",
             "{\"corpid\":\"" CORP2 "\",\"allow_party\":[3],"
             "\"allow_user\":[],\"allow_tag\":[]}");
    t0 = h_now_ms();
    tc_corp_event(S1, "change_auth", CORP2, h_next_ts(), NULL, NULL);
    {
        char corp2[] = CORP2;

        assert_true(h_wait(parties_are_3, corp2, 20000));
    }
    ms = h_now_ms() - t0;
    fprintf(stderr,
            "# another tenant's change_auth applied in %ld ms while "
            "one tenant fails\n",
            ms);
    assert_true(ms < 2000);
    /* and an install (its AuthCode names no corp) goes through too */
    t0 = h_now_ms();
    tc_install(S1, CORP3, h_next_ts());
    tc_wait_status(S1, CORP3, "active", 20000);
    fprintf(stderr, "# an install completed in %ld ms meanwhile\n",
            h_now_ms() - t0);
    /* the failing tenant still has its events, in order, untouched */
    assert_true(redis_int("XLEN %s", "wb:{" S1 "}:q:" CORP1) >= 1);
}

static int
admins_stored(void *arg)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    int ok;

    (void)arg;
    assert_non_null(c);
    r = redisCommand(c, "HGET wb:{" CORP2 "}:" S1 ":tenant admins");
    ok = r != NULL && r->type == REDIS_REPLY_STRING &&
         strstr(r->str, "\"u00002\"") != NULL &&
         strstr(r->str, "\"u00005\"") != NULL;
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

static int
data_queue_drained(void *arg)
{
    (void)arg;
    return redis_int("XLEN %s", "wb:{" S1 "}:q:" CORP2) == 0;
}

static void
test_data_callbacks(void **state)
{
    char ts[24];
    const char *admin[] = {
        "ToUserName", CORP2,     "FromUserName", "sys",   "CreateTime",
        ts,           "MsgType", "event",        "Event", "change_app_admin",
        "AgentID",    "1000002"};
    const char *text[] = {"ToUserName", CORP2,    "FromUserName", "u00001",
                          "CreateTime", ts,       "MsgType",      "text",
                          "Content",    "hello",  "MsgId",        "1",
                          "AgentID",    "1000002"};

    (void)state;
    /* the app's admins changed: the broker re-reads them */
    h_sim_ok(MockPort, "POST", "/__mock/admins",
             "{\"corpid\":\"" CORP2 "\",\"admins\":[{\"userid\":\"u00002\","
             "\"auth_type\":1},{\"userid\":\"u00005\",\"auth_type\":0}]}");
    snprintf(ts, sizeof(ts), "%ld", h_next_ts());
    tc_post_data(S1, CORP2, admin, 6);
    assert_true(h_wait(admins_stored, NULL, 20000));
    {
        json_t *t = tc_ctl_json("tenant", "show", CORP2, S1);

        assert_int_equal(json_array_size(json_object_get(t, "admins")), 2);
        assert_string_equal(
            json_string_value(json_object_get(
                json_array_get(json_object_get(t, "admins"), 0), "userid")),
            "u00002");
        json_decref(t);
    }
    /* what a member sends is queued in the tenant's order, routed to the
     * services that may receive it (none here) and not kept */
    snprintf(ts, sizeof(ts), "%ld", h_next_ts());
    tc_post_data(S1, CORP2, text, 7);
    assert_true(h_wait(data_queue_drained, NULL, 20000));
}

static int
hexists_member(const char *key, const char *field)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    int v = -1;

    assert_non_null(c);
    r = redisCommand(c, "HEXISTS %s %s", key, field);
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        v = (int)r->integer;
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

static int
installing(void *arg)
{
    char *s = tc_status(S1, arg);
    int ok = strcmp(s, "installing") == 0;

    free(s);
    return ok;
}

static int
queue_empty(void *arg)
{
    (void)arg;
    return redis_int("EXISTS %s", "wb:{" S1 "}:q:" CORP4) == 0;
}

static void
test_contact_change_during_sync_applies_after(void **state)
{
    char corp4[] = CORP4;
    long t0;

    (void)state;
    /* the whole corp in range, each WeCom call slow: the sync takes a
     * while, and a member leaves meanwhile */
    h_sim_ok(MockPort, "POST", "/__mock/privilege",
             "{\"corpid\":\"" CORP4 "\",\"allow_party\":[1]}");
    h_sim_ok(MockPort, "POST", "/__mock/latency", "{\"ms\":300}");
    t0 = h_now_ms();
    tc_install(S1, CORP4, h_next_ts());
    assert_true(h_wait(installing, corp4, 20000));
    {
        /* the event names its member */
        const char *kv[] = {"SuiteId",        S1,          "InfoType",
                            "change_contact", "TimeStamp", NULL,
                            "AuthCorpId",     CORP4,       "ChangeType",
                            "delete_user",    "UserID",    "u00005"};
        char ts[24];

        snprintf(ts, sizeof(ts), "%ld", h_next_ts());
        kv[5] = ts;
        tc_post_event(S1, kv, 6);
    }
    tc_wait_status(S1, CORP4, "active", 30000);
    assert_true(h_wait(queue_empty, NULL, 20000));
    h_sim_ok(MockPort, "POST", "/__mock/latency", "{\"ms\":0}");
    fprintf(stderr, "# install with a change_contact during its sync: %ld ms\n",
            h_now_ms() - t0);
    /* the sync read u00005 (WeCom still lists it); the deletion, queued
     * behind the install, came after and removed it */
    assert_int_equal(
        hexists_member("wb:{" CORP4 "}:" S1 ":dir:users", "u00001"), 1);
    assert_int_equal(
        hexists_member("wb:{" CORP4 "}:" S1 ":dir:users", "u00005"), 0);
}

struct drained {
    long want;
};

static int
all_done(void *arg)
{
    struct drained *d = arg;
    long a = events_with(H.int_port, "not_a_tenant");
    long b = events_with(SecondInt, "not_a_tenant");

    return a >= 0 && b >= 0 && a + b >= d->want;
}

/* The lease of a tenant is released after its event is counted done. */
static int
nothing_left(void *arg)
{
    (void)arg;
    return redis_int("KEYS %s", "wb:{" S1 "}:q:wwmockcorp*") == 1 &&
           redis_int("HLEN %s", "wb:{" S1 "}:lease") == 0;
}

static void
test_thousand_tenants_two_instances(void **state)
{
    char corp[32], tsb[24], ts0[24];
    long a, b, t0;
    int saved_cb = H.cb_port, saved_int = H.int_port, i;
    struct drained d = {NEVENTS};
    const char *kv[10];

    (void)state;
    snprintf(SecondConf, sizeof(SecondConf), "%s/second.conf", H.dir);
    snprintf(SecondLog, sizeof(SecondLog), "%s/second.log", H.dir);
    {
        char extra[512];

        snprintf(extra, sizeof(extra),
                 "wecom_api_base = http://127.0.0.1:%d\n"
                 "event_claim_idle = 3\n"
                 "event_concurrency = 1\n",
                 MockPort);
        assert_int_equal(h_write_conf_to(&H, SecondConf, 0, extra), 0);
    }
    SecondCb = H.cb_port;
    SecondInt = H.int_port;
    H.cb_port = saved_cb;
    H.int_port = saved_int;
    Second = h_spawn_broker(SecondConf, SecondLog);
    assert_true(Second > 0);
    {
        char url[128], *body = NULL;
        long st = -1, deadline = h_now_ms() + 20000;

        snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", SecondInt);
        while (h_now_ms() < deadline &&
               (st = h_http("GET", url, NULL, 0, &body)) != 200) {
            free(body);
            body = NULL;
            usleep(50 * 1000);
        }
        free(body);
        assert_int_equal(st, 200);
    }
    /* corps that are no tenants: each event is read, judged and
     * acknowledged without a WeCom call, on whichever instance */
    snprintf(ts0, sizeof(ts0), "%ld", h_next_ts());
    t0 = h_now_ms();
    for (i = 0; i < NEVENTS; i++) {
        snprintf(corp, sizeof(corp), "wwmockcorp%04d", 5 + i % (NCORPS - 4));
        snprintf(tsb, sizeof(tsb), "%ld", strtol(ts0, NULL, 10) + i);
        kv[0] = "SuiteId";
        kv[1] = S1;
        kv[2] = "InfoType";
        kv[3] = "change_contact";
        kv[4] = "TimeStamp";
        kv[5] = tsb;
        kv[6] = "AuthCorpId";
        kv[7] = corp;
        kv[8] = "ChangeType";
        kv[9] = "update_user";
        tc_target(i % 2 ? SecondCb : 0);
        tc_post_event(S1, kv, 5);
    }
    tc_target(0);
    assert_true(h_wait(all_done, &d, 60000));
    a = events_with(H.int_port, "not_a_tenant");
    b = events_with(SecondInt, "not_a_tenant");
    fprintf(stderr,
            "# %d events of %d tenants drained by two instances in %ld ms "
            "(%ld + %ld)\n",
            NEVENTS, NCORPS - 4, h_now_ms() - t0, a, b);
    assert_int_equal(a + b, NEVENTS);
    assert_true(a > 0 && b > 0);
    /* nothing left behind: no queue, no lease, nothing ready */
    assert_true(h_wait(nothing_left, NULL, 5000));
    /* only the failing tenant of the first test is still queued */
    assert_int_equal(redis_int("ZCARD %s", "wb:{" S1 "}:ready"), 1);
}

static char LeaseOwner[256];

static int
leased(void *arg)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    int ok = 0;

    assert_non_null(c);
    r = redisCommand(c, "HGET wb:{" S1 "}:lease %s", (const char *)arg);
    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        snprintf(LeaseOwner, sizeof(LeaseOwner), "%s", r->str);
        ok = 1;
    }
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

/* The instance working a tenant dies mid-install: another takes the
 * tenant over once its lease runs out, and the install completes once. */
static void
test_dead_instance_tenant_taken_over(void **state)
{
    char corp5[] = "wwmockcorp0005", port[24];
    long t0;
    int second_held;

    (void)state;
    h_sim_ok(MockPort, "POST", "/__mock/latency", "{\"ms\":700}");
    tc_install(S1, corp5, h_next_ts());
    assert_true(h_wait(leased, corp5, 20000));
    snprintf(port, sizeof(port), ":%d", SecondInt);
    second_held = strstr(LeaseOwner, port) != NULL;
    t0 = h_now_ms();
    if (second_held) {
        assert_int_equal(h_stop(Second, SIGKILL), 128 + SIGKILL);
        Second = 0;
    } else {
        h_broker_stop(&H, SIGKILL);
    }
    h_sim_ok(MockPort, "POST", "/__mock/latency", "{\"ms\":0}");
    tc_wait_status(S1, corp5, "active", 30000);
    fprintf(stderr,
            "# %s instance killed holding the tenant; the other "
            "completed the install %ld ms later (lease: "
            "event_claim_idle = 3 s)\n",
            second_held ? "second" : "first", h_now_ms() - t0);
    assert_int_equal(redis_int("HEXISTS %s "
                               "wwmockcorp0005",
                               "wb:{" S1 "}:lease"),
                     0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failing_tenant_delays_no_other),
        cmocka_unit_test(test_data_callbacks),
        cmocka_unit_test(test_contact_change_during_sync_applies_after),
        cmocka_unit_test(test_thousand_tenants_two_instances),
        cmocka_unit_test(test_dead_instance_tenant_taken_over),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
