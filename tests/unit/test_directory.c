/*
 * Tests for the directory parsers' shared pieces: the id and userid
 * validators, dir_pairs_add, and dir_tag_value under allocation failures
 * (a failed append must not drop a member silently).
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
#include "directory.h"

static void
test_parse_id(void **state)
{
    static const char *const bad[] = {"-1",  "4294967296", "\"1\"", "1.0",
                                      "1e3", "null",       "true",  "[1]"};
    json_t *v;
    long id;
    size_t i;

    (void)state;
    v = json_integer(0);
    assert_int_equal(dir_parse_id(v, &id), 1);
    assert_int_equal(id, 0);
    json_decref(v);
    v = json_integer(4294967295LL);
    assert_int_equal(dir_parse_id(v, &id), 1);
    assert_int_equal(id, 4294967295L);
    json_decref(v);
    for (i = 0; i < nitems(bad); i++) {
        v = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        assert_non_null(v);
        id = -7;
        assert_int_equal(dir_parse_id(v, &id), 0);
        assert_int_equal(id, -7);
        json_decref(v);
    }
    assert_int_equal(dir_parse_id(NULL, &id), 0);
}

static void
test_is_userid(void **state)
{
    char s[80];

    (void)state;
    assert_true(dir_is_userid("zhangsan"));
    assert_true(dir_is_userid("wo+x/y&z"));
    assert_true(dir_is_userid("\xe5\xbc\xa0\xe4\xb8\x89"));
    assert_false(dir_is_userid(""));
    assert_false(dir_is_userid("a b"));
    assert_false(dir_is_userid("a,b"));
    assert_false(dir_is_userid("a\tb"));
    assert_false(dir_is_userid("a\x7f"));
    memset(s, 'a', 64);
    s[64] = '\0';
    assert_true(dir_is_userid(s));
    s[64] = 'a';
    s[65] = '\0';
    assert_false(dir_is_userid(s));
}

static void
test_pairs_add_failure_keeps_pairs(void **state)
{
    struct dir_pairs p = {0};
    char f[16];
    unsigned long n;
    size_t i, want = 0;
    enum brk_err err;

    (void)state;
    /* 64 pairs fill the first block; the 65th grows it */
    for (i = 0; i < 64; i++) {
        snprintf(f, sizeof(f), "%zu", i);
        assert_int_equal(dir_pairs_add(&p, f, "1"), BRK_OK);
    }
    for (n = 1; n < 10; n++) {
        brk_alloc_fail_at(n);
        err = dir_pairs_add(&p, "x", "y");
        brk_alloc_fail_at(0);
        if (err == BRK_OK) {
            want = 65;
            break;
        }
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_int_equal(p.n, 64);
        assert_string_equal(p.field[63], "63");
    }
    assert_int_equal(p.n, want);
    assert_string_equal(p.field[64], "x");
    assert_string_equal(p.value[64], "y");
    dir_pairs_free(&p);
    assert_int_equal(p.n, 0);
}

static void
test_tag_value_alloc_failures(void **state)
{
    static const char text[] =
        "{\"userlist\":[{\"userid\":\"a\"},{\"userid\":\"b\"},"
        "{\"userid\":\"c\"}],\"partylist\":[4,5]}";
    json_t *body = json_loads(text, 0, NULL);
    char *const sentinel = (char *)(uintptr_t)0x5a5a;
    char *out;
    unsigned long n;
    enum brk_err err = BRK_ERR_NOMEM;

    (void)state;
    assert_non_null(body);
    for (n = 1; n < 1000; n++) {
        out = sentinel;
        brk_alloc_fail_at(n);
        err = dir_tag_value(body, &out);
        if (err == BRK_OK) {
            /* a success means nothing failed: no member dropped */
            assert_false(brk_alloc_failed());
            brk_alloc_fail_at(0);
            break;
        }
        brk_alloc_fail_at(0);
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_ptr_equal(out, sentinel);
    }
    assert_int_equal(err, BRK_OK);
    assert_true(n >= 2);
    assert_string_equal(out,
                        "{\"users\":[\"a\",\"b\",\"c\"],\"parties\":[4,5]}");
    brk_free(out);
    json_decref(body);
}

/* The stored value is JSON that says what the reply said, escapes and
 * all; missing lists are empty; a wrong shape is refused. */
