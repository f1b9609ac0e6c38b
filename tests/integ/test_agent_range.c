/*
 * agent/get through the broker answers the calling service's own
 * effective range (SPEC §6b): a service without departments of its own
 * reads the tenant's range as WeCom gives it; a range-narrowed service
 * reads the tops of its narrowed range, no tags, and only its members,
 * with X-Broker-Dropped counting what was removed and the reply still in
 * the shape scopes/agent.json declares. Against the strict simulator,
 * with the department tree read from the simulator, not the broker.
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
#include "filter.h"
#include "grant.h"
#include "harness.h"
#include "scope_map.h"
#include "simclient.h"
#include "svcclient.h"
#include "tenantclient.h"

#define S1    H_SUITE
#define CORP1 "wwmockcorp0001"
#define CORP2 "wwmockcorp0002"

static struct harness H;
static pid_t Mock;
static int MockPort;
static char Secret[256]; /* "reader": contacts.read, no range of its own */

/* The simulator's department tree of corp: id -> parent (a new object
 * of "id" -> integer), read with its own corp token over the whole corp. */
static json_t *
tree_of(const char *corp)
{
    char path[256], body[128];
    json_t *tok, *r, *tree = json_object(), *row;
    size_t i;

    snprintf(body, sizeof(body), "{\"corpid\":\"%s\",\"allow_party\":[1]}",
             corp);
    h_sim_ok(MockPort, "POST", "/__mock/privilege", body);
    snprintf(path, sizeof(path), "/__mock/corp_token?suite_id=%s&corpid=%s", S1,
             corp);
    tok = h_sim_json(MockPort, "GET", path, NULL);
    snprintf(path, sizeof(path),
             "/cgi-bin/department/simplelist?access_token=%s",
             h_str(tok, "access_token"));
    r = h_sim_json(MockPort, "GET", path, NULL);
    json_array_foreach(json_object_get(r, "department_id"), i, row)
    {
        char id[24];

        snprintf(id, sizeof(id), "%lld",
                 (long long)json_integer_value(json_object_get(row, "id")));
        json_object_set(tree, id, json_object_get(row, "parentid"));
    }
    assert_true(json_object_size(tree) >= 3);
    json_decref(r);
    json_decref(tok);
    return tree;
}

static long
parent_of(const json_t *tree, long id)
{
    char k[24];

    snprintf(k, sizeof(k), "%ld", id);
    return (long)json_integer_value(json_object_get(tree, k));
}

/* A department two or more levels below the root, and its ancestor just
 * below the root. */
static void
deep_department(const json_t *tree, long *deep, long *top)
{
    const char *k;
    json_t *v;
    long id, p;

    *deep = *top = 0;
    json_object_foreach((json_t *)(uintptr_t)tree, k, v)
    {
        id = strtol(k, NULL, 10);
        p = (long)json_integer_value(v);
        if (*deep != 0 || p == 0 || p == 1)
            continue;
        *deep = id;
        while (parent_of(tree, p) != 1 && parent_of(tree, p) != 0)
            p = parent_of(tree, p);
        *top = p;
    }
    assert_true(*deep > 0 && *top > 1);
}

/* A member of department dept (a direct member), read at the simulator. */
static void
member_of(const char *corp, long dept, char *out, size_t len)
{
    char path[256];
    json_t *tok, *r;

    snprintf(path, sizeof(path), "/__mock/corp_token?suite_id=%s&corpid=%s", S1,
             corp);
    tok = h_sim_json(MockPort, "GET", path, NULL);
    snprintf(path, sizeof(path),
             "/cgi-bin/user/simplelist?access_token=%s&department_id=%ld",
             h_str(tok, "access_token"), dept);
    r = h_sim_json(MockPort, "GET", path, NULL);
    snprintf(
        out, len, "%s",
        h_str(json_array_get(json_object_get(r, "userlist"), 0), "userid"));
    assert_true(out[0] != '\0');
    json_decref(r);
    json_decref(tok);
}

static void
install(const char *corp, const char *priv)
{
    h_sim_ok(MockPort, "POST", "/__mock/privilege", priv);
    tc_install(S1, corp, h_next_ts());
    tc_wait_status(S1, corp, "active", 30000);
}

/* agent/get for the service with secret in corp; r filled, 200/0. */
static void
agent_get(struct sc_resp *r, const char *secret, const char *corp)
{
    char *tok = tc_token_for(0, secret, corp);

    sc_call(r, H.int_port, "GET", NULL,
            "/cgi-bin/agent/get?access_token=%s&agentid=1000002", tok);
    free(tok);
    SC_EXPECT(r, 200, 0);
}

/* The ids of the reply's list obj.key as "a,b,c" in the reply's order
 * ("-" when the list is missing). */
static void
ids_text(const json_t *reply, const char *obj, const char *key, char *buf,
         size_t len)
{
    const json_t *arr = json_object_get(json_object_get(reply, obj), key), *e;
    size_t i, o = 0;

    snprintf(buf, len, "%s", arr == NULL ? "-" : "");
    json_array_foreach(arr, i, e)
    {
        if (json_is_object(e))
            o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "," : "",
                                  h_str(e, "userid"));
        else
            o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? "," : "",
                                  (long long)json_integer_value(e));
    }
}

/* The reply in the shape scopes/agent.json declares: through the filter
 * again with every permission and no range, nothing is removed and the
 * same bytes come out. */
