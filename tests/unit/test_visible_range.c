/*
 * Tests for the visible-range resolver: the wecom-protocol §3.3 algorithm
 * on a hand-made directory, hostile shapes (each failing closed), narrowing,
 * allocation failures, a randomized cross-check against a naive reference
 * and a size test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "broker.h"
#include "visible_range.h"

/* A pointer that vrange_build must not overwrite on failure. */
static struct vrange *const sentinel_vr = (struct vrange *)(uintptr_t)0x5a5a;

/*
 * The hand-made directory:
 *
 *   1 -+- 2 -+- 4 -- 8 -- 10        99 (only named as a parent) -- 11
 *      |     `- 5
 *      +- 3 -+- 6
 *      |     `- 7
 *      `- 9
 */
static const char dir_parents[] =
    "{\"1\":\"0\",\"2\":\"1\",\"3\":\"1\",\"4\":\"2\",\"5\":\"2\","
    "\"6\":\"3\",\"7\":\"3\",\"8\":\"4\",\"9\":\"1\",\"10\":\"8\","
    "\"11\":\"99\"}";
static const char dir_users[] =
    "{\"u01\":\"1\",\"u02\":\"2\",\"u03\":\"4\",\"u04\":\"8\","
    "\"u05\":\"10\",\"u06\":\"5\",\"u07\":\"3\",\"u08\":\"6\","
    "\"u09\":\"7\",\"u10\":\"9\",\"u11\":\"5,7\",\"u12\":\"10,9\","
    "\"u13\":\"2\",\"u14\":\"6\",\"u15\":\"8\",\"u16\":\"3\","
    "\"u17\":\"11\",\"u18\":\"99\",\"u19\":\"4\",\"u20\":\"7\"}";
/* 100: users only; 200: parties only (stored as a string); 300: both. */
static const char dir_tags[] =
    "{\"100\":{\"users\":[\"u07\",\"u10\"],\"parties\":[]},"
    "\"200\":\"{\\\"users\\\":[],\\\"parties\\\":[3]}\","
    "\"300\":{\"users\":[\"u01\"],\"parties\":[8]}}";
/* The same tags, all objects. */
static const char dir_tags_objects[] =
    "{\"100\":{\"users\":[\"u07\",\"u10\"],\"parties\":[]},"
    "\"200\":{\"users\":[],\"parties\":[3]},"
    "\"300\":{\"users\":[\"u01\"],\"parties\":[8]}}";

#define UNIVERSE_DEPTS 128

/*---- Helpers ----*/

static json_t *
jparse(const char *text)
{
    json_error_t jerr;
    json_t *j =
        json_loads(text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);

    if (j == NULL)
        print_error("bad test JSON: %s: %s\n", jerr.text, text);
    assert_non_null(j);
    return j;
}

/* Build over the given directory texts (NULL: the hand-made part). */
static enum brk_err
build_with(const char *priv, const char *parents, const char *users,
           const char *tags, struct vrange **out)
{
    json_t *p = jparse(priv), *pa = jparse(parents ? parents : dir_parents);
    json_t *u = jparse(users ? users : dir_users);
    json_t *t = jparse(tags ? tags : dir_tags);
    enum brk_err err = vrange_build(p, pa, u, t, out);

    json_decref(p);
    json_decref(pa);
    json_decref(u);
    json_decref(t);
    return err;
}

static struct vrange *
build(const char *priv)
{
    struct vrange *v = NULL;

    assert_int_equal(build_with(priv, NULL, NULL, NULL, &v), BRK_OK);
    assert_non_null(v);
    return v;
}

static int
word_in(const char *list, const char *w, size_t wlen)
{
    const char *p = list, *e;

    while (*p) {
        while (*p == ' ')
            p++;
        e = p;
        while (*e && *e != ' ')
            e++;
        if ((size_t)(e - p) == wlen && e > p && memcmp(p, w, wlen) == 0)
            return 1;
        p = e;
    }
    return 0;
}

static size_t
word_count(const char *list)
{
    size_t n = 0;
    const char *p = list;

    while (*p) {
        while (*p == ' ')
            p++;
        if (*p)
            n++;
        while (*p && *p != ' ')
            p++;
    }
    return n;
}

/* Exactly the members in the space-separated list (checked over u01..u20
 * and the list itself). */
static void
expect_members(const struct vrange *v, const char *list)
{
    char name[16];
    const char *p = list, *e;
    int i;

    for (i = 1; i <= 20; i++) {
        snprintf(name, sizeof(name), "u%02d", i);
        if (vrange_has_member(v, name, strlen(name)) !=
            word_in(list, name, strlen(name)))
            print_error("member %s: got %d\n", name,
                        vrange_has_member(v, name, strlen(name)));
        assert_int_equal(vrange_has_member(v, name, strlen(name)),
                         word_in(list, name, strlen(name)));
    }
    while (*p) {
        while (*p == ' ')
            p++;
        for (e = p; *e && *e != ' '; e++)
            ;
        if (e > p)
            assert_true(vrange_has_member(v, p, (size_t)(e - p)));
        p = e;
    }
    assert_int_equal(vrange_members(v), word_count(list));
}

/* Exactly the departments in the space-separated list (ids below
 * UNIVERSE_DEPTS). */
static void
expect_depts(const struct vrange *v, const char *list)
{
    char buf[24];
    long id;

    for (id = 0; id < UNIVERSE_DEPTS; id++) {
        snprintf(buf, sizeof(buf), "%ld", id);
        if (vrange_has_department(v, id) != word_in(list, buf, strlen(buf)))
            print_error("department %ld: got %d\n", id,
                        vrange_has_department(v, id));
        assert_int_equal(vrange_has_department(v, id),
                         word_in(list, buf, strlen(buf)));
    }
    assert_int_equal(vrange_departments(v), word_count(list));
}

static void
expect_tags(const struct vrange *v, const char *list)
{
    char buf[24];
    long id;

    for (id = 0; id < 1000; id++) {
        snprintf(buf, sizeof(buf), "%ld", id);
        assert_int_equal(vrange_has_tag(v, id),
                         word_in(list, buf, strlen(buf)));
    }
}

static void
expect_build_fails(const char *priv, const char *parents, const char *users,
                   const char *tags, enum brk_err want)
{
    struct vrange *v = sentinel_vr;
    enum brk_err err = build_with(priv, parents, users, tags, &v);

    if (err != want)
        print_error("got %s, want %s\n", brk_strerror(err), brk_strerror(want));
    assert_int_equal(err, want);
    assert_ptr_equal(v, sentinel_vr);
}

/*---- The §3.3 algorithm ----*/

static void
test_allow_party_subtree(void **state)
{
    struct vrange *v = build("{\"allow_party\":[2]}");

    (void)state;
    expect_depts(v, "2 4 5 8 10");
    expect_members(v, "u02 u03 u04 u05 u06 u11 u12 u13 u15 u19");
    expect_tags(v, "");
    vrange_free(v);
}

static void
test_allow_party_deep_descendants_only(void **state)
{
    struct vrange *v = build("{\"allow_party\":[4]}");

    (void)state;
    /* 8 and 10 are below 4; 5 is a sibling, 2 the parent. */
    expect_depts(v, "4 8 10");
    expect_members(v, "u03 u04 u05 u12 u15 u19");
    vrange_free(v);
}

static void
test_allow_party_leaf(void **state)
{
    struct vrange *v = build("{\"allow_party\":[10]}");

    (void)state;
    expect_depts(v, "10");
    expect_members(v, "u05 u12");
    vrange_free(v);
}

static void
test_allow_party_root_is_whole_corp(void **state)
{
    struct vrange *v = build("{\"allow_party\":[1]}");

    (void)state;
    /* 11 hangs under 99, which is not below 1. */
    expect_depts(v, "1 2 3 4 5 6 7 8 9 10");
    expect_members(v, "u01 u02 u03 u04 u05 u06 u07 u08 u09 u10 u11 u12 u13 "
                      "u14 u15 u16 u19 u20");
    vrange_free(v);
}

static void
test_allow_party_zero_is_not_an_ancestor(void **state)
{
    struct vrange *v = build("{\"allow_party\":[0]}");

    (void)state;
    expect_depts(v, "0");
    expect_members(v, "");
    vrange_free(v);
}

static void
test_allow_user_alone(void **state)
{
    struct vrange *v = build("{\"allow_user\":[\"u05\",\"ghost\"]}");

    (void)state;
    expect_members(v, "u05 ghost");
    expect_depts(v, "");
    expect_tags(v, "");
    vrange_free(v);
}

