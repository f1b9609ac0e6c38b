/*
 * WeCom's replies and events read in the shapes WeCom gives a third-party
 * app, against the strict simulator: what it leaves out, and the readings
 * its documentation leaves open, are taken for what they mean, never for
 * a broken reply, and never widen what a service sees.
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

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "broker.h"
#include "harness.h"
#include "simclient.h"
#include "tenantclient.h"

#define S1 H_SUITE

static struct harness H;
static pid_t Mock;
static int MockPort;
static int Shape; /* a fresh corp per test */

static int
setup(void **state)
{
    const char *extra[] = {
        "--suite", S1 ":" H_SECRET, "--corps", "10", "--members",
        "60",      "--departments", "15",      NULL};
    char broker[256];

    (void)state;
    if (h_setup(&H) != 0)
        return -1;
    Mock = h_mock_start(H.dir, extra, &MockPort);
    if (Mock == 0)
        return -1;
    snprintf(broker, sizeof(broker),
             "wecom_api_base = http://127.0.0.1:%d\n"
             "event_claim_idle = 3\n"
             "event_max_attempts = 3\n",
             MockPort);
    if (h_write_conf(&H, 0, broker) != 0 || h_broker_start(&H) != 0)
        return -1;
    tc_init(&H, MockPort);
    tc_push_ticket(S1);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    tc_done();
    if (Mock > 0)
        h_stop(Mock, SIGTERM);
    h_teardown(&H);
    return 0;
}

/*---- helpers ----*/

static const char *
next_corp(char *buf, size_t len)
{
    snprintf(buf, len, "wwmockcorp%04d", ++Shape);
    return buf;
}

/* POST a body (fmt, a literal with %s for the corp) to a control
 * endpoint. */
#define CTL(path, fmt, corp)                                                   \
    do {                                                                       \
        char body_[512];                                                       \
        snprintf(body_, sizeof(body_), fmt, corp);                             \
        h_sim_ok(MockPort, "POST", path, body_);                               \
    } while (0)

static void
install(const char *corp)
{
    tc_install(S1, corp, h_next_ts());
    tc_wait_status(S1, corp, "active", 30000);
}

/* A field of the tenant's record (free), NULL when absent. */
static char *
tenant_field(const char *corp, const char *field)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    char *v = NULL;

    assert_non_null(c);
    r = redisCommand(c, "HGET wb:{%s}:%s:tenant %s", corp, S1, field);
    if (r != NULL && r->type == REDIS_REPLY_STRING)
        v = strdup(r->str);
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

struct field_is {
    const char *corp, *field, *want;
};

static int
field_is(void *arg)
{
    const struct field_is *f = arg;
    char *v = tenant_field(f->corp, f->field);
    int ok = v != NULL && (f->want == NULL || strcmp(v, f->want) == 0);

    free(v);
    return ok;
}

/*---- agent/get_admin_list ----*/

/* An app the members authorized has no admin list: WeCom's reply leaves
 * "admin" out. The change of admins is stored as no admins, not retried
 * as a broken reply until it is dead-lettered. */
static void
test_admins_of_app_authorized_by_member(void **state)
{
    char c[32], ts[24];
    const char *admin[] = {
        "ToUserName", c,         "FromUserName", "sys",   "CreateTime",
        ts,           "MsgType", "event",        "Event", "change_app_admin",
        "AgentID",    "1000002"};
    struct field_is stored = {c, "admins", "[]"};
    json_t *t;

    (void)state;
    next_corp(c, sizeof(c));
    CTL("/__mock/auth_mode",
        "{\"corpid\":\"%s\",\"auth_mode\":1,"
        "\"members\":[\"u00001\",\"u00002\"]}",
        c);
    install(c);
    snprintf(ts, sizeof(ts), "%ld", h_next_ts());
    tc_post_data(S1, c, admin, 6);
    assert_true(h_wait(field_is, &stored, 20000));
    t = tc_ctl_json("tenant", "show", c, S1);
    assert_non_null(t);
    assert_true(json_is_array(json_object_get(t, "admins")));
    assert_int_equal(json_array_size(json_object_get(t, "admins")), 0);
    json_decref(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admins_of_app_authorized_by_member),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
