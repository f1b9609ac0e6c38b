/*
 * Installs under the grants real tenants give, against a simulator that
 * refuses what WeCom refuses (user/list_id without contacts edit, calls
 * outside the range, contacts APIs without contacts permission): each
 * shape ends active with the directory its range names.
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

/* Install the next corp after body_fn set its grant; returns its id. */
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

static json_t *
install_and_show(const char *corp)
{
    json_t *t;

    h_sim_ok(MockPort, "DELETE", "/__mock/requests", NULL);
    tc_install(S1, corp, h_next_ts());
    tc_wait_status(S1, corp, "active", 30000);
    t = tc_ctl_json("tenant", "show", corp, S1);
    assert_non_null(t);
    return t;
}

static long
dir_users(const json_t *t)
{
    return (long)json_integer_value(
        json_object_get(json_object_get(t, "directory"), "users"));
}

static void
report(const char *shape, const json_t *t)
{
    fprintf(stderr, "# %-28s active, %ld members, %ld departments\n", shape,
            dir_users(t),
            (long)json_integer_value(json_object_get(
                json_object_get(t, "directory"), "departments")));
}

static void
test_contacts_read_only(void **state)
{
    char c[32];
    json_t *t;

    (void)state;
    next_corp(c, sizeof(c));
    /* the default grant: contact:base:base, external customers; a range of
     * a department, a member and a tag */
    t = install_and_show(c);
    assert_int_equal(dir_users(t), tc_expected_members(S1, c));
    assert_true(dir_users(t) > 0);
    /* the call WeCom refuses to a read-only app was never made */
    assert_int_equal(tc_mock_count("/cgi-bin/user/list_id", NULL), 0);
    report("contacts read-only", t);
    json_decref(t);
}

static void
test_contacts_edit(void **state)
{
    char c[32];
    json_t *t;

    (void)state;
    next_corp(c, sizeof(c));
    CTL("/__mock/privilege",
        "{\"corpid\":\"%s\",\"level\":3,\"allow_party\":[2],"
        "\"allow_tag\":[1]}",
        c);
    t = install_and_show(c);
    assert_int_equal(json_integer_value(json_object_get(t, "level")), 3);
    assert_int_equal(dir_users(t), tc_expected_members(S1, c));
    report("contacts edit", t);
    json_decref(t);
}

static void
test_external_contacts_only(void **state)
{
    char c[32];
    json_t *t;

    (void)state;
    next_corp(c, sizeof(c));
    CTL("/__mock/permissions",
        "{\"corpid\":\"%s\",\"app_permissions\":"
        "[\"externalcontact:base:base\"]}",
        c);
    t = install_and_show(c);
    /* no contacts permission: no contacts API was called at all */
    assert_int_equal(tc_mock_count("/cgi-bin/user/simplelist", NULL), 0);
    assert_int_equal(tc_mock_count("/cgi-bin/department/simplelist", NULL), 0);
    report("external contacts only", t);
    json_decref(t);
}

static void
test_sensitive_fields(void **state)
{
    char c[32];
    json_t *t;

    (void)state;
    next_corp(c, sizeof(c));
    CTL("/__mock/permissions",
        "{\"corpid\":\"%s\",\"app_permissions\":[\"contact:base:base\","
        "\"contact:sensitive:avatar\",\"contact:sensitive:gender\","
        "\"externalcontact:base:base\"]}",
        c);
    t = install_and_show(c);
    assert_int_equal(dir_users(t), tc_expected_members(S1, c));
    report("sensitive fields", t);
    json_decref(t);
}

static void
test_range_of_members_only(void **state)
{
    char c[32];
    json_t *t;

    (void)state;
    next_corp(c, sizeof(c));
    CTL("/__mock/privilege",
        "{\"corpid\":\"%s\",\"allow_user\":[\"u00003\",\"u00007\"]}", c);
    t = install_and_show(c);
    assert_int_equal(tc_mock_count("/cgi-bin/user/get", NULL), 2);
    assert_int_equal(dir_users(t), tc_expected_members(S1, c));
    /* the named members are in range (WeCom shows the app none of their
     * departments, so the range alone holds them); others are not */
    assert_int_equal(tc_user_get_errcode(Secret, c, "u00003"), 0);
    assert_int_equal(tc_user_get_errcode(Secret, c, "u00007"), 0);
    assert_int_equal(tc_user_get_errcode(Secret, c, "u00004"), 60011);
    report("range of members only", t);
    json_decref(t);
}