static void
test_tag_value_text(void **state)
{
    static const struct {
        const char *body, *users, *parties;
    } ok[] = {
        {"{\"userlist\":[{\"userid\":\"q\\\"x\\\\y\"},"
         "{\"userid\":\"\u5f20\"}],\"partylist\":[0,4294967295]}",
         "[\"q\\\"x\\\\y\",\"\u5f20\"]", "[0,4294967295]"},
        {"{}", "[]", "[]"},
        {"{\"userlist\":[],\"partylist\":[7]}", "[]", "[7]"},
    };
    static const char *const bad[] = {
        "{\"userlist\":{}}",
        "{\"partylist\":3}",
        "{\"userlist\":[{\"userid\":\"a b\"}]}",
        "{\"userlist\":[\"a\"]}",
        "{\"partylist\":[-1]}",
        "{\"partylist\":[\"1\"]}",
    };
    json_t *body, *got, *want;
    char *out, text[256];
    size_t i;

    (void)state;
    for (i = 0; i < nitems(ok); i++) {
        body = json_loads(ok[i].body, 0, NULL);
        assert_non_null(body);
        assert_int_equal(dir_tag_value(body, &out), BRK_OK);
        got = json_loads(out, JSON_REJECT_DUPLICATES, NULL);
        assert_non_null(got);
        snprintf(text, sizeof(text), "{\"users\":%s,\"parties\":%s}",
                 ok[i].users, ok[i].parties);
        want = json_loads(text, 0, NULL);
        assert_non_null(want);
        assert_true(json_equal(got, want));
        json_decref(got);
        json_decref(want);
        json_decref(body);
        brk_free(out);
    }
    for (i = 0; i < nitems(bad); i++) {
        body = json_loads(bad[i], 0, NULL);
        assert_non_null(body);
        out = NULL;
        assert_int_equal(dir_tag_value(body, &out), BRK_ERR_UPSTREAM_BAD);
        assert_null(out);
        json_decref(body);
    }
}

/* agent/get_admin_list in its shapes: rows by userid (the current reply)
 * or open_userid (the older one); no "admin" under member authorization
 * is no admins; a wrong shape is refused. */
static void
test_admin_list(void **state)
{
    static const struct {
        const char *body, *want;
    } ok[] = {
        {"{\"errcode\":0,\"errmsg\":\"ok\",\"admin\":[{\"userid\":"
         "\"woAAAA\",\"auth_type\":1},{\"userid\":\"woBBBB\","
         "\"auth_type\":0}]}",
         "[{\"userid\":\"woAAAA\",\"auth_type\":1},"
         "{\"userid\":\"woBBBB\",\"auth_type\":0}]"},
        {"{\"admin\":[{\"userid\":\"zhangsan\",\"open_userid\":\"woCC\","
         "\"auth_type\":1}]}",
         "[{\"userid\":\"zhangsan\",\"auth_type\":1}]"},
        {"{\"admin\":[{\"open_userid\":\"woDD\"}]}",
         "[{\"userid\":\"woDD\",\"auth_type\":0}]"},
        {"{\"admin\":[]}", "[]"},
        /* member authorization: WeCom returns no admin list */
        {"{\"errcode\":0,\"errmsg\":\"ok\"}", "[]"},
    };
    static const char *const bad[] = {
        "{\"admin\":{}}",
        "{\"admin\":null}",
        "{\"admin\":[\"woAAAA\"]}",
        "{\"admin\":[{}]}",
        "{\"admin\":[{\"userid\":5}]}",
        "{\"admin\":[{\"userid\":\"a b\"}]}",
        "{\"admin\":[{\"userid\":\"woAAAA\",\"auth_type\":\"1\"}]}",
    };
    json_t *body, *got, *want, *many;
    char *out;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(ok); i++) {
        body = json_loads(ok[i].body, 0, NULL);
        assert_non_null(body);
        out = NULL;
        assert_int_equal(dir_admin_list(body, &out), BRK_OK);
        got = json_loads(out, JSON_REJECT_DUPLICATES, NULL);
        want = json_loads(ok[i].want, 0, NULL);
        assert_non_null(got);
        assert_non_null(want);
        assert_true(json_equal(got, want));
        json_decref(got);
        json_decref(want);
        json_decref(body);
        brk_free(out);
    }
    for (i = 0; i < nitems(bad); i++) {
        body = json_loads(bad[i], 0, NULL);
        assert_non_null(body);
        out = NULL;
        assert_int_equal(dir_admin_list(body, &out), BRK_ERR_UPSTREAM_BAD);
        assert_null(out);
        json_decref(body);
    }
    /* more admins than an app may have */
    many = json_array();
    for (i = 0; i <= DIR_MAX_ADMINS; i++)
        json_array_append_new(many, json_pack("{s:s}", "userid", "wo"));
    body = json_pack("{s:o}", "admin", many);
    out = NULL;
    assert_int_equal(dir_admin_list(body, &out), BRK_ERR_UPSTREAM_BAD);
    assert_null(out);
    json_decref(body);
}

