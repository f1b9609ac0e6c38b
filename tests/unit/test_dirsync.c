/*
 * Tests for the directory sync planner: a fake WeCom (a table of replies
 * keyed by the exact call) answers the planner under each grant shape;
 * the tests check the exact calls, the calls in flight, the resulting
 * directory, malformed and hostile replies, tolerated and fatal error
 * codes, and a failure at every allocation.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "broker.h"
#include "dirsync.h"
#include "visible_range.h"

#define KEY_MAX 2300
#define LOG_MAX 256
#define LOG_LEN 160

/* Every call the planner made in the last drive, as "METHOD path body". */
static char call_log[LOG_MAX][LOG_LEN];
static size_t nlog;
static unsigned peak; /* most calls outstanding at once */

/*---- Helpers ----*/

/* Parse test JSON written with ' for " (no ' inside strings). */
static json_t *
jq(const char *text)
{
    char buf[8192];
    json_error_t jerr;
    json_t *j;
    size_t i;

    assert_true(strlen(text) < sizeof(buf));
    for (i = 0; text[i] != '\0'; i++)
        buf[i] = text[i] == '\'' ? '"' : text[i];
    buf[i] = '\0';
    j = json_loads(buf, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (j == NULL)
        print_error("bad test JSON: %s: %s\n", jerr.text, buf);
    assert_non_null(j);
    return j;
}

static void
fake_add(json_t *fake, const char *key, const char *reply)
{
    assert_int_equal(json_object_set_new(fake, key, jq(reply)), 0);
}

static void
fake_err(json_t *fake, const char *key, long code)
{
    assert_int_equal(
        json_object_set_new(fake, key, json_pack("{s:i}", "errcode", code)), 0);
}

static void
call_key(const struct dirsync_call *c, char *key, size_t cap)
{
    int n = snprintf(key, cap, "%s %s%s%s", c->method, c->path_query,
                     c->body ? " " : "", c->body ? c->body : "");

    assert_true(n > 0 && (size_t)n < cap);
}

struct pending {
    struct dirsync_call c;
    char key[KEY_MAX];
};

/*
 * Run the sync against fake: take every call the planner offers, answer
 * one (the oldest, or the newest when lifo), repeat. Returns the first
 * error the planner reports, or BRK_OK once nothing is left. Allocates
 * nothing itself (the allocation-failure loop runs through it).
 */
static enum brk_err
drive(struct dirsync *ds, const json_t *fake, int lifo)
{
    static struct pending out[DIRSYNC_MAX_INFLIGHT + 1];
    char again[KEY_MAX];
    const json_t *reply;
    size_t n = 0, i;
    long code;
    enum brk_err err;

    nlog = 0;
    peak = 0;
    for (;;) {
        for (;;) {
            err = dirsync_next(ds, &out[n].c);
            if (err == BRK_ERR_NOTFOUND)
                break;
            if (err)
                return err;
            if (n == DIRSYNC_MAX_INFLIGHT)
                fail_msg("more than %d calls in flight", DIRSYNC_MAX_INFLIGHT);
            call_key(&out[n].c, out[n].key, sizeof(out[n].key));
            assert_true(nlog < LOG_MAX);
            snprintf(call_log[nlog++], LOG_LEN, "%s", out[n].key);
            /* never the APIs a read-only third-party app cannot use */
            assert_null(strstr(out[n].key, "list_id"));
            assert_null(strstr(out[n].key, "tag/list"));
            assert_null(strstr(out[n].key, "access_token"));
            n++;
        }
        if (n > peak)
            peak = (unsigned)n;
        if (n == 0)
            return dirsync_status(ds);
        i = lifo ? n - 1 : 0;
        /* the borrowed strings still hold the call */
        call_key(&out[i].c, again, sizeof(again));
        assert_string_equal(again, out[i].key);
        reply = json_object_get(fake, out[i].key);
        if (reply == NULL)
            fail_msg("unexpected call %s", out[i].key);
        code = (long)json_integer_value(json_object_get(reply, "errcode"));
        err = code ? dirsync_error(ds, out[i].c.id, code)
                   : dirsync_reply(ds, out[i].c.id, reply);
        memmove(&out[i], &out[i + 1], (n - i - 1) * sizeof(out[0]));
        n--;
        if (err)
            return err;
    }
}

static void
expect_log(const char *const *want, size_t n)
{
    size_t i;

    for (i = 0; i < n && i < nlog; i++)
        assert_string_equal(call_log[i], want[i]);
    assert_int_equal(nlog, n);
}

static struct dirsync *
plan_new(const char *agent, const char *perms)
{
    json_t *a = jq(agent), *p = perms ? jq(perms) : NULL;
    struct dirsync *ds = NULL;

    assert_int_equal(dirsync_new(a, p, &ds), BRK_OK);
    assert_non_null(ds);
    /* borrowed, not kept: freed before the planner runs */
    json_decref(a);
    json_decref(p);
    return ds;
}

static enum brk_err
plan_err(const char *agent, const char *perms)
{
    json_t *a = jq(agent), *p = perms ? jq(perms) : NULL;
    struct dirsync *ds = (struct dirsync *)(uintptr_t)0x5a5a;
    enum brk_err err = dirsync_new(a, p, &ds);

    assert_ptr_equal(ds, (struct dirsync *)(uintptr_t)0x5a5a);
    json_decref(a);
    json_decref(p);
    return err;
}

/* The result equals the expected parents, users and tags (tags' values
 * compared as JSON). */
static void
expect_result(const struct dirsync *ds, const char *parents, const char *users,
              const char *tags)
{
    struct dir_pairs p = {0};
    json_t *u = NULL, *t = NULL, *got_p, *got_t, *want;
    struct vrange *vr = NULL;
    const char *k;
    json_t *v;
    size_t i;

    assert_true(dirsync_done(ds));
    assert_int_equal(dirsync_result(ds, &p, &u, &t), BRK_OK);
    got_p = json_object();
    for (i = 0; i < p.n; i++) {
        /* ascending, no repeats */
        if (i > 0)
            assert_true(strtoul(p.field[i - 1], NULL, 10) <
                        strtoul(p.field[i], NULL, 10));
        json_object_set_new(got_p, p.field[i], json_string(p.value[i]));
    }
    want = jq(parents);
    assert_true(json_equal(got_p, want));
    json_decref(want);
    want = jq(users);
    assert_true(json_equal(u, want));
    json_decref(want);
    got_t = json_object();
    json_object_foreach(t, k, v)
    {
        assert_true(json_is_string(v));
        json_object_set_new(got_t, k,
                            json_loads(json_string_value(v), 0, NULL));
    }
    want = jq(tags);
    assert_true(json_equal(got_t, want));
    json_decref(want);
    /* the visible-range resolver takes the result as it is */
    want = jq("{}");
    assert_int_equal(vrange_build(want, got_p, u, t, &vr), BRK_OK);
    vrange_free(vr);
    json_decref(want);
    json_decref(got_p);
    json_decref(got_t);
    json_decref(u);
    json_decref(t);
    dir_pairs_free(&p);
}

static const char perm_read[] = "{'app_permissions':['contact:base:base']}";

/*---- Grant shapes ----*/

/* Contacts read-only, a range of one department without corp_arch:
 * department/simplelist returns the range's subtree. */
static const char party_agent[] =
    "{'agentid':1000,'auth_mode':0,'privilege':{'level':1,"
    "'allow_party':[2],'allow_user':[],'allow_tag':[],'extra_party':[],"
    "'extra_user':[],'extra_tag':[]}}";

static json_t *
party_fake(void)
{
    json_t *f = json_object();

    fake_add(f, "GET /cgi-bin/department/simplelist",
             "{'errcode':0,'errmsg':'ok','department_id':["
             "{'id':2,'parentid':1,'order':1},{'id':3,'parentid':2},"
             "{'id':4,'parentid':3,'order':7}]}");
    fake_add(f, "GET /cgi-bin/user/simplelist?department_id=2",
             "{'errcode':0,'errmsg':'ok','userlist':["
             "{'userid':'u1','name':'u1','department':[2,4],"
             "'open_userid':'o1'},"
             "{'userid':'u2','name':'u2','department':[2,77],"
             "'open_userid':'o2'}]}");
    fake_add(f, "GET /cgi-bin/user/simplelist?department_id=3",
             "{'errcode':0,'errmsg':'ok','userlist':[]}");
    fake_add(f, "GET /cgi-bin/user/simplelist?department_id=4",
             "{'errcode':0,'errmsg':'ok','userlist':["
             "{'userid':'u1','department':[4,2]},"
             "{'userid':'u3','department':[4]},"
             "{'userid':'u9','department':[77]}]}");
    /* what a read-only app must never be asked for */
    fake_err(f, "POST /cgi-bin/user/list_id {\"limit\":10000}", 48002);
    return f;
}

static const char *const party_log[] = {
    "GET /cgi-bin/department/simplelist",
    "GET /cgi-bin/user/simplelist?department_id=2",
    "GET /cgi-bin/user/simplelist?department_id=3",
    "GET /cgi-bin/user/simplelist?department_id=4",
};

static void
test_read_only_party_range(void **state)
{
    struct dirsync *ds = plan_new(party_agent, perm_read);
    json_t *f = party_fake();

    (void)state;
    assert_string_equal(dirsync_plan(ds), "contacts");
    assert_int_equal(drive(ds, f, 0), BRK_OK);
    expect_log(party_log, nitems(party_log));
    assert_int_equal(dirsync_calls(ds), 4);
    /* u2's department 77 and u9 (only in 77) are outside the plan */
    expect_result(ds, "{'2':'1','3':'2','4':'3'}",
                  "{'u1':'2,4','u2':'2','u3':'4'}", "{}");
    dirsync_free(ds);
    json_decref(f);
}

/* Answering in another order gives the same directory. */
static void
test_answer_order_irrelevant(void **state)
{
    struct dirsync *ds = plan_new(party_agent, perm_read);
    json_t *f = party_fake();

    (void)state;
    assert_int_equal(drive(ds, f, 1), BRK_OK);
    assert_int_equal(nlog, 4);
    expect_result(ds, "{'2':'1','3':'2','4':'3'}",
                  "{'u1':'2,4','u2':'2','u3':'4'}", "{}");
    dirsync_free(ds);
    json_decref(f);
}

/* Edit authorization takes the same path: never user/list_id. */
static void
test_edit_grant_same_path(void **state)
{
    static const char agent[] =
        "{'auth_mode':0,'privilege':{'level':3,'allow_party':[2]}}";
    struct dirsync *ds =
        plan_new(agent, "{'app_permissions':['contact:edit:all']}");
    json_t *f = party_fake();

    (void)state;
    assert_string_equal(dirsync_plan(ds), "contacts");
    assert_int_equal(drive(ds, f, 0), BRK_OK);
    expect_log(party_log, nitems(party_log));
    expect_result(ds, "{'2':'1','3':'2','4':'3'}",
                  "{'u1':'2,4','u2':'2','u3':'4'}", "{}");
    dirsync_free(ds);
    json_decref(f);
}

/*
 * With corp_arch, department/simplelist returns the whole corp:
 *
 *   1 -+- 2 -- 4          range: 3 (allow_party) and 8 (extra_party)
 *      +- 3 -- 5 -- 6
 *      +- 7 -- 8
 *      `- 9
 *
 * Only 3, 5, 6 and 8 are kept and listed.
 */
static const char arch_agent[] =
    "{'auth_mode':0,'privilege':{'level':1,'allow_party':[3],"
    "'extra_party':[8]}}";
static const char arch_perms[] =
    "{'app_permissions':['contact:base:base','corp_arch:base:base']}";

static json_t *
arch_fake(void)
{
    json_t *f = json_object();

    fake_add(f, "GET /cgi-bin/department/simplelist",
             "{'errcode':0,'department_id':[{'id':1,'parentid':0},"
             "{'id':9,'parentid':1},{'id':2,'parentid':1},"
             "{'id':3,'parentid':1},{'id':4,'parentid':2},"
             "{'id':5,'parentid':3},{'id':6,'parentid':5},"
             "{'id':7,'parentid':1},{'id':8,'parentid':7}]}");
    fake_add(f, "GET /cgi-bin/user/simplelist?department_id=3",
             "{'errcode':0,'userlist':[{'userid':'a','department':[3]}]}");
    fake_add(f, "GET /cgi-bin/user/simplelist?department_id=5",
             "{'errcode':0,'userlist':[{'userid':'b','department':[5,2]}]}");
    fake_add(f, "GET /cgi-bin/user/simplelist?department_id=6",
             "{'errcode':0,'userlist':[{'userid':'c','department':[6,8]}]}");
    fake_add(f, "GET /cgi-bin/user/simplelist?department_id=8",
             "{'errcode':0,'userlist':[{'userid':'c','department':[8,6]},"
             "{'userid':'d','department':[8,1]}]}");
    return f;
}

static void
test_corp_arch_keeps_range_subtrees(void **state)
{
    static const char *const want[] = {
        "GET /cgi-bin/department/simplelist",
        "GET /cgi-bin/user/simplelist?department_id=3",
        "GET /cgi-bin/user/simplelist?department_id=5",
        "GET /cgi-bin/user/simplelist?department_id=6",
        "GET /cgi-bin/user/simplelist?department_id=8",
    };
    struct dirsync *ds = plan_new(arch_agent, arch_perms);
    json_t *f = arch_fake();

    (void)state;
    assert_int_equal(drive(ds, f, 0), BRK_OK);
    expect_log(want, nitems(want));
    expect_result(ds, "{'3':'1','5':'3','6':'5','8':'7'}",
                  "{'a':'3','b':'5','c':'6,8','d':'8'}", "{}");
    dirsync_free(ds);
    json_decref(f);
}

/* A range of members only: each named member through user/get, in the
 * order named, its userid percent-encoded; one that left is skipped, one
 * reporting no department stays out of the users map. */
static void
test_members_only_range(void **state)
{
    static const char agent[] =
        "{'auth_mode':0,'privilege':{'level':1,'allow_party':[],"
        "'allow_user':['alice','bob','wo+x/y&z'],'extra_user':['carol',"
        "'alice']}}";
    static const char *const want[] = {
        "GET /cgi-bin/department/simplelist",
        "GET /cgi-bin/user/get?userid=alice",
        "GET /cgi-bin/user/get?userid=bob",
        "GET /cgi-bin/user/get?userid=wo%2Bx%2Fy%26z",
        "GET /cgi-bin/user/get?userid=carol",
    };
    struct dirsync *ds = plan_new(agent, perm_read);
    json_t *f = json_object();

    (void)state;
    fake_add(f, "GET /cgi-bin/department/simplelist",
             "{'errcode':0,'department_id':[]}");
    fake_add(f, "GET /cgi-bin/user/get?userid=alice",
             "{'errcode':0,'userid':'alice','name':'alice',"
             "'department':[2,1,2],'open_userid':'oa'}");
    fake_err(f, "GET /cgi-bin/user/get?userid=bob", 60111);
    fake_add(f, "GET /cgi-bin/user/get?userid=wo%2Bx%2Fy%26z",
             "{'errcode':0,'department':[5]}");
    fake_add(f, "GET /cgi-bin/user/get?userid=carol",
             "{'errcode':0,'department':[]}");
    assert_int_equal(drive(ds, f, 0), BRK_OK);
    expect_log(want, nitems(want));
    expect_result(ds, "{}", "{'alice':'1,2','wo+x/y&z':'5'}", "{}");
    dirsync_free(ds);
    json_decref(f);
}

/*
 * A range of tags only: the tags' departments join the plan after the
 * tags are answered, so every department call comes after every tag call;
 * a tag member not seen in a department is read with user/get.
 */
static const char tags_agent[] =
    "{'auth_mode':0,'privilege':{'level':1,'allow_tag':[20,10],"
    "'extra_tag':[10]}}";

static json_t *
tags_fake(void)
{
    json_t *f = json_object();

    fake_add(f, "GET /cgi-bin/department/simplelist",
             "{'errcode':0,'department_id':[{'id':4,'parentid':1},"
             "{'id':6,'parentid':4}]}");
    fake_add(f, "GET /cgi-bin/tag/get?tagid=10",
             "{'errcode':0,'tagname':'t10','userlist':[{'userid':'x'}],"
             "'partylist':[4]}");
    fake_add(f, "GET /cgi-bin/tag/get?tagid=20",
             "{'errcode':0,'tagname':'t20','userlist':[{'userid':'y'},"
             "{'userid':'x'}],'partylist':[]}");
    fake_add(f, "GET /cgi-bin/user/simplelist?department_id=4",
             "{'errcode':0,'userlist':[]}");
    fake_add(f, "GET /cgi-bin/user/simplelist?department_id=6",
             "{'errcode':0,'userlist':[{'userid':'y','department':[6]}]}");
    fake_add(f, "GET /cgi-bin/user/get?userid=x",
             "{'errcode':0,'department':[9]}");
    return f;
}

static const char *const tags_log[] = {
    "GET /cgi-bin/department/simplelist",
    "GET /cgi-bin/tag/get?tagid=10",
    "GET /cgi-bin/tag/get?tagid=20",
    "GET /cgi-bin/user/simplelist?department_id=4",
    "GET /cgi-bin/user/simplelist?department_id=6",
    "GET /cgi-bin/user/get?userid=x",
};

static void
test_tags_only_range(void **state)
{
    struct dirsync *ds = plan_new(tags_agent, perm_read);
    json_t *f = tags_fake();

    (void)state;
    assert_int_equal(drive(ds, f, 0), BRK_OK);
    expect_log(tags_log, nitems(tags_log));
    assert_int_equal(peak, 3); /* the tree and both tags together */
    expect_result(ds, "{'4':'1','6':'4'}", "{'y':'6','x':'9'}",
                  "{'10':{'users':['x'],'parties':[4]},"
                  "'20':{'users':['y','x'],'parties':[]}}");
    dirsync_free(ds);
    json_decref(f);
}

/* Member-authorized: list_member_auth pages by cursor; rows with
 * open_userid only, userid only or both; then the named members. */
static const char mauth_agent[] =
    "{'auth_mode':1,'privilege':{'level':1,'allow_user':['m9','o1']}}";

static json_t *
mauth_fake(void)
{
    json_t *f = json_object();

    fake_add(f, "POST /cgi-bin/user/list_member_auth {\"limit\":1000}",
             "{'errcode':0,'member_auth_list':[{'open_userid':'o1'},"
             "{'open_userid':'o2','userid':null}],'next_cursor':'c1'}");
    fake_add(f,
             "POST /cgi-bin/user/list_member_auth "
             "{\"cursor\":\"c1\",\"limit\":1000}",
             "{'errcode':0,'member_auth_list':[{'userid':'u3',"
             "'open_userid':'o3'},{'userid':'u4'}],'next_cursor':'c\\\"2'}");
    fake_add(f,
             "POST /cgi-bin/user/list_member_auth "
             "{\"cursor\":\"c\\\"2\",\"limit\":1000}",
             "{'errcode':0,'member_auth_list':[],'next_cursor':''}");
    fake_add(f, "GET /cgi-bin/user/get?userid=m9",
             "{'errcode':0,'department':[1]}");
    return f;
}

static void
test_member_authorized(void **state)
{
    static const char *const want[] = {
        "POST /cgi-bin/user/list_member_auth {\"limit\":1000}",
        "POST /cgi-bin/user/list_member_auth {\"cursor\":\"c1\",\"limit\":"
        "1000}",
        "POST /cgi-bin/user/list_member_auth {\"cursor\":\"c\\\"2\","
        "\"limit\":1000}",
        "GET /cgi-bin/user/get?userid=m9",
    };
    struct dirsync *ds = plan_new(mauth_agent, perm_read);
    json_t *f = mauth_fake();

    (void)state;
    assert_string_equal(dirsync_plan(ds), "member_auth");
    assert_int_equal(drive(ds, f, 0), BRK_OK);
    expect_log(want, nitems(want));
    assert_int_equal(peak, 1); /* pages one at a time */
    expect_result(ds, "{}", "{'o1':'1','o2':'1','u3':'1','u4':'1','m9':'1'}",
                  "{}");
    dirsync_free(ds);
    json_decref(f);
}

/* Member-authorized without contacts permission: the pages only. */
static void
test_member_authorized_no_contacts(void **state)
{
    struct dirsync *ds = plan_new(mauth_agent, "{'app_permissions':[]}");
    json_t *f = mauth_fake();

    (void)state;
    assert_int_equal(drive(ds, f, 0), BRK_OK);
    assert_int_equal(nlog, 3);
    expect_result(ds, "{}", "{'o1':'1','o2':'1','u3':'1','u4':'1'}", "{}");
    dirsync_free(ds);
    json_decref(f);
}

/* External contacts only: no call at all; the range's departments. */
static void
test_external_contacts_only(void **state)
{
    static const char agent[] =
        "{'auth_mode':0,'privilege':{'allow_party':[3,2,3],"
        "'allow_user':['u1'],'allow_tag':[5],'extra_party':null}}";
    struct dirsync *ds =
        plan_new(agent, "{'app_permissions':['externalcontact:base:base']}");
    json_t *f = json_object();

    (void)state;
    assert_string_equal(dirsync_plan(ds), "range_only");
    assert_true(dirsync_done(ds));
    assert_int_equal(drive(ds, f, 0), BRK_OK);
    assert_int_equal(nlog, 0);
    expect_result(ds, "{'2':'0','3':'0'}", "{}", "{}");
    dirsync_free(ds);
    json_decref(f);
}

/* Without a permissions reply, privilege.level decides. */
static void
test_level_without_permissions(void **state)
{
    struct dirsync *ds;

    (void)state;
    ds = plan_new("{'privilege':{'level':1,'allow_party':[2]}}", NULL);
    assert_string_equal(dirsync_plan(ds), "contacts");
    dirsync_free(ds);
    ds = plan_new("{'privilege':{'level':4,'allow_party':[2]}}", NULL);
    assert_string_equal(dirsync_plan(ds), "range_only");
    dirsync_free(ds);
    /* the permission list wins over the level */
    ds = plan_new("{'privilege':{'level':1,'allow_party':[2]}}",
                  "{'app_permissions':['contact:base:single_user']}");
    assert_string_equal(dirsync_plan(ds), "range_only");
    dirsync_free(ds);
}

/*---- Flow control ----*/

/* Twenty departments: at most eight calls out; one answered frees one. */
static void
test_inflight_bound(void **state)
{
    char tree[4096], key[64];
    struct dirsync_call c[DIRSYNC_MAX_INFLIGHT], extra;
    struct dirsync *ds = plan_new(party_agent, perm_read);
    json_t *body, *empty = jq("{'userlist':[]}");
    size_t off, i;
    unsigned got = 0;

    (void)state;
    off = (size_t)snprintf(tree, sizeof(tree), "{'department_id':[");
    for (i = 0; i < 20; i++)
        off += (size_t)snprintf(tree + off, sizeof(tree) - off,
                                "%s{'id':%zu,'parentid':%d}", i ? "," : "",
                                i + 2, i ? 2 : 1);
    snprintf(tree + off, sizeof(tree) - off, "]}");
    body = jq(tree);
    assert_int_equal(dirsync_next(ds, &c[0]), BRK_OK);
    assert_string_equal(c[0].api, "department/simplelist");
    assert_string_equal(c[0].method, "GET");
    assert_null(c[0].body);
    /* nothing else until the tree is in */
    assert_int_equal(dirsync_next(ds, &extra), BRK_ERR_NOTFOUND);
    assert_int_equal(dirsync_reply(ds, c[0].id, body), BRK_OK);
    for (i = 0; i < DIRSYNC_MAX_INFLIGHT; i++) {
        assert_int_equal(dirsync_next(ds, &c[i]), BRK_OK);
        assert_string_equal(c[i].api, "user/simplelist");
        snprintf(key, sizeof(key), "/cgi-bin/user/simplelist?department_id=%zu",
                 i + 2);
        assert_string_equal(c[i].path_query, key);
    }
    assert_int_equal(dirsync_next(ds, &extra), BRK_ERR_NOTFOUND);
    assert_int_equal(dirsync_reply(ds, c[3].id, empty), BRK_OK);
    /* a second answer to the same id is refused and changes nothing */
    assert_int_equal(dirsync_reply(ds, c[3].id, empty), BRK_ERR_NOTFOUND);
    assert_int_equal(dirsync_error(ds, c[3].id, 60011), BRK_ERR_NOTFOUND);
    assert_int_equal(dirsync_reply(ds, 9999, empty), BRK_ERR_NOTFOUND);
    assert_int_equal(dirsync_status(ds), BRK_OK);
    assert_int_equal(dirsync_next(ds, &c[3]), BRK_OK);
    assert_string_equal(c[3].path_query,
                        "/cgi-bin/user/simplelist?department_id=10");
    assert_int_equal(dirsync_next(ds, &extra), BRK_ERR_NOTFOUND);
    /* the rest, answered as they come */
    for (;;) {
        for (i = 0; i < DIRSYNC_MAX_INFLIGHT; i++)
            if (c[i].id != 0) {
                assert_int_equal(dirsync_reply(ds, c[i].id, empty), BRK_OK);
                c[i].id = 0;
                got++;
                if (dirsync_next(ds, &c[i]) != BRK_OK)
                    c[i].id = 0;
            }
        for (i = 0; i < DIRSYNC_MAX_INFLIGHT && c[i].id == 0; i++)
            ;
        if (i == DIRSYNC_MAX_INFLIGHT)
            break;
    }
    assert_int_equal(got + 1, 20);
    assert_true(dirsync_done(ds));
    assert_int_equal(dirsync_calls(ds), 21);
    json_decref(body);
    json_decref(empty);
    dirsync_free(ds);
}

/* A cycle in the tree ends; a range department the tree lacks is not
 * listed; a result asked for too early is refused. */
static void
test_cycle_and_missing_root(void **state)
{
    static const char agent[] =
        "{'privilege':{'level':1,'allow_party':[2,50]}}";
    static const char *const want[] = {
        "GET /cgi-bin/department/simplelist",
        "GET /cgi-bin/user/simplelist?department_id=2",
        "GET /cgi-bin/user/simplelist?department_id=3",
    };
    struct dirsync *ds = plan_new(agent, perm_read);
    struct dir_pairs p = {0};
    json_t *f = json_object(), *u = NULL, *t = NULL;

    (void)state;
    assert_int_equal(dirsync_result(ds, &p, &u, &t), BRK_ERR_INVAL);
    assert_null(u);
    fake_add(f, "GET /cgi-bin/department/simplelist",
             "{'department_id':[{'id':2,'parentid':3},"
             "{'id':3,'parentid':2}]}");
    fake_add(f, "GET /cgi-bin/user/simplelist?department_id=2",
             "{'userlist':[]}");
    fake_add(f, "GET /cgi-bin/user/simplelist?department_id=3",
             "{'userlist':[]}");
    assert_int_equal(drive(ds, f, 0), BRK_OK);
    expect_log(want, nitems(want));
    expect_result(ds, "{'2':'3','3':'2'}", "{}", "{}");
    dirsync_free(ds);
    json_decref(f);
}

/*---- Error codes ----*/

/* Run the party scenario with one call answered by errcode. */
static enum brk_err
party_with_error(const char *key, long errcode, struct dirsync **out)
{
    struct dirsync *ds = plan_new(party_agent, perm_read);
    json_t *f = party_fake();
    enum brk_err err;

    fake_err(f, key, errcode);
    err = drive(ds, f, 0);
    json_decref(f);
    *out = ds;
    return err;
}

static void
expect_failed(struct dirsync *ds, enum brk_err err)
{
    struct dir_pairs p = {0};
    json_t *u = NULL, *t = NULL;
    struct dirsync_call c;

    assert_false(dirsync_done(ds));
    assert_int_equal(dirsync_status(ds), err);
    assert_int_equal(dirsync_next(ds, &c), err);
    assert_int_equal(dirsync_result(ds, &p, &u, &t), err);
    assert_null(u);
    assert_null(t);
    assert_int_equal(p.n, 0);
}

static void
test_department_gone_tolerated(void **state)
{
    static const long codes[] = {60003, 60123};
    struct dirsync *ds;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(codes); i++) {
        assert_int_equal(
            party_with_error("GET /cgi-bin/user/simplelist?department_id=3",
                             codes[i], &ds),
            BRK_OK);
        /* the deleted department leaves the parents */
        expect_result(ds, "{'2':'1','4':'3'}", "{'u1':'2,4','u2':'2','u3':'4'}",
                      "{}");
        dirsync_free(ds);
    }
}