static void
test_range_of_tags_only(void **state)
{
    char c[32];
    json_t *t;

    (void)state;
    next_corp(c, sizeof(c));
    CTL("/__mock/privilege", "{\"corpid\":\"%s\",\"allow_tag\":[1]}", c);
    t = install_and_show(c);
    assert_int_equal(dir_users(t), tc_expected_members(S1, c));
    /* the tag's members are in range through the tag */
    {
        json_t *tags = json_object_get(json_object_get(t, "directory"), "tags");

        assert_true(json_integer_value(tags) >= 1);
    }
    report("range of tags only", t);
    json_decref(t);
}

static void
test_authorized_by_member(void **state)
{
    char c[32];
    json_t *t;

    (void)state;
    next_corp(c, sizeof(c));
    CTL("/__mock/auth_mode",
        "{\"corpid\":\"%s\",\"auth_mode\":1,"
        "\"members\":[\"u00001\",\"u00002\",\"u00005\"]}",
        c);
    t = install_and_show(c);
    assert_int_equal(dir_users(t), 3);
    assert_true(tc_mock_count("/cgi-bin/user/list_member_auth", NULL) >= 1);
    report("authorized by member", t);
    json_decref(t);
}

static void
test_authorized_by_member_userid_rows(void **state)
{
    char c[32];
    json_t *t;

    (void)state;
    /* the reply's shape is not documented: the other reading */
    h_sim_ok(MockPort, "POST", "/__mock/member_auth_shape",
             "{\"shape\":\"userid\"}");
    next_corp(c, sizeof(c));
    CTL("/__mock/auth_mode",
        "{\"corpid\":\"%s\",\"auth_mode\":1,"
        "\"members\":[\"u00004\",\"u00006\"]}",
        c);
    t = install_and_show(c);
    assert_int_equal(dir_users(t), 2);
    report("by member (userid rows)", t);
    json_decref(t);
    h_sim_ok(MockPort, "POST", "/__mock/member_auth_shape",
             "{\"shape\":\"open_userid\"}");
}

static void
test_sync_waits_out_wecom_limits(void **state)
{
    char c[32];
    json_t *t;

    (void)state;
    next_corp(c, sizeof(c));
    CTL("/__mock/privilege", "{\"corpid\":\"%s\",\"allow_party\":[1]}", c);
    /* WeCom says "too many concurrent calls" three times mid-sync: those
     * calls wait and are tried again; the sync is not started over */
    h_sim_ok(MockPort, "POST", "/__mock/faults",
             "{\"path\":\"/cgi-bin/user/simplelist\",\"count\":3,"
             "\"errcode\":45033}");
    t = install_and_show(c);
    assert_int_equal(tc_mock_count("/cgi-bin/service/get_auth_info", NULL), 1);
    assert_int_equal(tc_mock_count("/cgi-bin/department/simplelist", NULL), 1);
    assert_int_equal(dir_users(t), tc_expected_members(S1, c));
    report("whole corp, 45033 x3", t);
    json_decref(t);
    h_sim_ok(MockPort, "DELETE", "/__mock/faults", NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contacts_read_only),
        cmocka_unit_test(test_contacts_edit),
        cmocka_unit_test(test_external_contacts_only),
        cmocka_unit_test(test_sensitive_fields),
        cmocka_unit_test(test_range_of_members_only),
        cmocka_unit_test(test_range_of_tags_only),
        cmocka_unit_test(test_authorized_by_member),
        cmocka_unit_test(test_authorized_by_member_userid_rows),
        cmocka_unit_test(test_sync_waits_out_wecom_limits),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