static void
test_extra_lists(void **state)
{
    struct vrange *v = build("{\"extra_party\":[9],\"extra_user\":[\"u17\"],"
                             "\"extra_tag\":[100]}");

    (void)state;
    expect_depts(v, "9");
    expect_members(v, "u07 u10 u12 u17");
    expect_tags(v, "100");
    vrange_free(v);
}

static void
test_allow_and_extra_combine(void **state)
{
    struct vrange *v = build("{\"allow_party\":[5],\"extra_party\":[6],"
                             "\"allow_user\":[\"u01\"],"
                             "\"extra_user\":[\"u01\",\"u18\"]}");

    (void)state;
    expect_depts(v, "5 6");
    expect_members(v, "u01 u06 u08 u11 u14 u18");
    vrange_free(v);
}

static void
test_allow_tag_users_only(void **state)
{
    struct vrange *v = build("{\"allow_tag\":[100]}");

    (void)state;
    expect_members(v, "u07 u10");
    expect_depts(v, "");
    expect_tags(v, "100");
    vrange_free(v);
}

static void
test_allow_tag_parties_only(void **state)
{
    struct vrange *v = build("{\"allow_tag\":[200]}");

    (void)state;
    expect_depts(v, "3 6 7");
    expect_members(v, "u07 u08 u09 u11 u14 u16 u20");
    expect_tags(v, "200");
    vrange_free(v);
}

static void
test_allow_tag_users_and_parties(void **state)
{
    struct vrange *v = build("{\"allow_tag\":[300]}");

    (void)state;
    expect_depts(v, "8 10");
    expect_members(v, "u01 u04 u05 u12 u15");
    expect_tags(v, "300");
    vrange_free(v);
}

static void
test_tag_missing_from_directory(void **state)
{
    struct vrange *v = build("{\"allow_tag\":[400,100,400]}");

    (void)state;
    expect_tags(v, "100 400");
    expect_members(v, "u07 u10");
    expect_depts(v, "");
    vrange_free(v);
}

static void
test_empty_privilege_sees_nothing(void **state)
{
    struct vrange *v = build("{}");

    (void)state;
    expect_members(v, "");
    expect_depts(v, "");
    expect_tags(v, "");
    vrange_free(v);
}

static void
test_empty_and_null_lists(void **state)
{
    struct vrange *v = build("{\"allow_party\":[],\"allow_user\":null,"
                             "\"allow_tag\":null,\"extra_party\":null,"
                             "\"level\":1}");

    (void)state;
    expect_members(v, "");
    expect_depts(v, "");
    expect_tags(v, "");
    vrange_free(v);
}

static void
test_member_in_several_departments(void **state)
{
    struct vrange *v = build("{\"allow_party\":[7]}");

    (void)state;
    /* u11 is in 5 and 7; only 7 is visible. */
    expect_depts(v, "7");
    expect_members(v, "u09 u11 u20");
    vrange_free(v);
}

static void
test_cycle_in_parents(void **state)
{
    static const char parents[] =
        "{\"1\":\"0\",\"2\":\"3\",\"3\":\"4\",\"4\":\"2\",\"5\":\"4\"}";
    static const char users[] =
        "{\"a\":\"2\",\"b\":\"3\",\"c\":\"5\",\"d\":\"1\"}";
    struct vrange *v = NULL;

    (void)state;
    assert_int_equal(
        build_with("{\"allow_party\":[3]}", parents, users, "{}", &v), BRK_OK);
    expect_depts(v, "2 3 4 5");
    assert_true(vrange_has_member(v, "a", 1));
    assert_true(vrange_has_member(v, "b", 1));
    assert_true(vrange_has_member(v, "c", 1));
    assert_false(vrange_has_member(v, "d", 1));
    assert_int_equal(vrange_members(v), 3);
    vrange_free(v);

    /* The cycle hangs nowhere under the root. */
    assert_int_equal(
        build_with("{\"allow_party\":[1]}", parents, users, "{}", &v), BRK_OK);
    expect_depts(v, "1");
    assert_int_equal(vrange_members(v), 1);
    vrange_free(v);
}

static void
test_self_parent(void **state)
{
    static const char parents[] =
        "{\"1\":\"0\",\"2\":\"1\",\"4\":\"4\",\"5\":\"4\"}";
    static const char users[] = "{\"a\":\"4\",\"b\":\"5\",\"c\":\"2\"}";
    struct vrange *v = NULL;

    (void)state;
    assert_int_equal(
        build_with("{\"allow_party\":[4]}", parents, users, "{}", &v), BRK_OK);
    expect_depts(v, "4 5");
    assert_int_equal(vrange_members(v), 2);
    assert_false(vrange_has_member(v, "c", 1));
    vrange_free(v);

    assert_int_equal(
        build_with("{\"allow_party\":[1]}", parents, users, "{}", &v), BRK_OK);
    expect_depts(v, "1 2");
    assert_int_equal(vrange_members(v), 1);
    assert_true(vrange_has_member(v, "c", 1));
    vrange_free(v);
}

static void
test_department_missing_from_parents(void **state)
{
    struct vrange *v = build("{\"allow_party\":[99,77]}");

    (void)state;
    /* 99 is only a parent value, 77 is nowhere: each is its own root. */
    expect_depts(v, "11 77 99");
    expect_members(v, "u17 u18");
    vrange_free(v);
}

static void
test_member_department_missing_from_parents(void **state)
{
    static const char users[] = "{\"a\":\"55\",\"b\":\"2,55\"}";
    struct vrange *v = NULL;

    (void)state;
    assert_int_equal(build_with("{\"allow_party\":[1]}", NULL, users, "{}", &v),
                     BRK_OK);
    assert_false(vrange_has_member(v, "a", 1));
    assert_true(vrange_has_member(v, "b", 1));
    vrange_free(v);
}

static void
test_null_directory_parts(void **state)
{
    json_t *p = jparse("{\"allow_party\":[1],\"allow_user\":[\"x\"],"
                       "\"allow_tag\":[5]}");
    struct vrange *v = NULL;

    (void)state;
    assert_int_equal(vrange_build(p, NULL, NULL, NULL, &v), BRK_OK);
    expect_depts(v, "1");
    assert_int_equal(vrange_members(v), 1);
    assert_true(vrange_has_member(v, "x", 1));
    expect_tags(v, "5");
    vrange_free(v);
    json_decref(p);
}

static void
test_tags_as_strings_and_objects(void **state)
{
    static const char as_strings[] =
        "{\"100\":\"{\\\"users\\\":[\\\"u07\\\",\\\"u10\\\"]}\","
        "\"200\":\"{\\\"users\\\":[],\\\"parties\\\":[3]}\","
        "\"300\":\"{\\\"users\\\":[\\\"u01\\\"],\\\"parties\\\":[8]}\"}";
    static const char *const privs[] = {
        "{\"allow_tag\":[100]}", "{\"allow_tag\":[200]}",
        "{\"allow_tag\":[300]}", "{\"allow_tag\":[100,200,300]}"};
    static const char *const want[] = {
        "u07 u10", "u07 u08 u09 u11 u14 u16 u20", "u01 u04 u05 u12 u15",
        "u01 u04 u05 u07 u08 u09 u10 u11 u12 u14 u15 u16 u20"};
    struct vrange *a = NULL, *b = NULL;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(privs); i++) {
        assert_int_equal(build_with(privs[i], NULL, NULL, dir_tags_objects, &a),
                         BRK_OK);
        assert_int_equal(build_with(privs[i], NULL, NULL, as_strings, &b),
                         BRK_OK);
        expect_members(a, want[i]);
        expect_members(b, want[i]);
        assert_int_equal(vrange_departments(a), vrange_departments(b));
        vrange_free(a);
        vrange_free(b);
    }
}

static void
test_tag_null_lists(void **state)
{
    struct vrange *v = NULL;

    (void)state;
    assert_int_equal(build_with("{\"allow_tag\":[7]}", NULL, NULL,
                                "{\"7\":{\"users\":null,\"parties\":null}}",
                                &v),
                     BRK_OK);
    expect_tags(v, "7");
    expect_members(v, "");
    vrange_free(v);
}

static void
test_counts(void **state)
{
    struct vrange *v = build("{\"allow_party\":[3],\"allow_user\":[\"u01\","
                             "\"u07\",\"nobody\"],\"allow_tag\":[300]}");

    (void)state;
    /* 3 6 7 and 8 10 (tag 300) */
    assert_int_equal(vrange_departments(v), 5);
    /* u07 u08 u09 u11 u14 u16 u20 + u01 nobody + u04 u05 u12 u15 */
    assert_int_equal(vrange_members(v), 13);
    assert_true(vrange_memory(v) > 0);
    assert_int_equal(vrange_members(NULL), 0);
    assert_int_equal(vrange_departments(NULL), 0);
    assert_int_equal(vrange_memory(NULL), 0);
    vrange_free(v);
    vrange_free(NULL);
}