static void
test_fatal_errcodes(void **state)
{
    static const struct {
        const char *key;
        long code;
    } cases[] = {
        {"GET /cgi-bin/user/simplelist?department_id=3", 60011},
        {"GET /cgi-bin/user/simplelist?department_id=3", 48002},
        {"GET /cgi-bin/user/simplelist?department_id=3", 45009},
        {"GET /cgi-bin/user/simplelist?department_id=3", -1},
        {"GET /cgi-bin/department/simplelist", 60011},
        {"GET /cgi-bin/department/simplelist", 48002},
        {"GET /cgi-bin/department/simplelist", 60123},
    };
    struct dirsync *ds;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(cases); i++) {
        assert_int_equal(party_with_error(cases[i].key, cases[i].code, &ds),
                         BRK_ERR_WECOM);
        expect_failed(ds, BRK_ERR_WECOM);
        dirsync_free(ds);
    }
}

static void
test_member_errcodes(void **state)
{
    static const struct {
        long code;
        enum brk_err want;
    } cases[] = {
        {60111, BRK_OK},        {60011, BRK_OK},        {40003, BRK_ERR_WECOM},
        {48002, BRK_ERR_WECOM}, {60123, BRK_ERR_WECOM}, {-1, BRK_ERR_WECOM},
    };
    static const char agent[] =
        "{'privilege':{'level':1,'allow_user':['gone','kept']}}";
    struct dirsync *ds;
    json_t *f;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(cases); i++) {
        ds = plan_new(agent, perm_read);
        f = json_object();
        fake_add(f, "GET /cgi-bin/department/simplelist",
                 "{'department_id':[]}");
        fake_err(f, "GET /cgi-bin/user/get?userid=gone", cases[i].code);
        fake_add(f, "GET /cgi-bin/user/get?userid=kept", "{'department':[3]}");
        assert_int_equal(drive(ds, f, 0), cases[i].want);
        if (cases[i].want == BRK_OK)
            expect_result(ds, "{}", "{'kept':'3'}", "{}");
        else
            expect_failed(ds, cases[i].want);
        dirsync_free(ds);
        json_decref(f);
    }
}