static void
assert_declared_shape(const struct sc_resp *r)
{
    struct scope_map *m = NULL;
    struct brk_errinfo info;
    struct scope_grant all;
    struct filter *f = NULL;
    char *out = NULL;
    size_t len = 0;
    int i;

    assert_int_equal(scope_map_load_file("scopes/agent.json", &m, &info),
                     BRK_OK);
    scope_grant_clear(&all);
    for (i = 0; i < scope_perm_count(); i++)
        scope_grant_add(&all, i);
    assert_int_equal(filter_new(&scope_map_find(m, "/cgi-bin/agent/get")->root,
                                &all, NULL, NULL, NULL, &f),
                     BRK_OK);
    assert_int_equal(filter_feed(f, r->body, r->len), BRK_OK);
    assert_int_equal(filter_finish(f), BRK_OK);
    assert_int_equal(filter_stripped(f), 0);
    assert_int_equal(filter_dropped(f), 0);
    assert_int_equal(filter_take_output(f, &out, &len), BRK_OK);
    assert_int_equal(len, r->len);
    assert_memory_equal(out, r->body, len);
    brk_free(out);
    filter_free(f);
    scope_map_free(m);
}

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

/*
 * The whole corp granted, with a tag: the reader sees it as WeCom says;
 * a service narrowed to a deep department and another top department
 * sees exactly those two, no tag, and the department and tag removed
 * counted.
 */
static void
test_whole_corp_narrowed(void **state)
{
    json_t *tree = tree_of(CORP1);
    long deep, top, other;
    char parties[128], priv[160], buf[256], want[64], *sec;
    struct sc_resp r;
    long wide_stripped;

    (void)state;
    deep_department(tree, &deep, &top);
    other = top == 2 ? 3 : 2;
    snprintf(priv, sizeof(priv),
             "{\"corpid\":\"%s\",\"allow_party\":[1],\"allow_tag\":[1]}",
             CORP1);
    install(CORP1, priv);
    snprintf(parties, sizeof(parties), "%s:%ld,%s:%ld", CORP1, deep, CORP1,
             other);
    sec = tc_svc_add("narrow1", "contacts.read", "--parties", parties);

    sc_resp_init(&r);
    agent_get(&r, Secret, CORP1);
    ids_text(r.json, "allow_partys", "partyid", buf, sizeof(buf));
    assert_string_equal(buf, "1");
    ids_text(r.json, "allow_tags", "tagid", buf, sizeof(buf));
    assert_string_equal(buf, "1");
    /* the simulator's own note is all that is stripped */
    wide_stripped = r.stripped;
    assert_true(wide_stripped >= 0);
    assert_int_equal(r.dropped, 0);
    assert_declared_shape(&r);
    sc_resp_free(&r);
    sc_resp_init(&r);

    agent_get(&r, sec, CORP1);
    ids_text(r.json, "allow_partys", "partyid", buf, sizeof(buf));
    snprintf(want, sizeof(want), "%ld,%ld", deep < other ? deep : other,
             deep < other ? other : deep);
    assert_string_equal(buf, want);
    ids_text(r.json, "allow_tags", "tagid", buf, sizeof(buf));
    assert_string_equal(buf, "");
    /* department 1 and tag 1 removed; deep and other added */
    assert_int_equal(r.stripped, wide_stripped);
    assert_int_equal(r.dropped, 2);
    assert_string_equal(h_str(r.json, "name"), "模拟应用");
    assert_declared_shape(&r);
    sc_resp_free(&r);
    free(sec);
    json_decref(tree);
}

/*
 * A range of one deep department and a member elsewhere: a service
 * narrowed to the department's top ancestor (wider than the tenant's)
 * and to a department outside the tenant's range sees the tenant's
 * department only, and not the member.
 */
static void
test_tenant_department_inside_service(void **state)
{
    json_t *tree = tree_of(CORP2);
    long deep, top, other;
    char parties[160], priv[200], buf[256], want[64], member[64], *sec;
    struct sc_resp r;
    long wide_stripped;

    (void)state;
    deep_department(tree, &deep, &top);
    other = top == 2 ? 3 : 2;
    member_of(CORP2, other, member, sizeof(member));
    snprintf(priv, sizeof(priv),
             "{\"corpid\":\"%s\",\"allow_party\":[%ld],"
             "\"allow_user\":[\"%s\"]}",
             CORP2, deep, member);
    install(CORP2, priv);
    snprintf(parties, sizeof(parties), "%s:%ld,%s:9999", CORP2, top, CORP2);
    sec = tc_svc_add("narrow2", "contacts.read", "--parties", parties);

    sc_resp_init(&r);
    agent_get(&r, Secret, CORP2);
    snprintf(want, sizeof(want), "%ld", deep);
    ids_text(r.json, "allow_partys", "partyid", buf, sizeof(buf));
    assert_string_equal(buf, want);
    ids_text(r.json, "allow_userinfos", "user", buf, sizeof(buf));
    assert_string_equal(buf, member);
    wide_stripped = r.stripped;
    assert_int_equal(r.dropped, 0);
    assert_declared_shape(&r);
    sc_resp_free(&r);
    sc_resp_init(&r);

    agent_get(&r, sec, CORP2);
    ids_text(r.json, "allow_partys", "partyid", buf, sizeof(buf));
    assert_string_equal(buf, want);
    /* the member, in another top department, is not the service's */
    ids_text(r.json, "allow_userinfos", "user", buf, sizeof(buf));
    assert_string_equal(buf, "");
    assert_int_equal(r.stripped, wide_stripped);
    assert_int_equal(r.dropped, 1);
    assert_declared_shape(&r);
    sc_resp_free(&r);
    free(sec);
    json_decref(tree);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_corp_narrowed),
        cmocka_unit_test(test_tenant_department_inside_service),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