static void
test_has_member_uses_len(void **state)
{
    static const char buf[] = "u05XYZ";
    struct vrange *v = build("{\"allow_user\":[\"u05\"]}");

    (void)state;
    assert_true(vrange_has_member(v, buf, 3));
    assert_false(vrange_has_member(v, buf, 2));
    assert_false(vrange_has_member(v, buf, 4));
    assert_false(vrange_has_member(v, "u05", 4)); /* the NUL counts */
    assert_false(vrange_has_member(v, buf, 0));
    assert_false(vrange_has_member(v, NULL, 3));
    assert_false(vrange_has_member(NULL, buf, 3));
    vrange_free(v);
}

static void
test_unknown_ids(void **state)
{
    struct vrange *v = build("{\"allow_party\":[1],\"allow_tag\":[100]}");

    (void)state;
    assert_false(vrange_has_member(v, "nobody", 6));
    assert_false(vrange_has_member(v, "u1", 2));
    assert_false(vrange_has_department(v, 12345));
    assert_false(vrange_has_department(v, -1));
    assert_false(vrange_has_department(v, 4294967296L + 1));
    assert_false(vrange_has_tag(v, -100));
    assert_false(vrange_has_tag(v, 4294967296L + 100));
    assert_false(vrange_has_tag(v, 101));
    assert_false(vrange_has_department(NULL, 1));
    assert_false(vrange_has_tag(NULL, 100));
    vrange_free(v);
}

static void
test_largest_ids(void **state)
{
    struct vrange *v = NULL;

    (void)state;
    assert_int_equal(build_with("{\"allow_party\":[4294967295],"
                                "\"allow_tag\":[4294967295]}",
                                "{\"4294967295\":\"0\",\"7\":\"4294967295\"}",
                                "{\"a\":\"7\"}", "{}", &v),
                     BRK_OK);
    assert_true(vrange_has_department(v, 4294967295L));
    assert_true(vrange_has_department(v, 7));
    assert_true(vrange_has_tag(v, 4294967295L));
    assert_true(vrange_has_member(v, "a", 1));
    vrange_free(v);
}

static void
test_userid_with_unusual_bytes(void **state)
{
    static const char users[] = "{\"\xe5\xbc\xa0\xe4\xb8\x89\":\"6\"}";
    struct vrange *v = NULL;

    (void)state;
    assert_int_equal(build_with("{\"allow_party\":[3]}", NULL, users, "{}", &v),
                     BRK_OK);
    assert_true(vrange_has_member(v, "\xe5\xbc\xa0\xe4\xb8\x89", 6));
    assert_int_equal(vrange_members(v), 1);
    vrange_free(v);
}

/*---- Hostile input: each fails closed ----*/

#define INVAL_CASE(name, priv, parents, users, tags)                           \
    static void test_inval_##name(void **state)                                \
    {                                                                          \
        (void)state;                                                           \
        expect_build_fails(priv, parents, users, tags, BRK_ERR_INVAL);         \
    }

/* privilege */
INVAL_CASE(privilege_array, "[]", NULL, NULL, NULL)
INVAL_CASE(allow_party_not_array, "{\"allow_party\":2}", NULL, NULL, NULL)
INVAL_CASE(allow_party_object, "{\"allow_party\":{\"2\":1}}", NULL, NULL, NULL)
INVAL_CASE(allow_party_numeric_string, "{\"allow_party\":[\"2\"]}", NULL, NULL,
           NULL)
INVAL_CASE(allow_party_real, "{\"allow_party\":[2.0]}", NULL, NULL, NULL)
INVAL_CASE(allow_party_negative, "{\"allow_party\":[-1]}", NULL, NULL, NULL)
INVAL_CASE(allow_party_too_big, "{\"allow_party\":[4294967296]}", NULL, NULL,
           NULL)
INVAL_CASE(allow_party_null_element, "{\"allow_party\":[1,null]}", NULL, NULL,
           NULL)
INVAL_CASE(extra_party_string, "{\"extra_party\":[\"1\"]}", NULL, NULL, NULL)
INVAL_CASE(allow_user_integer, "{\"allow_user\":[5]}", NULL, NULL, NULL)
INVAL_CASE(allow_user_string_list, "{\"allow_user\":\"u01\"}", NULL, NULL, NULL)
INVAL_CASE(allow_user_empty, "{\"allow_user\":[\"\"]}", NULL, NULL, NULL)
INVAL_CASE(allow_user_nul, "{\"allow_user\":[\"u01\\u0000x\"]}", NULL, NULL,
           NULL)
INVAL_CASE(extra_user_object, "{\"extra_user\":[{\"userid\":\"u01\"}]}", NULL,
           NULL, NULL)
INVAL_CASE(allow_tag_numeric_string, "{\"allow_tag\":[\"100\"]}", NULL, NULL,
           NULL)
INVAL_CASE(extra_tag_bool, "{\"extra_tag\":[true]}", NULL, NULL, NULL)
/* parents */
INVAL_CASE(parents_array, "{}", "[]", NULL, NULL)
INVAL_CASE(parents_value_integer, "{}", "{\"2\":1}", NULL, NULL)
INVAL_CASE(parents_key_not_numeric, "{}", "{\"x\":\"1\"}", NULL, NULL)
INVAL_CASE(parents_key_leading_zero, "{}", "{\"02\":\"1\"}", NULL, NULL)
INVAL_CASE(parents_value_signed, "{}", "{\"2\":\"+1\"}", NULL, NULL)
INVAL_CASE(parents_value_space, "{}", "{\"2\":\" 1\"}", NULL, NULL)
INVAL_CASE(parents_value_empty, "{}", "{\"2\":\"\"}", NULL, NULL)
INVAL_CASE(parents_value_too_big, "{}", "{\"2\":\"4294967296\"}", NULL, NULL)
INVAL_CASE(parents_value_null, "{}", "{\"2\":null}", NULL, NULL)
/* users */
INVAL_CASE(users_array, "{}", NULL, "[]", NULL)
INVAL_CASE(users_value_integer, "{}", NULL, "{\"a\":2}", NULL)
INVAL_CASE(users_value_array, "{}", NULL, "{\"a\":[2]}", NULL)
INVAL_CASE(users_value_empty, "{}", NULL, "{\"a\":\"\"}", NULL)
INVAL_CASE(users_value_empty_segment, "{}", NULL, "{\"a\":\"1,,2\"}", NULL)
INVAL_CASE(users_value_trailing_comma, "{}", NULL, "{\"a\":\"1,\"}", NULL)
INVAL_CASE(users_value_letters, "{}", NULL, "{\"a\":\"1,x\"}", NULL)
INVAL_CASE(users_value_space, "{}", NULL, "{\"a\":\"1, 2\"}", NULL)
INVAL_CASE(users_key_empty, "{}", NULL, "{\"\":\"1\"}", NULL)
/* tags */
INVAL_CASE(tags_array, "{}", NULL, NULL, "[]")
INVAL_CASE(tags_value_integer, "{}", NULL, NULL, "{\"1\":5}")
INVAL_CASE(tags_value_array, "{}", NULL, NULL, "{\"1\":[]}")
INVAL_CASE(tags_key_not_numeric, "{}", NULL, NULL, "{\"t\":{}}")
INVAL_CASE(tags_string_not_json, "{}", NULL, NULL, "{\"1\":\"{users\"}")
INVAL_CASE(tags_string_array, "{}", NULL, NULL, "{\"1\":\"[]\"}")
INVAL_CASE(tags_string_scalar, "{}", NULL, NULL, "{\"1\":\"5\"}")
INVAL_CASE(tags_string_duplicate_key, "{}", NULL, NULL,
           "{\"1\":\"{\\\"users\\\":[],\\\"users\\\":[\\\"x\\\"]}\"}")
INVAL_CASE(tags_users_not_array, "{}", NULL, NULL,
           "{\"1\":{\"users\":\"u01\"}}")
INVAL_CASE(tags_users_integer, "{}", NULL, NULL, "{\"1\":{\"users\":[7]}}")
INVAL_CASE(tags_parties_numeric_string, "{}", NULL, NULL,
           "{\"1\":{\"parties\":[\"3\"]}}")