static void
test_tag_errcodes(void **state)
{
    struct dirsync *ds;
    json_t *f;

    (void)state;
    /* a deleted tag: no entry, the rest of the directory whole */
    ds = plan_new(tags_agent, perm_read);
    f = tags_fake();
    fake_err(f, "GET /cgi-bin/tag/get?tagid=20", 40068);
    assert_int_equal(drive(ds, f, 0), BRK_OK);
    expect_result(ds, "{'4':'1','6':'4'}", "{'y':'6','x':'9'}",
                  "{'10':{'users':['x'],'parties':[4]}}");
    dirsync_free(ds);
    json_decref(f);
    /* a tag the app may not read fails the sync */
    ds = plan_new(tags_agent, perm_read);
    f = tags_fake();
    fake_err(f, "GET /cgi-bin/tag/get?tagid=20", 60011);
    assert_int_equal(drive(ds, f, 0), BRK_ERR_WECOM);
    expect_failed(ds, BRK_ERR_WECOM);
    dirsync_free(ds);
    json_decref(f);
}

static void
test_page_errcode_fatal(void **state)
{
    struct dirsync *ds = plan_new(mauth_agent, perm_read);
    json_t *f = mauth_fake();

    (void)state;
    fake_err(f,
             "POST /cgi-bin/user/list_member_auth "
             "{\"cursor\":\"c1\",\"limit\":1000}",
             48002);
    assert_int_equal(drive(ds, f, 0), BRK_ERR_WECOM);
    expect_failed(ds, BRK_ERR_WECOM);
    dirsync_free(ds);
    json_decref(f);
}