/* user/list_id as WeCom answers a third-party app: one row per (member,
 * department), the member named by open_userid only (§4.4). */
static void
test_list_id_page(void **state)
{
    static const char *const bad[] = {
        "{\"dept_user\":[{\"userid\":\"zhangsan\",\"department\":1}]}",
        "{\"dept_user\":[{\"open_userid\":5,\"department\":1}]}",
        "{\"dept_user\":[{\"open_userid\":\"wo A\",\"department\":1}]}",
        "{\"dept_user\":[{\"open_userid\":\"woA\",\"department\":\"1\"}]}",
        "{\"dept_user\":[{\"open_userid\":\"woA\"}]}",
        "{\"dept_user\":{}}",
        "{}",
    };
    json_t *body, *users, *want;
    char *cursor = NULL;
    size_t i;

    (void)state;
    users = json_object();
    body = json_loads(
        "{\"errcode\":0,\"errmsg\":\"ok\",\"next_cursor\":\"aaaa\","
        "\"dept_user\":[{\"open_userid\":\"woAAAA\",\"department\":1},"
        "{\"open_userid\":\"woAAAA\",\"department\":2},"
        "{\"open_userid\":\"woBBBB\",\"department\":2}]}",
        0, NULL);
    assert_non_null(body);
    assert_int_equal(dir_merge_user_page(body, users, &cursor), BRK_OK);
    assert_string_equal(cursor, "aaaa");
    brk_free(cursor);
    json_decref(body);
    body = json_loads("{\"next_cursor\":\"\",\"dept_user\":[{"
                      "\"open_userid\":\"woCCCC\",\"department\":3}]}",
                      0, NULL);
    assert_non_null(body);
    cursor = (char *)(uintptr_t)1;
    assert_int_equal(dir_merge_user_page(body, users, &cursor), BRK_OK);
    assert_null(cursor);
    json_decref(body);
    want = json_loads("{\"woAAAA\":\"1,2\",\"woBBBB\":\"2\","
                      "\"woCCCC\":\"3\"}",
                      0, NULL);
    assert_true(json_equal(users, want));
    json_decref(want);
    for (i = 0; i < nitems(bad); i++) {
        body = json_loads(bad[i], 0, NULL);
        assert_non_null(body);
        cursor = NULL;
        assert_int_equal(dir_merge_user_page(body, users, &cursor),
                         BRK_ERR_UPSTREAM_BAD);
        assert_null(cursor);
        json_decref(body);
    }
    json_decref(users);
}

/* An event of the given name/value pairs (NULL-terminated), parsed. */
static struct wecom_xml *
event_of(const char *const *kv)
{
    const char *k[16], *v[16];
    struct wecom_xml *x = NULL;
    char *text = NULL;
    size_t n = 0, len = 0;

    for (; kv[2 * n] != NULL; n++) {
        assert_true(n < 16);
        k[n] = kv[2 * n];
        v[n] = kv[2 * n + 1];
    }
    assert_int_equal(wecom_xml_build(k, v, n, &text, &len), BRK_OK);
    assert_int_equal(wecom_xml_parse(text, len, NULL, &x, NULL), BRK_OK);
    brk_free(text);
    return x;
}

/* change_contact as a third-party app may get it: a member named by
 * UserID, or by OpenUserID alone; ids and lists checked. */