INVAL_CASE(tags_parties_not_array, "{}", NULL, NULL, "{\"1\":{\"parties\":3}}")
/* A malformed entry fails even when the privilege never reaches it. */
INVAL_CASE(unreached_tag_checked, "{\"allow_tag\":[100]}", NULL, NULL,
           "{\"100\":{},\"999\":{\"users\":[1]}}")
INVAL_CASE(unreached_user_checked, "{\"allow_party\":[2]}", NULL,
           "{\"u02\":\"2\",\"zz\":\"q\"}", NULL)

static void
test_inval_null_privilege(void **state)
{
    json_t *pa = jparse(dir_parents);
    struct vrange *v = sentinel_vr;

    (void)state;
    assert_int_equal(vrange_build(NULL, pa, NULL, NULL, &v), BRK_ERR_INVAL);
    assert_ptr_equal(v, sentinel_vr);
    json_decref(pa);
}

/* jansson's parser refuses NUL in keys, so the object is built by hand. */
static void
test_inval_users_key_nul(void **state)
{
    json_t *p = jparse("{\"allow_party\":[1]}"), *u = json_object();
    struct vrange *v = sentinel_vr;

    (void)state;
    assert_int_equal(json_object_setn_new(u, "u01\0x", 5, json_string("1")), 0);
    assert_int_equal(vrange_build(p, NULL, u, NULL, &v), BRK_ERR_INVAL);
    assert_ptr_equal(v, sentinel_vr);
    json_decref(p);
    json_decref(u);
}

static void
test_inval_long_userid(void **state)
{
    char priv[400], users[400];

    (void)state;
    snprintf(priv, sizeof(priv), "{\"allow_user\":[\"%0257d\"]}", 0);
    expect_build_fails(priv, NULL, NULL, NULL, BRK_ERR_INVAL);
    snprintf(users, sizeof(users), "{\"%0257d\":\"1\"}", 0);
    expect_build_fails("{}", NULL, users, NULL, BRK_ERR_INVAL);
    /* 256 bytes is still a userid. */
    snprintf(priv, sizeof(priv), "{\"allow_user\":[\"%0256d\"]}", 0);
    vrange_free(build(priv));
}

static void
test_toobig_privilege_list(void **state)
{
    json_t *one = json_integer(1), *arr = json_array(), *p = json_object();
    struct vrange *v = sentinel_vr;
    size_t i;

    (void)state;
    assert_non_null(one);
    for (i = 0; i < 2000001; i++)
        assert_int_equal(json_array_append(arr, one), 0);
    assert_int_equal(json_object_set(p, "allow_party", arr), 0);
    assert_int_equal(vrange_build(p, NULL, NULL, NULL, &v), BRK_ERR_TOOBIG);
    assert_ptr_equal(v, sentinel_vr);
    json_decref(p);
    json_decref(arr);
    json_decref(one);
}

/*---- Narrow ----*/

static void
test_narrow_to_subtree(void **state)
{
    struct vrange *v = build("{\"allow_party\":[1],\"allow_user\":[\"u17\","
                             "\"ghost\"],\"allow_tag\":[100,200,300,400]}");
    const long parties[] = {3};

    (void)state;
    assert_int_equal(vrange_narrow(v, parties, 1), BRK_OK);
    expect_depts(v, "3 6 7");
    /* u17 and ghost were allowed by name but are outside 3. */
    expect_members(v, "u07 u08 u09 u11 u14 u16 u20");
    /* 100 loses u10, 300 loses u01 and 8; 200 is inside; 400 is empty. */
    expect_tags(v, "200 400");
    vrange_free(v);
}

static void
test_narrow_keeps_multi_department_member(void **state)
{
    struct vrange *v = build("{\"allow_party\":[2]}");
    const long parties[] = {5};

    (void)state;
    assert_int_equal(vrange_narrow(v, parties, 1), BRK_OK);
    expect_depts(v, "5");
    expect_members(v, "u06 u11");
    vrange_free(v);
}

static void
test_narrow_wider_changes_nothing(void **state)
{
    struct vrange *v = build("{\"allow_party\":[4],\"allow_tag\":[300]}");
    const long parties[] = {1, 99};

    (void)state;
    assert_int_equal(vrange_narrow(v, parties, 2), BRK_OK);
    expect_depts(v, "4 8 10");
    expect_members(v, "u01 u03 u04 u05 u12 u15 u19");
    expect_tags(v, "300");
    vrange_free(v);
}

static void
test_narrow_disjoint_departments(void **state)
{
    struct vrange *v = build("{\"allow_party\":[3],\"allow_tag\":[200]}");
    const long parties[] = {2};

    (void)state;
    assert_int_equal(vrange_narrow(v, parties, 1), BRK_OK);
    expect_depts(v, "");
    /* u11 is visible through 7 and inside the service's range through 5:
     * narrowing intersects member sets, not departments. */
    expect_members(v, "u11");
    /* 200's department 3 is gone. */
    expect_tags(v, "");
    vrange_free(v);
}

static void
test_narrow_twice_composes(void **state)
{
    struct vrange *v = build("{\"allow_party\":[1]}");
    const long first[] = {2}, second[] = {4, 3};

    (void)state;
    assert_int_equal(vrange_narrow(v, first, 1), BRK_OK);
    assert_int_equal(vrange_narrow(v, second, 2), BRK_OK);
    expect_depts(v, "4 8 10");
    /* u11 (5 and 7) is in the first narrowing through 5 and in the
     * second through 7. */
    expect_members(v, "u03 u04 u05 u11 u12 u15 u19");
    vrange_free(v);
}

static void
test_narrow_to_unknown_department(void **state)
{
    struct vrange *v = NULL;
    const long parties[] = {55};

    (void)state;
    assert_int_equal(build_with("{\"allow_party\":[55],\"allow_user\":"
                                "[\"a\"]}",
                                NULL, "{\"a\":\"55\",\"b\":\"2\"}", "{}", &v),
                     BRK_OK);
    assert_int_equal(vrange_narrow(v, parties, 1), BRK_OK);
    expect_depts(v, "55");
    assert_int_equal(vrange_members(v), 1);
    assert_true(vrange_has_member(v, "a", 1));
    vrange_free(v);
}

static void
test_narrow_zero_parties(void **state)
{
    struct vrange *v = build("{\"allow_party\":[1],\"allow_user\":[\"x\"],"
                             "\"allow_tag\":[100,400]}");

    (void)state;
    assert_int_equal(vrange_narrow(v, NULL, 0), BRK_OK);
    expect_depts(v, "");
    expect_members(v, "");
    expect_tags(v, "");
    vrange_free(v);
}

static void
test_narrow_invalid_party_changes_nothing(void **state)
{
    struct vrange *v = build("{\"allow_party\":[2]}");
    const long bad1[] = {3, -1}, bad2[] = {4294967296L};

    (void)state;
    assert_int_equal(vrange_narrow(v, bad1, 2), BRK_ERR_INVAL);
    assert_int_equal(vrange_narrow(v, bad2, 1), BRK_ERR_INVAL);
    expect_depts(v, "2 4 5 8 10");
    expect_members(v, "u02 u03 u04 u05 u06 u11 u12 u13 u15 u19");
    vrange_free(v);
}

static void
test_narrow_on_cycle(void **state)
{
    static const char parents[] =
        "{\"1\":\"0\",\"2\":\"3\",\"3\":\"2\",\"4\":\"3\",\"5\":\"5\"}";
    struct vrange *v = NULL;
    const long parties[] = {2, 5};

    (void)state;
    assert_int_equal(build_with("{\"allow_party\":[1,3,5]}", parents,
                                "{\"a\":\"4\",\"b\":\"1\",\"c\":\"5\"}", "{}",
                                &v),
                     BRK_OK);
    assert_int_equal(vrange_narrow(v, parties, 2), BRK_OK);
    expect_depts(v, "2 3 4 5");
    assert_int_equal(vrange_members(v), 2);
    assert_false(vrange_has_member(v, "b", 1));
    vrange_free(v);
}

/*---- Allocation failures ----*/

/*
 * Fail every allocation of one build in turn. jansson reports most of its
 * own allocation failures as syntax errors, so a tag stored as a string
 * may fail as BRK_ERR_INVAL then (string_tags); every other path must say
 * BRK_ERR_NOMEM.
 */
