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
static int Shape;        /* a fresh corp per test */
static char Secret[256]; /* a service allowed contacts.read */

static int
setup(void **state)
{
    (void)state;
    return tc_world_start(&H, &Mock, &MockPort, Secret, sizeof(Secret));
}

static int
teardown(void **state)
{
    (void)state;
    tc_world_stop(&H, Mock);
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

/* Events of info_type that ended with result, per the metrics. */
static long
events_of(const char *info_type, const char *result)
{
    char *url = h_int_url(&H, "/metrics"), *body = NULL, *line, *save = NULL;
    char it[96], res[64];
    long sum = 0;

    snprintf(it, sizeof(it), "info_type=\"%s\"", info_type);
    snprintf(res, sizeof(res), "result=\"%s\"", result);
    assert_int_equal(h_http("GET", url, NULL, 0, &body), 200);
    free(url);
    for (line = strtok_r(body, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char *sp = strrchr(line, ' ');

        if (strncmp(line, "wecom_broker_events_total{", 26) == 0 &&
            strstr(line, it) != NULL && strstr(line, res) != NULL && sp != NULL)
            sum += strtol(sp + 1, NULL, 10);
    }
    free(body);
    return sum;
}

struct count_at_least {
    const char *info_type, *result;
    long want;
};

static int
count_reached(void *arg)
{
    const struct count_at_least *c = arg;

    return events_of(c->info_type, c->result) >= c->want;
}

/*
 * Send a change_contact of corp with the fields kv (npairs name/value
 * pairs after the common ones) and wait until the broker has stored it.
 */
static void
contact_change(const char *corp, const char *const *kv, size_t npairs)
{
    const char *all[2 * 12];
    char ts[24];
    struct count_at_least done = {"change_contact", "stored", 0};
    size_t n = 0, i;

    assert_true(npairs <= 8);
    done.want = events_of("change_contact", "stored") + 1;
    snprintf(ts, sizeof(ts), "%ld", h_next_ts());
    all[n++] = "SuiteId";
    all[n++] = S1;
    all[n++] = "InfoType";
    all[n++] = "change_contact";
    all[n++] = "TimeStamp";
    all[n++] = ts;
    all[n++] = "AuthCorpId";
    all[n++] = corp;
    for (i = 0; i < 2 * npairs; i++)
        all[n++] = kv[i];
    tc_post_event(S1, all, n / 2);
    assert_true(h_wait(count_reached, &done, 20000));
}

/* A field of a directory hash of corp (free), NULL when absent. */
static char *
dir_field(const char *corp, const char *which, const char *field)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    char *v = NULL;

    assert_non_null(c);
    r = redisCommand(c, "HGET wb:{%s}:%s:dir:%s %s", corp, S1, which, field);
    if (r != NULL && r->type == REDIS_REPLY_STRING)
        v = strdup(r->str);
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

/* The stored value of tag in corp's directory equals want (JSON). */
static void
expect_tag(const char *corp, const char *tag, const char *want)
{
    char *v = dir_field(corp, "tags", tag);
    json_t *got, *w = json_loads(want, 0, NULL);

    assert_non_null(v);
    got = json_loads(v, JSON_REJECT_DUPLICATES, NULL);
    if (!json_equal(got, w))
        fprintf(stderr, "# tag %s: %s, want %s\n", tag, v, want);
    assert_true(json_equal(got, w));
    json_decref(got);
    json_decref(w);
    free(v);
}

/* Join the strings (or integers) of array a with commas into buf. */
static void
join(const json_t *a, char *buf, size_t len)
{
    const json_t *x;
    size_t i, o = 0;

    buf[0] = '\0';
    json_array_foreach(a, i, x)
    {
        if (json_is_integer(x))
            o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? "," : "",
                                  (long long)json_integer_value(x));
        else
            o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "," : "",
                                  json_string_value(x));
        assert_true(o < len);
    }
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

/*---- change_contact ----*/

/* update_tag may leave a tag without members or departments, or name a
 * tag the directory has not seen: the stored value keeps both lists
 * JSON arrays, so the tenant's range still builds. */
static void
test_update_tag_lists(void **state)
{
    char c[32], users[1024], parties[256], *v;
    const char *del[] = {
        "ChangeType",   "update_tag", "TagId",         "1",
        "DelUserItems", users,        "DelPartyItems", parties};
    const char *add[] = {"ChangeType", "update_tag",   "TagId",
                         "3",          "AddUserItems", "u00009"};
    json_t *tag;

    (void)state;
    next_corp(c, sizeof(c));
    /* the default grant: allow_party [2], allow_user [u00003],
     * allow_tag [1] */
    install(c);
    assert_int_equal(tc_user_get_errcode(Secret, c, "u00003"), 0);
    v = dir_field(c, "tags", "1");
    assert_non_null(v);
    tag = json_loads(v, 0, NULL);
    free(v);
    join(json_object_get(tag, "users"), users, sizeof(users));
    join(json_object_get(tag, "parties"), parties, sizeof(parties));
    assert_true(users[0] != '\0' || parties[0] != '\0');
    json_decref(tag);
    /* every member and department leaves the tag */
    contact_change(c, del, 4);
    expect_tag(c, "1", "{\"users\":[],\"parties\":[]}");
    assert_int_equal(tc_user_get_errcode(Secret, c, "u00003"), 0);
    /* a tag the directory did not hold */
    contact_change(c, add, 3);
    expect_tag(c, "3", "{\"users\":[\"u00009\"],\"parties\":[]}");
    assert_int_equal(tc_user_get_errcode(Secret, c, "u00003"), 0);
}

/* Which ids a third-party app's change_contact carries is not documented:
 * a member named by OpenUserID alone is applied under that id, never
 * under an empty one (which broke the whole range). */
static void
test_member_named_by_open_userid(void **state)
{
    char c[32], *v;
    const char *create[] = {"ChangeType",      "create_user", "OpenUserID",
                            "woNewMember0001", "Department",  "2"};
    const char *move[] = {"ChangeType", "update_user",     "UserID",     "",
                          "OpenUserID", "woNewMember0001", "Department", "2,3"};
    const char *gone[] = {"ChangeType", "delete_user", "OpenUserID",
                          "woNewMember0001"};

    (void)state;
    next_corp(c, sizeof(c));
    install(c);
    contact_change(c, create, 3);
    v = dir_field(c, "users", "woNewMember0001");
    assert_non_null(v);
    assert_string_equal(v, "2");
    free(v);
    assert_null(dir_field(c, "users", ""));
    assert_int_equal(tc_user_get_errcode(Secret, c, "u00003"), 0);
    contact_change(c, move, 4);
    v = dir_field(c, "users", "woNewMember0001");
    assert_non_null(v);
    assert_string_equal(v, "2,3");
    free(v);
    contact_change(c, gone, 2);
    assert_null(dir_field(c, "users", "woNewMember0001"));
    assert_int_equal(tc_user_get_errcode(Secret, c, "u00003"), 0);
}

/* A change the directory cannot apply (no member id, a malformed
 * department list) is not guessed at: the tenant's directory is synced
 * again from WeCom, and the range stays whole. */
static void
test_unreadable_change_syncs_again(void **state)
{
    char c[32];
    const char *no_id[] = {"ChangeType", "update_user", "Department", "2"};
    const char *bad_depts[] = {"ChangeType", "update_user", "UserID",
                               "u00003",     "Department",  "2,x"};

    (void)state;
    next_corp(c, sizeof(c));
    install(c);
    h_sim_ok(MockPort, "DELETE", "/__mock/requests", NULL);
    contact_change(c, no_id, 2);
    assert_int_equal(tc_mock_count("/cgi-bin/service/get_auth_info", NULL), 1);
    assert_true(tc_mock_count("/cgi-bin/department/simplelist", NULL) >= 1);
    assert_null(dir_field(c, "users", ""));
    assert_int_equal(tc_user_get_errcode(Secret, c, "u00003"), 0);
    h_sim_ok(MockPort, "DELETE", "/__mock/requests", NULL);
    contact_change(c, bad_depts, 3);
    assert_int_equal(tc_mock_count("/cgi-bin/service/get_auth_info", NULL), 1);
    assert_int_equal(tc_user_get_errcode(Secret, c, "u00003"), 0);
    tc_wait_status(S1, c, "active", 1000);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admins_of_app_authorized_by_member),
        cmocka_unit_test(test_update_tag_lists),
        cmocka_unit_test(test_member_named_by_open_userid),
        cmocka_unit_test(test_unreadable_change_syncs_again),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