/*---- Malformed replies ----*/

struct bad {
    const char *key;
    const char *reply;
    enum brk_err want;
};

static void
run_bad(const char *agent, json_t *(*fake)(void), const struct bad *cases,
        size_t n)
{
    struct dirsync *ds;
    json_t *f;
    size_t i;

    for (i = 0; i < n; i++) {
        ds = plan_new(agent, perm_read);
        f = fake();
        fake_add(f, cases[i].key, cases[i].reply);
        if (drive(ds, f, 0) != cases[i].want)
            fail_msg("case %zu (%s): %s, not %s", i, cases[i].reply,
                     brk_strerror(dirsync_status(ds)),
                     brk_strerror(cases[i].want));
        expect_failed(ds, cases[i].want);
        dirsync_free(ds);
        json_decref(f);
    }
}

static void
test_malformed_tree(void **state)
{
    static const char k[] = "GET /cgi-bin/department/simplelist";
    static const struct bad cases[] = {
        {k, "{'errcode':0}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'department_id':{}}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'department_id':[2]}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'department_id':[{'parentid':1}]}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'department_id':[{'id':'2','parentid':1}]}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'department_id':[{'id':2.0,'parentid':1}]}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'department_id':[{'id':-2,'parentid':1}]}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'department_id':[{'id':0,'parentid':1}]}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'department_id':[{'id':4294967296,'parentid':1}]}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'department_id':[{'id':2,'parentid':'1'}]}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'department_id':[{'id':2,'parentid':-1}]}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'department_id':[{'id':2,'parentid':1},{'id':2,'parentid':3}]}",
         BRK_ERR_UPSTREAM_BAD},
    };

    (void)state;
    run_bad(party_agent, party_fake, cases, nitems(cases));
}