static void
alloc_loop_build(const char *tags, int string_tags)
{
    json_t *p = jparse("{\"allow_party\":[2,99],\"allow_user\":[\"u17\","
                       "\"ghost\"],\"extra_user\":[\"u01\"],"
                       "\"allow_tag\":[100,200,300,400]}");
    json_t *pa = jparse(dir_parents), *u = jparse(dir_users);
    json_t *t = jparse(tags);
    struct vrange *v;
    enum brk_err err;
    unsigned long n;
    int failed;

    for (n = 1;; n++) {
        v = sentinel_vr;
        brk_alloc_fail_at(n);
        err = vrange_build(p, pa, u, t, &v);
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        if (!failed) {
            assert_int_equal(err, BRK_OK);
            break;
        }
        if (!(string_tags && err == BRK_ERR_INVAL))
            assert_int_equal(err, BRK_ERR_NOMEM);
        assert_ptr_equal(v, sentinel_vr);
        assert_true(n < 10000);
    }
    assert_true(n > 10);
    expect_depts(v, "2 3 4 5 6 7 8 10 11 99");
    expect_members(v, "u01 u02 u03 u04 u05 u06 u07 u08 u09 u10 u11 u12 u13 "
                      "u14 u15 u16 u17 u18 u19 u20 ghost");
    expect_tags(v, "100 200 300 400");
    vrange_free(v);
    json_decref(p);
    json_decref(pa);
    json_decref(u);
    json_decref(t);
}

static void
test_alloc_failures_build(void **state)
{
    (void)state;
    alloc_loop_build(dir_tags_objects, 0);
}

static void
test_alloc_failures_build_string_tags(void **state)
{
    (void)state;
    alloc_loop_build(dir_tags, 1);
}

static void
test_alloc_failures_narrow(void **state)
{
    struct vrange *v = build("{\"allow_party\":[1],\"allow_user\":[\"u17\"],"
                             "\"allow_tag\":[100,200,300]}");
    const long parties[] = {3, 4};
    enum brk_err err;
    unsigned long n;
    int failed;

    (void)state;
    for (n = 1;; n++) {
        brk_alloc_fail_at(n);
        err = vrange_narrow(v, parties, 2);
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        if (!failed) {
            assert_int_equal(err, BRK_OK);
            break;
        }
        assert_int_equal(err, BRK_ERR_NOMEM);
        /* unchanged */
        assert_int_equal(vrange_members(v), 19);
        assert_int_equal(vrange_departments(v), 10);
        expect_tags(v, "100 200 300");
        assert_true(n < 1000);
    }
    assert_true(n > 5);
    expect_depts(v, "3 4 6 7 8 10");
    expect_members(v, "u03 u04 u05 u07 u08 u09 u11 u12 u14 u15 u16 u19 u20");
    expect_tags(v, "200");
    vrange_free(v);
}

/*---- Randomized cross-check against a naive reference ----*/

#define R_DEPTS 44 /* department ids 0..43 */
#define R_USERS 40 /* names r0..r39 */
#define R_TAGS  10 /* tag ids 0..9 */
#define R_MAXL  4

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
xorshift(void)
{
    uint64_t x = rng_state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static unsigned
rnd(unsigned n)
{
    return (unsigned)(xorshift() % n);
}

struct ref_dir {
    int parent[R_DEPTS]; /* -1: not a key */
    int listed[R_USERS]; /* in the users map */
    int nd[R_USERS];
    int dept[R_USERS][R_MAXL];
    int has_tag[R_TAGS];
    int ntu[R_TAGS], tu[R_TAGS][R_MAXL];
    int ntp[R_TAGS], tp[R_TAGS][R_MAXL];
    /* privilege, as flags */
    int party[R_DEPTS], user[R_USERS], tag[R_TAGS];
};

struct ref_view {
    int mem[R_USERS];
    int dept[R_DEPTS];
    int tag[R_TAGS];
};

/* Fixed point: a department is in when its parent is (parent 0 and
 * self-parents are no edge). */
static void
ref_subtree(const struct ref_dir *d, int *in)
{
    int changed = 1, i;

    while (changed) {
        changed = 0;
        for (i = 0; i < R_DEPTS; i++) {
            if (in[i] || d->parent[i] <= 0 || d->parent[i] == i)
                continue;
            if (in[d->parent[i]]) {
                in[i] = 1;
                changed = 1;
            }
        }
    }
}

static void
ref_build(const struct ref_dir *d, struct ref_view *r)
{
    int t, j, u;

    memset(r, 0, sizeof(*r));
    memcpy(r->dept, d->party, sizeof(r->dept));
    memcpy(r->tag, d->tag, sizeof(r->tag));
    for (t = 0; t < R_TAGS; t++)
        if (d->tag[t] && d->has_tag[t])
            for (j = 0; j < d->ntp[t]; j++)
                r->dept[d->tp[t][j]] = 1;
    ref_subtree(d, r->dept);
    for (u = 0; u < R_USERS; u++) {
        r->mem[u] = d->user[u];
        for (t = 0; t < R_TAGS; t++)
            if (d->tag[t] && d->has_tag[t])
                for (j = 0; j < d->ntu[t]; j++)
                    if (d->tu[t][j] == u)
                        r->mem[u] = 1;
        for (j = 0; j < d->nd[u]; j++)
            if (r->dept[d->dept[u][j]])
                r->mem[u] = 1;
    }
}

static void
ref_narrow(const struct ref_dir *d, struct ref_view *r, const long *p, size_t n)
{
    int in[R_DEPTS] = {0}, i, j, t, keep;
    size_t k;

    for (k = 0; k < n; k++)
        in[p[k]] = 1;
    ref_subtree(d, in);
    for (i = 0; i < R_USERS; i++) {
        keep = 0;
        for (j = 0; j < d->nd[i]; j++)
            if (in[d->dept[i][j]])
                keep = 1;
        r->mem[i] = r->mem[i] && keep;
    }
    for (i = 0; i < R_DEPTS; i++)
        r->dept[i] = r->dept[i] && in[i];
    for (t = 0; t < R_TAGS; t++) {
        keep = r->tag[t] && n > 0;
        if (d->has_tag[t]) {
            for (j = 0; j < d->ntu[t]; j++)
                if (!r->mem[d->tu[t][j]])
                    keep = 0;
            for (j = 0; j < d->ntp[t]; j++)
                if (!r->dept[d->tp[t][j]])
                    keep = 0;
        }
        r->tag[t] = keep;
    }
}

static void
rname(int u, char *buf, size_t n)
{
    snprintf(buf, n, "r%d", u);
}

static void
random_dir(struct ref_dir *d)
{
    int i, j, t;

    memset(d, 0, sizeof(*d));
    for (i = 0; i < R_DEPTS; i++) {
        d->parent[i] = -1;
        if (i == 0 || rnd(10) < 2)
            continue;
        j = (int)rnd(20);
        d->parent[i] = j < 3 ? 0 : j < 4 ? i : (int)(1 + rnd(R_DEPTS - 1));
    }
    for (i = 0; i < R_USERS; i++) {
        d->listed[i] = rnd(10) < 8;
        d->nd[i] = d->listed[i] ? (int)(1 + rnd(3)) : 0;
        for (j = 0; j < d->nd[i]; j++)
            d->dept[i][j] = (int)(1 + rnd(R_DEPTS - 1));
    }
    for (t = 0; t < R_TAGS; t++) {
        d->has_tag[t] = rnd(10) < 7;
        d->ntu[t] = d->has_tag[t] ? (int)rnd(R_MAXL) : 0;
        d->ntp[t] = d->has_tag[t] ? (int)rnd(3) : 0;
        for (j = 0; j < d->ntu[t]; j++)
            d->tu[t][j] = (int)rnd(R_USERS);
        for (j = 0; j < d->ntp[t]; j++)
            d->tp[t][j] = (int)(1 + rnd(R_DEPTS - 1));
    }
    for (i = 0, j = (int)rnd(4); i < j; i++)
        d->party[1 + rnd(R_DEPTS - 1)] = 1;
    for (i = 0, j = (int)rnd(4); i < j; i++)
        d->user[rnd(R_USERS)] = 1;
    for (i = 0, j = (int)rnd(3); i < j; i++)
        d->tag[rnd(R_TAGS)] = 1;
}

/* The JSON of d; the privilege lists are split over allow_ and extra_. */
static void
random_json(const struct ref_dir *d, json_t **priv, json_t **parents,
            json_t **users, json_t **tags)
{
    json_t *ap = json_array(), *ep = json_array(), *au = json_array();
    json_t *eu = json_array(), *at = json_array(), *et = json_array();
    json_t *o, *ul, *pl;
    char key[16], val[64], name[16];
    char *s;
    size_t off;
    int i, j;

    *parents = json_object();
    *users = json_object();
    *tags = json_object();
    for (i = 0; i < R_DEPTS; i++) {
        if (d->parent[i] < 0)
            continue;
        snprintf(key, sizeof(key), "%d", i);
        snprintf(val, sizeof(val), "%d", d->parent[i]);
        json_object_set_new(*parents, key, json_string(val));
    }
    for (i = 0; i < R_USERS; i++) {
        if (!d->listed[i])
            continue;
        rname(i, name, sizeof(name));
        for (j = 0, off = 0; j < d->nd[i]; j++)
            off += (size_t)snprintf(val + off, sizeof(val) - off, "%s%d",
                                    j ? "," : "", d->dept[i][j]);
        json_object_set_new(*users, name, json_string(val));
    }
    for (i = 0; i < R_TAGS; i++) {
        if (!d->has_tag[i])
            continue;
        ul = json_array();
        pl = json_array();
        for (j = 0; j < d->ntu[i]; j++) {
            rname(d->tu[i][j], name, sizeof(name));
            json_array_append_new(ul, json_string(name));
        }
        for (j = 0; j < d->ntp[i]; j++)
            json_array_append_new(pl, json_integer(d->tp[i][j]));
        o = json_object();
        if (d->ntu[i] > 0 || rnd(2))
            json_object_set_new(o, "users", ul);
        else
            json_decref(ul);
        if (d->ntp[i] > 0 || rnd(2))
            json_object_set_new(o, "parties", pl);
        else
            json_decref(pl);
        snprintf(key, sizeof(key), "%d", i);
        if (rnd(2)) {
            s = json_dumps(o, JSON_COMPACT);
            assert_non_null(s);
            json_object_set_new(*tags, key, json_string(s));
            brk_free(s);
            json_decref(o);
        } else {
            json_object_set_new(*tags, key, o);
        }
    }
    for (i = 0; i < R_DEPTS; i++)
        if (d->party[i])
            json_array_append_new(rnd(3) ? ap : ep, json_integer(i));
    for (i = 0; i < R_USERS; i++) {
        if (!d->user[i])
            continue;
        rname(i, name, sizeof(name));
        json_array_append_new(rnd(3) ? au : eu, json_string(name));
    }
    for (i = 0; i < R_TAGS; i++)
        if (d->tag[i])
            json_array_append_new(rnd(3) ? at : et, json_integer(i));
    *priv = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "allow_party", ap,
                      "extra_party", ep, "allow_user", au, "extra_user", eu,
                      "allow_tag", at, "extra_tag", et);
    assert_non_null(*priv);
}