static void
test_contact_read(void **state)
{
    static const char *const ok[][24] = {
        {"ChangeType", "create_user", "UserID", "zhangsan", "OpenUserID",
         "woAAAA", "Department", "1,2,3", NULL},
        {"ChangeType", "create_user", "OpenUserID", "woAAAA", "Department",
         "4294967295", NULL},
        {"ChangeType", "update_user", "UserID", "", "OpenUserID", "woBBBB",
         "NewUserID", "lisi", NULL},
        {"ChangeType", "delete_user", "UserID", "zhangsan", NULL},
        {"ChangeType", "create_party", "Id", "7", "ParentId", "1", "Name", "7",
         NULL},
        {"ChangeType", "update_party", "Id", "1", "ParentId", "0", NULL},
        {"ChangeType", "delete_party", "Id", "7", NULL},
        {"ChangeType", "update_tag", "TagId", "3", "AddUserItems", "a,b",
         "DelUserItems", "c", "AddPartyItems", "2,3", "DelPartyItems", "4",
         NULL},
        {"ChangeType", "update_tag", "TagId", "3", NULL},
        {"ChangeType", "some_new_type", "UserID", "a b", NULL},
    };
    static const char *const want[][11] = {
        {"create_user", "zhangsan", "", "1,2,3", "", "", "", "", "", "", ""},
        {"create_user", "woAAAA", "", "4294967295", "", "", "", "", "", "", ""},
        {"update_user", "woBBBB", "lisi", "", "", "", "", "", "", "", ""},
        {"delete_user", "zhangsan", "", "", "", "", "", "", "", "", ""},
        {"create_party", "", "", "", "7", "1", "", "", "", "", ""},
        {"update_party", "", "", "", "1", "0", "", "", "", "", ""},
        {"delete_party", "", "", "", "7", "", "", "", "", "", ""},
        {"update_tag", "", "", "", "", "", "3", "a,b", "c", "2,3", "4"},
        {"update_tag", "", "", "", "", "", "3", "", "", "", ""},
        {"some_new_type", "", "", "", "", "", "", "", "", "", ""},
    };
    static const char *const bad[][12] = {
        {"ChangeType", "create_user", "Department", "1", NULL},
        {"ChangeType", "delete_user", "UserID", "", "OpenUserID", "", NULL},
        {"ChangeType", "update_user", "UserID", "a b", NULL},
        {"ChangeType", "update_user", "UserID", "a", "NewUserID", "b,c", NULL},
        {"ChangeType", "create_user", "UserID", "a", "Department", "1,,2",
         NULL},
        {"ChangeType", "create_user", "UserID", "a", "Department", "01", NULL},
        {"ChangeType", "create_user", "UserID", "a", "Department", "0", NULL},
        {"ChangeType", "create_user", "UserID", "a", "Department", "4294967296",
         NULL},
        {"ChangeType", "create_user", "UserID", "a", "Department", "1,", NULL},
        {"ChangeType", "create_user", "UserID", "a", "Department", "1, 2",
         NULL},
        {"ChangeType", "create_party", "ParentId", "1", NULL},
        {"ChangeType", "update_party", "Id", "0", NULL},
        {"ChangeType", "update_party", "Id", "2", "ParentId", "-1", NULL},
        {"ChangeType", "delete_party", "Id", "x", NULL},
        {"ChangeType", "update_tag", "AddUserItems", "a", NULL},
        {"ChangeType", "update_tag", "TagId", "3", "AddPartyItems", "2,abc",
         NULL},
        {"ChangeType", "update_tag", "TagId", "3", "AddUserItems", "u1,", NULL},
        {"ChangeType", "update_tag", "TagId", "3", "DelUserItems", "a b", NULL},
        {"ChangeType", "update_tag", "TagId", "3", "DelPartyItems", ",4", NULL},
    };
    struct dir_contact c, untouched;
    struct wecom_xml *x;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(ok); i++) {
        const char *got[11];
        size_t k;

        x = event_of(ok[i]);
        assert_int_equal(dir_contact_read(x, &c), BRK_OK);
        got[0] = c.type;
        got[1] = c.user;
        got[2] = c.new_user;
        got[3] = c.depts;
        got[4] = c.party;
        got[5] = c.parent;
        got[6] = c.tag;
        got[7] = c.add_users;
        got[8] = c.del_users;
        got[9] = c.add_parties;
        got[10] = c.del_parties;
        for (k = 0; k < nitems(got); k++)
            assert_string_equal(got[k], want[i][k]);
        wecom_xml_free(x);
    }
    for (i = 0; i < nitems(bad); i++) {
        x = event_of(bad[i]);
        memset(&untouched, 0x5a, sizeof(untouched));
        c = untouched;
        assert_int_equal(dir_contact_read(x, &c), BRK_ERR_UPSTREAM_BAD);
        assert_memory_equal(&c, &untouched, sizeof(c));
        wecom_xml_free(x);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_id),
        cmocka_unit_test(test_is_userid),
        cmocka_unit_test(test_pairs_add_failure_keeps_pairs),
        cmocka_unit_test(test_tag_value_alloc_failures),
        cmocka_unit_test(test_tag_value_text),
        cmocka_unit_test(test_admin_list),
        cmocka_unit_test(test_list_id_page),
        cmocka_unit_test(test_contact_read),
    };

    /* jansson allocates through brk_malloc, so its arrays fail too */
    json_set_alloc_funcs(brk_malloc, brk_free);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