static void
test_malformed_members(void **state)
{
    static const char k[] = "GET /cgi-bin/user/simplelist?department_id=3";
    static const struct bad cases[] = {
        {k, "{'errcode':0}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':{}}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':['u1']}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[{'department':[3]}]}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[{'userid':7,'department':[3]}]}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[{'userid':'','department':[3]}]}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[{'userid':'a,b','department':[3]}]}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[{'userid':'a b','department':[3]}]}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[{'userid':'a\\u0000b','department':[3]}]}",
         BRK_ERR_UPSTREAM_BAD},
        {k,
         "{'userlist':[{'userid':'"
         "0123456789012345678901234567890123456789012345678901234567890123"
         "4','department':[3]}]}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[{'userid':'u5'}]}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[{'userid':'u5','department':3}]}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[{'userid':'u5','department':['3']}]}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[{'userid':'u5','department':[4294967296]}]}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[{'userid':'u5','department':[0]}]}",
         BRK_ERR_UPSTREAM_BAD},
    };

    (void)state;
    run_bad(party_agent, party_fake, cases, nitems(cases));
}

static void
test_malformed_tags(void **state)
{
    static const char k[] = "GET /cgi-bin/tag/get?tagid=20";
    static const struct bad cases[] = {
        {k, "{'partylist':[]}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[]}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':null,'partylist':[]}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':['y'],'partylist':[]}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[{'userid':'a,b'}],'partylist':[]}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[],'partylist':['4']}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[],'partylist':[-4]}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'userlist':[],'partylist':[8589934592]}", BRK_ERR_UPSTREAM_BAD},
    };

    (void)state;
    run_bad(tags_agent, tags_fake, cases, nitems(cases));
}