static void
compare(const struct vrange *v, const struct ref_view *r, unsigned round)
{
    char name[16];
    size_t nm = 0, nd = 0;
    int i;

    for (i = 0; i < R_USERS; i++) {
        rname(i, name, sizeof(name));
        if (vrange_has_member(v, name, strlen(name)) != r->mem[i])
            print_error("round %u: member %s\n", round, name);
        assert_int_equal(vrange_has_member(v, name, strlen(name)), r->mem[i]);
        nm += (size_t)r->mem[i];
    }
    for (i = 0; i < R_DEPTS; i++) {
        if (vrange_has_department(v, i) != r->dept[i])
            print_error("round %u: department %d\n", round, i);
        assert_int_equal(vrange_has_department(v, i), r->dept[i]);
        nd += (size_t)r->dept[i];
    }
    for (i = 0; i < R_TAGS; i++) {
        if (vrange_has_tag(v, i) != r->tag[i])
            print_error("round %u: tag %d\n", round, i);
        assert_int_equal(vrange_has_tag(v, i), r->tag[i]);
    }
    assert_int_equal(vrange_members(v), nm);
    assert_int_equal(vrange_departments(v), nd);
}

/* The view answers as the narrowed range (r, its reference) does. */
static void
compare_view(const struct vrange_view *w, const struct ref_view *r,
             unsigned round)
{
    char name[16];
    int i;

    for (i = 0; i < R_USERS; i++) {
        rname(i, name, sizeof(name));
        if (vrange_view_has_member(w, name, strlen(name)) != r->mem[i])
            print_error("round %u: view member %s\n", round, name);
        assert_int_equal(vrange_view_has_member(w, name, strlen(name)),
                         r->mem[i]);
    }
    for (i = 0; i < R_DEPTS; i++)
        assert_int_equal(vrange_view_has_department(w, i), r->dept[i]);
    for (i = 0; i < R_TAGS; i++) {
        if (vrange_view_has_tag(w, i) != r->tag[i])
            print_error("round %u: view tag %d\n", round, i);
        assert_int_equal(vrange_view_has_tag(w, i), r->tag[i]);
    }
    assert_int_equal(vrange_view_has_member(w, "nobody", 6), 0);
    assert_int_equal(vrange_view_has_department(w, -1), 0);
    assert_int_equal(vrange_view_has_tag(w, 4294967296L), 0);
}

static void
test_random_cross_check(void **state)
{
    struct ref_dir d;
    struct ref_view r;
    struct vrange *v;
    struct vrange_view *w;
    json_t *priv, *parents, *users, *tags;
    long parties[4];
    size_t np, k;
    unsigned round;

    (void)state;
    rng_state = 0x9e3779b97f4a7c15ULL;
    for (round = 0; round < 2000; round++) {
        random_dir(&d);
        random_json(&d, &priv, &parents, &users, &tags);
        v = NULL;
        assert_int_equal(vrange_build(priv, parents, users, tags, &v), BRK_OK);
        ref_build(&d, &r);
        compare(v, &r, round);

        np = rnd(4);
        for (k = 0; k < np; k++)
            parties[k] = (long)rnd(R_DEPTS);
        w = NULL;
        assert_int_equal(vrange_view_new(v, parties, np, &w), BRK_OK);
        ref_narrow(&d, &r, parties, np);
        compare_view(w, &r, round);
        vrange_view_free(w);
        assert_int_equal(vrange_narrow(v, parties, np), BRK_OK);
        compare(v, &r, round);
        /* a narrowed range is not narrowed again through a view */
        assert_int_equal(vrange_view_new(v, parties, np, &w), BRK_ERR_INVAL);

        vrange_free(v);
        json_decref(priv);
        json_decref(parents);
        json_decref(users);
        json_decref(tags);
    }
}

/* One member changed in d and in v the same way: new departments, or
 * out of the directory. */
static void
random_member_change(struct ref_dir *d, struct vrange *v)
{
    char name[16], val[64];
    size_t off;
    int u = (int)rnd(R_USERS), j;

    rname(u, name, sizeof(name));
    if (rnd(4) == 0) {
        d->listed[u] = 0;
        d->nd[u] = 0;
        assert_int_equal(vrange_set_member(v, name, strlen(name), NULL, 0),
                         BRK_OK);
        return;
    }
    d->listed[u] = 1;
    d->nd[u] = (int)(1 + rnd(3));
    for (j = 0, off = 0; j < d->nd[u]; j++) {
        d->dept[u][j] = (int)(1 + rnd(R_DEPTS - 1));
        off += (size_t)snprintf(val + off, sizeof(val) - off, "%s%d",
                                j ? "," : "", d->dept[u][j]);
    }
    assert_int_equal(vrange_set_member(v, name, strlen(name), val, off),
                     BRK_OK);
}

/* A range changed member by member answers as one built over the changed
 * directory, and narrows the same way. */
static void
test_random_member_changes(void **state)
{
    struct ref_dir d;
    struct ref_view r;
    struct vrange *v, *c;
    json_t *priv, *parents, *users, *tags;
    long parties[4];
    size_t np, k;
    unsigned round, step;

    (void)state;
    rng_state = 0x2545f4914f6cdd1dULL;
    for (round = 0; round < 1000; round++) {
        random_dir(&d);
        random_json(&d, &priv, &parents, &users, &tags);
        v = NULL;
        assert_int_equal(vrange_build(priv, parents, users, tags, &v), BRK_OK);
        for (step = 0; step < 30; step++) {
            random_member_change(&d, v);
            ref_build(&d, &r);
            compare(v, &r, round);
        }
        np = rnd(4);
        for (k = 0; k < np; k++)
            parties[k] = (long)rnd(R_DEPTS);
        /* so does a view of the range changed member by member */
        {
            struct ref_view rn = r;
            struct vrange_view *w = NULL;

            ref_narrow(&d, &rn, parties, np);
            assert_int_equal(vrange_view_new(v, parties, np, &w), BRK_OK);
            compare_view(w, &rn, round);
            vrange_view_free(w);
        }
        /* a copy narrows as the range itself would; the range stays */
        c = NULL;
        assert_int_equal(vrange_copy(v, &c), BRK_OK);
        assert_int_equal(vrange_narrow(c, parties, np), BRK_OK);
        compare(v, &r, round);
        assert_int_equal(vrange_narrow(v, parties, np), BRK_OK);
        ref_narrow(&d, &r, parties, np);
        compare(v, &r, round);
        compare(c, &r, round);
        vrange_free(c);
        /* a narrowed range is built again, never changed in place */
        assert_int_equal(vrange_set_member(v, "r1", 2, "1", 1), BRK_ERR_INVAL);
        compare(v, &r, round);
        vrange_free(v);
        json_decref(priv);
        json_decref(parents);
        json_decref(users);
        json_decref(tags);
    }
}

/* Hostile changes are refused and change nothing. */
static void
test_set_member_refused(void **state)
{
    struct vrange *v = build("{\"allow_party\":[1],\"allow_user\":[\"u17\"],"
                             "\"allow_tag\":[100,200,300]}");
    const char *bad[] = {"",  ",",  "1,",  ",1",         "1,,2",
                         "x", "-1", "1 2", "4294967296", "01"};
    char longid[300];
    size_t i, before = vrange_members(v);

    (void)state;
    for (i = 0; i < nitems(bad); i++)
        assert_int_equal(vrange_set_member(v, "u01", 3, bad[i], strlen(bad[i])),
                         BRK_ERR_INVAL);
    assert_int_equal(vrange_set_member(v, "", 0, "1", 1), BRK_ERR_INVAL);
    assert_int_equal(vrange_set_member(v, "a\0b", 3, "1", 1), BRK_ERR_INVAL);
    memset(longid, 'a', sizeof(longid));
    assert_int_equal(vrange_set_member(v, longid, sizeof(longid), "1", 1),
                     BRK_ERR_INVAL);
    assert_int_equal(vrange_set_member(NULL, "u01", 3, "1", 1), BRK_ERR_INVAL);
    assert_int_equal(vrange_members(v), before);
    assert_true(vrange_has_member(v, "u01", 3));
    vrange_free(v);
}

/* Out of memory at any step leaves the range as it was. */
static void
test_alloc_failures_set_member(void **state)
{
    struct vrange *v = build("{\"allow_party\":[1],\"allow_user\":[\"u17\"],"
                             "\"allow_tag\":[100,200,300]}");
    enum brk_err err;
    unsigned long n;
    int failed;
    size_t before = vrange_members(v);

    (void)state;
    for (n = 1;; n++) {
        brk_alloc_fail_at(n);
        err = vrange_set_member(v, "newcomer", 8, "3,4", 3);
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        if (!failed) {
            assert_int_equal(err, BRK_OK);
            break;
        }
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_int_equal(vrange_members(v), before);
        assert_false(vrange_has_member(v, "newcomer", 8));
        assert_true(n < 100);
    }
    assert_int_equal(vrange_members(v), before + 1);
    assert_true(vrange_has_member(v, "newcomer", 8));
    vrange_free(v);
}

/* A copy that runs out of memory is no copy; one that does not answers
 * as the range, and outlives it. */
static void
test_alloc_failures_copy(void **state)
{
    struct vrange *v = build("{\"allow_party\":[1],\"allow_user\":[\"u17\"],"
                             "\"allow_tag\":[100,200,300]}");
    struct vrange *c = NULL;
    enum brk_err err;
    unsigned long n;
    int failed;

    (void)state;
    for (n = 1;; n++) {
        brk_alloc_fail_at(n);
        err = vrange_copy(v, &c);
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        if (!failed) {
            assert_int_equal(err, BRK_OK);
            break;
        }
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(c);
        assert_true(n < 100);
    }
    assert_true(n > 5);
    vrange_free(v);
    assert_int_equal(vrange_members(c), 19);
    assert_int_equal(vrange_departments(c), 10);
    expect_tags(c, "100 200 300");
    assert_int_equal(vrange_copy(NULL, &c), BRK_ERR_INVAL);
    vrange_free(c);
}

/* A view of parties that cannot be ids is refused; out of memory it is
 * no view; made, it answers as the narrowed range. */
static void
test_view_refused_and_alloc_failures(void **state)
{
    struct vrange *v = build("{\"allow_party\":[1],\"allow_user\":[\"u17\"],"
                             "\"allow_tag\":[100,200,300]}");
    const long bad[] = {3, -1}, big[] = {4294967296L}, parties[] = {3, 4};
    struct vrange_view *w = NULL;
    enum brk_err err;
    unsigned long n;
    int failed;

    (void)state;
    assert_int_equal(vrange_view_new(v, bad, 2, &w), BRK_ERR_INVAL);
    assert_int_equal(vrange_view_new(v, big, 1, &w), BRK_ERR_INVAL);
    assert_int_equal(vrange_view_new(NULL, parties, 2, &w), BRK_ERR_INVAL);
    assert_int_equal(vrange_view_new(v, NULL, 2, &w), BRK_ERR_INVAL);
    assert_null(w);
    for (n = 1;; n++) {
        brk_alloc_fail_at(n);
        err = vrange_view_new(v, parties, 2, &w);
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        if (!failed) {
            assert_int_equal(err, BRK_OK);
            break;
        }
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(w);
        assert_true(n < 100);
    }
    /* as test_alloc_failures_narrow's narrowed range answers */
    assert_true(vrange_view_has_department(w, 3));
    assert_false(vrange_view_has_department(w, 1));
    assert_true(vrange_view_has_tag(w, 200));
    assert_false(vrange_view_has_tag(w, 100));
    assert_true(vrange_view_has_member(w, "u03", 3));
    assert_false(vrange_view_has_member(w, "u17", 3));
    vrange_view_free(w);
    vrange_free(v);
}

/* Thousands of members leaving, coming back and moving: the table is
 * packed again on the way (tags keep their members) and stays exact. */
static void
test_set_member_repacks(void **state)
{
    json_t *parents = json_object(), *users = json_object();
    json_t *tags = json_object(), *priv;
    struct vrange *v = NULL;
    char key[32];
    size_t before, first = 0;
    int i, round;

    (void)state;
    json_object_set_new(parents, "1", json_string("0"));
    json_object_set_new(parents, "2", json_string("0"));
    for (i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "m%05d", i);
        json_object_set_new(users, key, json_string("1"));
    }
    json_object_set_new(
        tags, "7",
        json_pack("{s:[s,s],s:[]}", "users", "m00003", "outsider", "parties"));
    priv = jparse("{\"allow_party\":[1],\"allow_tag\":[7]}");
    assert_int_equal(vrange_build(priv, parents, users, tags, &v), BRK_OK);
    before = vrange_members(v);
    assert_int_equal(before, 20001);
    before = vrange_memory(v);
    for (round = 0; round < 10; round++) {
        /* every member to the department out of range, then back */
        for (i = 0; i < 20000; i++) {
            snprintf(key, sizeof(key), "m%05d", i);
            assert_int_equal(vrange_set_member(v, key, strlen(key), "2", 1),
                             BRK_OK);
        }
        /* m00003 and outsider stay: the tag lists them */
        assert_int_equal(vrange_members(v), 2);
        assert_true(vrange_has_member(v, "m00003", 6));
        assert_true(vrange_has_member(v, "outsider", 8));
        assert_false(vrange_has_member(v, "m00004", 6));
        assert_true(vrange_has_tag(v, 7));
        for (i = 0; i < 20000; i++) {
            snprintf(key, sizeof(key), "m%05d", i);
            assert_int_equal(vrange_set_member(v, key, strlen(key),
                                               i % 2 ? "2,1" : "1",
                                               i % 2 ? 3 : 1),
                             BRK_OK);
        }
        assert_int_equal(vrange_members(v), 20001);
        assert_true(vrange_has_member(v, "m19999", 6));
        assert_int_equal(vrange_set_member(v, "outsider", 8, NULL, 0), BRK_OK);
        assert_true(vrange_has_member(v, "outsider", 8));
        if (round == 0)
            first = vrange_memory(v);
    }
    /* packed on the way: not ten rounds of garbage */
    print_message("range: %zu bytes built, %zu after a round, %zu after ten\n",
                  before, first, vrange_memory(v));
    assert_true(vrange_memory(v) < first * 2);
    vrange_free(v);
    json_decref(priv);
    json_decref(parents);
    json_decref(users);
    json_decref(tags);
}