static void
test_malformed_user_get(void **state)
{
    static const char k[] = "GET /cgi-bin/user/get?userid=x";
    static const struct bad cases[] = {
        {k, "{'userid':'x'}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'department':null}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'department':[1,'2']}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'department':[1,true]}", BRK_ERR_UPSTREAM_BAD},
    };

    (void)state;
    run_bad(tags_agent, tags_fake, cases, nitems(cases));
}

static void
test_malformed_pages(void **state)
{
    static const char k[] =
        "POST /cgi-bin/user/list_member_auth {\"cursor\":\"c1\",\"limit\":"
        "1000}";
    static const struct bad cases[] = {
        {k, "{'next_cursor':''}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'member_auth_list':{}}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'member_auth_list':['u1']}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'member_auth_list':[{}]}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'member_auth_list':[{'name':'x'}]}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'member_auth_list':[{'userid':5,'open_userid':'o'}]}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'member_auth_list':[{'open_userid':'o,p'}]}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'member_auth_list':[],'next_cursor':5}", BRK_ERR_UPSTREAM_BAD},
        {k, "{'member_auth_list':[],'next_cursor':'a b'}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'member_auth_list':[],'next_cursor':'a\\u0000b'}",
         BRK_ERR_UPSTREAM_BAD},
        {k, "{'member_auth_list':[],'next_cursor':'\\u00e9'}",
         BRK_ERR_UPSTREAM_BAD},
        /* a cursor that repeats would page forever */
        {k, "{'member_auth_list':[],'next_cursor':'c1'}", BRK_ERR_UPSTREAM_BAD},
    };

    (void)state;
    run_bad(mauth_agent, mauth_fake, cases, nitems(cases));
}

/* A reply that is not an object. */
static void
test_reply_not_object(void **state)
{
    struct dirsync *ds = plan_new(party_agent, perm_read);
    struct dirsync_call c;
    json_t *arr = json_array();

    (void)state;
    assert_int_equal(dirsync_next(ds, &c), BRK_OK);
    assert_int_equal(dirsync_reply(ds, c.id, arr), BRK_ERR_UPSTREAM_BAD);
    expect_failed(ds, BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(dirsync_reply(ds, c.id, arr), BRK_ERR_NOTFOUND);
    json_decref(arr);
    dirsync_free(ds);
}

/* A cursor loop longer than one page: c1 -> c2 -> c1. */
static void
test_cursor_loop(void **state)
{
    struct dirsync *ds = plan_new(mauth_agent, perm_read);
    json_t *f = json_object();

    (void)state;
    fake_add(f, "POST /cgi-bin/user/list_member_auth {\"limit\":1000}",
             "{'member_auth_list':[{'open_userid':'o1'}],'next_cursor':'c1'}");
    fake_add(f,
             "POST /cgi-bin/user/list_member_auth "
             "{\"cursor\":\"c1\",\"limit\":1000}",
             "{'member_auth_list':[{'open_userid':'o2'}],'next_cursor':'c2'}");
    fake_add(f,
             "POST /cgi-bin/user/list_member_auth "
             "{\"cursor\":\"c2\",\"limit\":1000}",
             "{'member_auth_list':[{'open_userid':'o3'}],'next_cursor':'c1'}");
    assert_int_equal(drive(ds, f, 0), BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(nlog, 3);
    expect_failed(ds, BRK_ERR_UPSTREAM_BAD);
    dirsync_free(ds);
    json_decref(f);
}

/* Pages past DIRSYNC_MAX_PAGES, each cursor new, end the sync. */
static void
test_too_many_pages(void **state)
{
    struct dirsync *ds = plan_new(mauth_agent, perm_read);
    struct dirsync_call c;
    json_t *page;
    char cur[32];
    unsigned i;
    enum brk_err err = BRK_OK;

    (void)state;
    for (i = 0; i < DIRSYNC_MAX_PAGES + 5 && !err; i++) {
        assert_int_equal(dirsync_next(ds, &c), BRK_OK);
        assert_string_equal(c.api, "user/list_member_auth");
        assert_string_equal(c.method, "POST");
        snprintf(cur, sizeof(cur), "p%u", i);
        page = json_pack("{s:[], s:s}", "member_auth_list", "next_cursor", cur);
        err = dirsync_reply(ds, c.id, page);
        json_decref(page);
    }
    assert_int_equal(err, BRK_ERR_TOOBIG);
    assert_int_equal(i, DIRSYNC_MAX_PAGES);
    expect_failed(ds, BRK_ERR_TOOBIG);
    dirsync_free(ds);
}

/* A cursor of DIRSYNC_CURSOR_MAX bytes is sent back; one more is not. */
static void
test_cursor_length(void **state)
{
    char cur[DIRSYNC_CURSOR_MAX + 2], want[DIRSYNC_CURSOR_MAX + 64];
    struct dirsync *ds;
    struct dirsync_call c;
    json_t *page;
    int longer;

    (void)state;
    for (longer = 0; longer <= 1; longer++) {
        ds = plan_new(mauth_agent, perm_read);
        memset(cur, 'A', sizeof(cur));
        cur[DIRSYNC_CURSOR_MAX + longer] = '\0';
        assert_int_equal(dirsync_next(ds, &c), BRK_OK);
        page = json_pack("{s:[], s:s}", "member_auth_list", "next_cursor", cur);
        assert_int_equal(dirsync_reply(ds, c.id, page),
                         longer ? BRK_ERR_UPSTREAM_BAD : BRK_OK);
        json_decref(page);
        if (!longer) {
            assert_int_equal(dirsync_next(ds, &c), BRK_OK);
            snprintf(want, sizeof(want), "{\"cursor\":\"%s\",\"limit\":1000}",
                     cur);
            assert_string_equal(c.body, want);
        }
        dirsync_free(ds);
    }
}

/* Bounds: departments in the tree, departments of one member. */
static void
test_bounds(void **state)
{
    static const char agent[] = "{'privilege':{'level':1,'allow_party':[]}}";
    struct dirsync *ds;
    struct dirsync_call c;
    json_t *tree, *arr, *row;
    size_t i;

    (void)state;
    /* DIRSYNC_MAX_DEPARTMENTS is fine, one more is not */
    arr = json_array();
    for (i = 1; i <= DIRSYNC_MAX_DEPARTMENTS; i++)
        json_array_append_new(arr, json_pack("{s:I, s:I}", "id", (json_int_t)i,
                                             "parentid", (json_int_t)(i / 2)));
    tree = json_pack("{s:O}", "department_id", arr);
    ds = plan_new(agent, perm_read);
    assert_int_equal(dirsync_next(ds, &c), BRK_OK);
    assert_int_equal(dirsync_reply(ds, c.id, tree), BRK_OK);
    assert_true(dirsync_done(ds));
    dirsync_free(ds);
    json_array_append_new(arr,
                          json_pack("{s:I, s:I}", "id", (json_int_t)(i + 1),
                                    "parentid", (json_int_t)1));
    ds = plan_new(agent, perm_read);
    assert_int_equal(dirsync_next(ds, &c), BRK_OK);
    assert_int_equal(dirsync_reply(ds, c.id, tree), BRK_ERR_TOOBIG);
    expect_failed(ds, BRK_ERR_TOOBIG);
    dirsync_free(ds);
    json_decref(tree);
    json_decref(arr);

    /* a member in more than DIRSYNC_MAX_MEMBER_DEPTS departments */
    ds = plan_new("{'privilege':{'level':1,'allow_user':['x']}}", perm_read);
    assert_int_equal(dirsync_next(ds, &c), BRK_OK);
    tree = jq("{'department_id':[]}");
    assert_int_equal(dirsync_reply(ds, c.id, tree), BRK_OK);
    json_decref(tree);
    assert_int_equal(dirsync_next(ds, &c), BRK_OK);
    assert_string_equal(c.path_query, "/cgi-bin/user/get?userid=x");
    arr = json_array();
    for (i = 1; i <= DIRSYNC_MAX_MEMBER_DEPTS + 1; i++)
        json_array_append_new(arr, json_integer((json_int_t)i));
    row = json_pack("{s:O}", "department", arr);
    assert_int_equal(dirsync_reply(ds, c.id, row), BRK_ERR_UPSTREAM_BAD);
    json_decref(row);
    json_decref(arr);
    dirsync_free(ds);
}

/*---- The grant ----*/

static void
test_new_refuses_bad_grant(void **state)
{
    static const struct {
        const char *agent, *perms;
        enum brk_err want;
    } cases[] = {
        {"[]", NULL, BRK_ERR_UPSTREAM_BAD},
        {"{}", NULL, BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':[]}", NULL, BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':{},'auth_mode':2}", NULL, BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':{},'auth_mode':-1}", NULL, BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':{},'auth_mode':'1'}", NULL, BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':{'level':'1'}}", NULL, BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':{'allow_party':2}}", NULL, BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':{'allow_party':['2']}}", NULL, BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':{'allow_party':[0]}}", NULL, BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':{'extra_party':[4294967296]}}", NULL,
         BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':{'allow_tag':[1.5]}}", NULL, BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':{'extra_tag':{}}}", NULL, BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':{'allow_user':[1]}}", NULL, BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':{'extra_user':['a,b']}}", NULL, BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':{}}", "[]", BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':{}}", "{'app_permissions':'contact:base:base'}",
         BRK_ERR_UPSTREAM_BAD},
        {"{'privilege':{}}", "{'app_permissions':[1]}", BRK_ERR_UPSTREAM_BAD},
    };
    size_t i;

    (void)state;
    for (i = 0; i < nitems(cases); i++)
        if (plan_err(cases[i].agent, cases[i].perms) != cases[i].want)
            fail_msg("case %zu: %s", i, cases[i].agent);
}