/*---- Size ----*/

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void
test_size_100k_members(void **state)
{
    json_t *parents = json_object(), *users = json_object();
    json_t *tags = json_object(), *priv;
    struct vrange *v = NULL;
    char key[32], val[32];
    const long narrow[] = {2};
    double t0, t1;
    int i, hits = 0;

    (void)state;
    rng_state = 42;
    json_object_set_new(parents, "1", json_string("0"));
    for (i = 2; i <= 5000; i++) {
        snprintf(key, sizeof(key), "%d", i);
        snprintf(val, sizeof(val), "%u", 1 + rnd((unsigned)(i - 1)));
        json_object_set_new(parents, key, json_string(val));
    }
    for (i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "user%06d", i);
        if (i % 3 == 0)
            snprintf(val, sizeof(val), "%u,%u", 1 + rnd(5000), 1 + rnd(5000));
        else
            snprintf(val, sizeof(val), "%u", 1 + rnd(5000));
        json_object_set_new(users, key, json_string(val));
    }
    json_object_set_new(tags, "1",
                        json_pack("{s:[s,s],s:[i]}", "users", "user000001",
                                  "user000002", "parties", 17));
    priv = jparse("{\"allow_party\":[1],\"allow_tag\":[1]}");

    t0 = now_ms();
    assert_int_equal(vrange_build(priv, parents, users, tags, &v), BRK_OK);
    t1 = now_ms();
    print_message("build: 100000 members, 5000 departments in %.1f ms, "
                  "%zu bytes\n",
                  t1 - t0, vrange_memory(v));
    assert_int_equal(vrange_members(v), 100000);
    assert_int_equal(vrange_departments(v), 5000);
    assert_true(vrange_memory(v) > 100000 * 10);
    assert_true(vrange_memory(v) < 100000 * 200);

    t0 = now_ms();
    for (i = 0; i < 1000000; i++) {
        snprintf(key, sizeof(key), "user%06ld", (long)i * 7919 % 200000);
        hits += vrange_has_member(v, key, strlen(key));
    }
    t1 = now_ms();
    print_message("lookup: 1000000 has_member in %.1f ms\n", t1 - t0);
    assert_int_equal(hits, 500000);

    t0 = now_ms();
    assert_int_equal(vrange_narrow(v, narrow, 1), BRK_OK);
    t1 = now_ms();
    print_message("narrow to 2: %zu members, %zu departments in %.1f ms, "
                  "%zu bytes\n",
                  vrange_members(v), vrange_departments(v), t1 - t0,
                  vrange_memory(v));
    assert_true(vrange_members(v) < 100000);
    assert_true(vrange_departments(v) < 5000);
    assert_true(vrange_has_department(v, 2));
    assert_false(vrange_has_department(v, 1));
    vrange_free(v);
    json_decref(priv);
    json_decref(parents);
    json_decref(users);
    json_decref(tags);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_allow_party_subtree),
        cmocka_unit_test(test_allow_party_deep_descendants_only),
        cmocka_unit_test(test_allow_party_leaf),
        cmocka_unit_test(test_allow_party_root_is_whole_corp),
        cmocka_unit_test(test_allow_party_zero_is_not_an_ancestor),
        cmocka_unit_test(test_allow_user_alone),
        cmocka_unit_test(test_extra_lists),
        cmocka_unit_test(test_allow_and_extra_combine),
        cmocka_unit_test(test_allow_tag_users_only),
        cmocka_unit_test(test_allow_tag_parties_only),
        cmocka_unit_test(test_allow_tag_users_and_parties),
        cmocka_unit_test(test_tag_missing_from_directory),
        cmocka_unit_test(test_empty_privilege_sees_nothing),
        cmocka_unit_test(test_empty_and_null_lists),
        cmocka_unit_test(test_member_in_several_departments),
        cmocka_unit_test(test_cycle_in_parents),
        cmocka_unit_test(test_self_parent),
        cmocka_unit_test(test_department_missing_from_parents),
        cmocka_unit_test(test_member_department_missing_from_parents),
        cmocka_unit_test(test_null_directory_parts),
        cmocka_unit_test(test_tags_as_strings_and_objects),
        cmocka_unit_test(test_tag_null_lists),
        cmocka_unit_test(test_counts),
        cmocka_unit_test(test_has_member_uses_len),
        cmocka_unit_test(test_unknown_ids),
        cmocka_unit_test(test_largest_ids),
        cmocka_unit_test(test_userid_with_unusual_bytes),
        cmocka_unit_test(test_inval_null_privilege),
        cmocka_unit_test(test_inval_privilege_array),
        cmocka_unit_test(test_inval_allow_party_not_array),
        cmocka_unit_test(test_inval_allow_party_object),
        cmocka_unit_test(test_inval_allow_party_numeric_string),
        cmocka_unit_test(test_inval_allow_party_real),
        cmocka_unit_test(test_inval_allow_party_negative),
        cmocka_unit_test(test_inval_allow_party_too_big),
        cmocka_unit_test(test_inval_allow_party_null_element),
        cmocka_unit_test(test_inval_extra_party_string),
        cmocka_unit_test(test_inval_allow_user_integer),
        cmocka_unit_test(test_inval_allow_user_string_list),
        cmocka_unit_test(test_inval_allow_user_empty),
        cmocka_unit_test(test_inval_allow_user_nul),
        cmocka_unit_test(test_inval_extra_user_object),
        cmocka_unit_test(test_inval_allow_tag_numeric_string),
        cmocka_unit_test(test_inval_extra_tag_bool),
        cmocka_unit_test(test_inval_parents_array),
        cmocka_unit_test(test_inval_parents_value_integer),
        cmocka_unit_test(test_inval_parents_key_not_numeric),
        cmocka_unit_test(test_inval_parents_key_leading_zero),
        cmocka_unit_test(test_inval_parents_value_signed),
        cmocka_unit_test(test_inval_parents_value_space),
        cmocka_unit_test(test_inval_parents_value_empty),
        cmocka_unit_test(test_inval_parents_value_too_big),
        cmocka_unit_test(test_inval_parents_value_null),
        cmocka_unit_test(test_inval_users_array),
        cmocka_unit_test(test_inval_users_value_integer),
        cmocka_unit_test(test_inval_users_value_array),
        cmocka_unit_test(test_inval_users_value_empty),
        cmocka_unit_test(test_inval_users_value_empty_segment),
        cmocka_unit_test(test_inval_users_value_trailing_comma),
        cmocka_unit_test(test_inval_users_value_letters),
        cmocka_unit_test(test_inval_users_value_space),
        cmocka_unit_test(test_inval_users_key_empty),
        cmocka_unit_test(test_inval_users_key_nul),
        cmocka_unit_test(test_inval_tags_array),
        cmocka_unit_test(test_inval_tags_value_integer),
        cmocka_unit_test(test_inval_tags_value_array),
        cmocka_unit_test(test_inval_tags_key_not_numeric),
        cmocka_unit_test(test_inval_tags_string_not_json),
        cmocka_unit_test(test_inval_tags_string_array),
        cmocka_unit_test(test_inval_tags_string_scalar),
        cmocka_unit_test(test_inval_tags_string_duplicate_key),
        cmocka_unit_test(test_inval_tags_users_not_array),
        cmocka_unit_test(test_inval_tags_users_integer),
        cmocka_unit_test(test_inval_tags_parties_numeric_string),
        cmocka_unit_test(test_inval_tags_parties_not_array),
        cmocka_unit_test(test_inval_unreached_tag_checked),
        cmocka_unit_test(test_inval_unreached_user_checked),
        cmocka_unit_test(test_inval_long_userid),
        cmocka_unit_test(test_toobig_privilege_list),
        cmocka_unit_test(test_narrow_to_subtree),
        cmocka_unit_test(test_narrow_keeps_multi_department_member),
        cmocka_unit_test(test_narrow_wider_changes_nothing),
        cmocka_unit_test(test_narrow_disjoint_departments),
        cmocka_unit_test(test_narrow_twice_composes),
        cmocka_unit_test(test_narrow_to_unknown_department),
        cmocka_unit_test(test_narrow_zero_parties),
        cmocka_unit_test(test_narrow_invalid_party_changes_nothing),
        cmocka_unit_test(test_narrow_on_cycle),
        cmocka_unit_test(test_alloc_failures_build),
        cmocka_unit_test(test_alloc_failures_build_string_tags),
        cmocka_unit_test(test_alloc_failures_narrow),
        cmocka_unit_test(test_random_cross_check),
        cmocka_unit_test(test_random_member_changes),
        cmocka_unit_test(test_set_member_refused),
        cmocka_unit_test(test_alloc_failures_set_member),
        cmocka_unit_test(test_set_member_repacks),
        cmocka_unit_test(test_alloc_failures_copy),
        cmocka_unit_test(test_view_refused_and_alloc_failures),
        cmocka_unit_test(test_size_100k_members),
    };

    /* jansson allocates through brk_malloc too, so the tag strings it
     * parses inside vrange_build fail with the rest. */
    json_set_alloc_funcs(brk_malloc, brk_free);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