static void
test_new_bounds(void **state)
{
    json_t *priv = json_array(), *agent;
    struct dirsync *ds = NULL;
    size_t i;

    (void)state;
    for (i = 1; i <= DIRSYNC_MAX_TAGS + 1; i++)
        json_array_append_new(priv, json_integer((json_int_t)i));
    agent = json_pack("{s:{s:O}}", "privilege", "allow_tag", priv);
    assert_int_equal(dirsync_new(agent, NULL, &ds), BRK_ERR_TOOBIG);
    assert_null(ds);
    json_decref(agent);
    agent = json_pack("{s:{s:O}}", "privilege", "allow_party", priv);
    assert_int_equal(dirsync_new(agent, NULL, &ds), BRK_ERR_TOOBIG);
    assert_null(ds);
    json_decref(agent);
    json_decref(priv);
}

/*---- Size ----*/

#define BIG_DEPTS   5000
#define BIG_PER_DEP 20

static json_t *
big_row(long m, long d1, long d2)
{
    char uid[24];

    snprintf(uid, sizeof(uid), "u%ld", m);
    return d2 ? json_pack("{s:s, s:[I, I]}", "userid", uid, "department",
                          (json_int_t)d1, (json_int_t)d2)
              : json_pack("{s:s, s:[I]}", "userid", uid, "department",
                          (json_int_t)d1);
}

/* The members of department d: its own 20 (every tenth also in the next
 * department) and the tenth ones of the department before it. */
static json_t *
big_members(long d)
{
    json_t *rows = json_array();
    long m, k, prev = d == 1 ? BIG_DEPTS : d - 1;

    for (k = 0; k < BIG_PER_DEP; k++) {
        m = (d - 1) * BIG_PER_DEP + k;
        json_array_append_new(
            rows, big_row(m, d, k % 10 == 0 ? d % BIG_DEPTS + 1 : 0));
    }
    for (k = 0; k < BIG_PER_DEP; k += 10)
        json_array_append_new(rows,
                              big_row((prev - 1) * BIG_PER_DEP + k, prev, d));
    return json_pack("{s:o}", "userlist", rows);
}

/* 5,000 departments and 100,000 members: one call per department, eight
 * at a time, every member with both departments. */
static void
test_size_5000_departments(void **state)
{
    struct dirsync *ds =
        plan_new("{'privilege':{'level':1,'allow_party':[1]}}", perm_read);
    struct dirsync_call c[DIRSYNC_MAX_INFLIGHT];
    struct dir_pairs p = {0};
    json_t *tree = json_array(), *body, *u = NULL, *t = NULL;
    size_t n = 0, most = 0;
    long d;

    (void)state;
    for (d = 1; d <= BIG_DEPTS; d++)
        json_array_append_new(tree, json_pack("{s:I, s:I}", "id", (json_int_t)d,
                                              "parentid", (json_int_t)(d / 2)));
    body = json_pack("{s:o}", "department_id", tree);
    assert_int_equal(dirsync_next(ds, &c[0]), BRK_OK);
    assert_int_equal(dirsync_reply(ds, c[0].id, body), BRK_OK);
    json_decref(body);
    for (;;) {
        while (n < DIRSYNC_MAX_INFLIGHT && dirsync_next(ds, &c[n]) == BRK_OK)
            n++;
        if (n > most)
            most = n;
        if (n == 0)
            break;
        n--;
        assert_int_equal(sscanf(c[n].path_query,
                                "/cgi-bin/user/simplelist?department_id=%ld",
                                &d),
                         1);
        body = big_members(d);
        assert_int_equal(dirsync_reply(ds, c[n].id, body), BRK_OK);
        json_decref(body);
    }
    assert_int_equal(most, DIRSYNC_MAX_INFLIGHT);
    assert_true(dirsync_done(ds));
    assert_int_equal(dirsync_calls(ds), BIG_DEPTS + 1);
    assert_int_equal(dirsync_result(ds, &p, &u, &t), BRK_OK);
    assert_int_equal(p.n, BIG_DEPTS);
    assert_int_equal(json_object_size(u), BIG_DEPTS * BIG_PER_DEP);
    assert_string_equal(json_string_value(json_object_get(u, "u0")), "1,2");
    assert_string_equal(json_string_value(json_object_get(u, "u1")), "1");
    assert_string_equal(json_string_value(json_object_get(u, "u99980")),
                        "1,5000");
    assert_int_equal(json_object_size(t), 0);
    dir_pairs_free(&p);
    json_decref(u);
    json_decref(t);
    dirsync_free(ds);
}

/*---- Allocation failures ----*/

struct scenario {
    const char *agent, *perms;
    json_t *(*fake)(void);
    unsigned min_allocs;
};

/* A composite grant: corp_arch tree, tags, named members. */
static const char mixed_agent[] =
    "{'auth_mode':0,'privilege':{'level':1,'allow_party':[3],"
    "'extra_party':[8],'allow_tag':[10],'allow_user':['m1','b']}}";

static json_t *
mixed_fake(void)
{
    json_t *f = arch_fake();

    fake_add(f, "GET /cgi-bin/tag/get?tagid=10",
             "{'userlist':[{'userid':'t1'},{'userid':'a'}],'partylist':[4]}");
    fake_add(f, "GET /cgi-bin/user/simplelist?department_id=4",
             "{'userlist':[{'userid':'e','department':[4,2]}]}");
    fake_add(f, "GET /cgi-bin/user/get?userid=m1", "{'department':[1,2]}");
    fake_err(f, "GET /cgi-bin/user/get?userid=t1", 60111);
    return f;
}

static void
alloc_loop(const struct scenario *sc)
{
    json_t *a = jq(sc->agent), *p = sc->perms ? jq(sc->perms) : NULL;
    json_t *f = sc->fake(), *u, *t;
    struct dirsync *ds;
    struct dir_pairs pairs;
    unsigned long n;
    int in_result;
    enum brk_err err = BRK_ERR_NOMEM;

    for (n = 1; n < 100000; n++) {
        ds = NULL;
        u = t = (json_t *)(uintptr_t)0x5a5a;
        memset(&pairs, 0, sizeof(pairs));
        brk_alloc_fail_at(n);
        err = dirsync_new(a, p, &ds);
        if (!err)
            err = drive(ds, f, 0);
        in_result = err == BRK_OK;
        if (!err)
            err = dirsync_result(ds, &pairs, &u, &t);
        if (err == BRK_OK) {
            assert_false(brk_alloc_failed());
            brk_alloc_fail_at(0);
            break;
        }
        brk_alloc_fail_at(0);
        if (err != BRK_ERR_NOMEM)
            fail_msg("n=%lu: %s", n, brk_strerror(err));
        /* nothing handed out */
        assert_ptr_equal(u, (json_t *)(uintptr_t)0x5a5a);
        assert_int_equal(pairs.n, 0);
        /* a failed result leaves the sync complete, to be asked again */
        if (ds != NULL)
            assert_int_equal(dirsync_status(ds),
                             in_result ? BRK_OK : BRK_ERR_NOMEM);
        dirsync_free(ds);
    }
    assert_int_equal(err, BRK_OK);
    assert_true(n > sc->min_allocs);
    dir_pairs_free(&pairs);
    json_decref(u);
    json_decref(t);
    dirsync_free(ds);
    json_decref(a);
    json_decref(p);
    json_decref(f);
}

static void
test_alloc_failures_mixed(void **state)
{
    static const struct scenario sc = {mixed_agent, arch_perms, mixed_fake, 20};
    struct dirsync *ds = plan_new(mixed_agent, arch_perms);
    json_t *f = mixed_fake();

    (void)state;
    /* the scenario itself, without failures */
    assert_int_equal(drive(ds, f, 0), BRK_OK);
    expect_result(ds, "{'3':'1','4':'2','5':'3','6':'5','8':'7'}",
                  "{'a':'3','b':'5','c':'6,8','d':'8','e':'4','m1':'1,2'}",
                  "{'10':{'users':['t1','a'],'parties':[4]}}");
    dirsync_free(ds);
    json_decref(f);
    alloc_loop(&sc);
}

static void
test_alloc_failures_member_auth(void **state)
{
    static const struct scenario sc = {mauth_agent, perm_read, mauth_fake, 10};

    (void)state;
    alloc_loop(&sc);
}

static void
test_alloc_failures_range_only(void **state)
{
    static const char agent[] =
        "{'privilege':{'allow_party':[3,2],'allow_user':['u1']}}";
    static const struct scenario sc = {agent, "{'app_permissions':[]}",
                                       json_object, 3};

    (void)state;
    alloc_loop(&sc);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_only_party_range),
        cmocka_unit_test(test_answer_order_irrelevant),
        cmocka_unit_test(test_edit_grant_same_path),
        cmocka_unit_test(test_corp_arch_keeps_range_subtrees),
        cmocka_unit_test(test_members_only_range),
        cmocka_unit_test(test_tags_only_range),
        cmocka_unit_test(test_member_authorized),
        cmocka_unit_test(test_member_authorized_no_contacts),
        cmocka_unit_test(test_external_contacts_only),
        cmocka_unit_test(test_level_without_permissions),
        cmocka_unit_test(test_inflight_bound),
        cmocka_unit_test(test_cycle_and_missing_root),
        cmocka_unit_test(test_department_gone_tolerated),
        cmocka_unit_test(test_fatal_errcodes),
        cmocka_unit_test(test_member_errcodes),
        cmocka_unit_test(test_tag_errcodes),
        cmocka_unit_test(test_page_errcode_fatal),
        cmocka_unit_test(test_malformed_tree),
        cmocka_unit_test(test_malformed_members),
        cmocka_unit_test(test_malformed_tags),
        cmocka_unit_test(test_malformed_user_get),
        cmocka_unit_test(test_malformed_pages),
        cmocka_unit_test(test_reply_not_object),
        cmocka_unit_test(test_cursor_loop),
        cmocka_unit_test(test_too_many_pages),
        cmocka_unit_test(test_cursor_length),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_new_refuses_bad_grant),
        cmocka_unit_test(test_new_bounds),
        cmocka_unit_test(test_size_5000_departments),
        cmocka_unit_test(test_alloc_failures_mixed),
        cmocka_unit_test(test_alloc_failures_member_auth),
        cmocka_unit_test(test_alloc_failures_range_only),
    };

    /* jansson allocates through brk_malloc too, so the planner's objects
     * fail with the rest. */
    json_set_alloc_funcs(brk_malloc, brk_free);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
