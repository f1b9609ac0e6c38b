/*
 * agent/get narrowed to a service's own range: the tops of a narrowed
 * range over a hand-made directory, and the rewrite of a filtered reply
 * (departments replaced, tags emptied, counts of what was removed, WeCom
 * errors and grants without contacts left alone, hostile input refused).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "agent_range.h"
#include "broker.h"
#include "visible_range.h"

/*
 *   1 -+- 2 -+- 4 -- 8
 *      |     `- 5
 *      +- 3 -+- 6
 *      |     `- 7
 *      `- 9
 */
static const char parents[] =
    "{\"1\":\"0\",\"2\":\"1\",\"3\":\"1\",\"4\":\"2\",\"5\":\"2\","
    "\"6\":\"3\",\"7\":\"3\",\"8\":\"4\",\"9\":\"1\"}";
static const char users[] = "{\"u1\":\"1\",\"u2\":\"2\",\"u4\":\"4\","
                            "\"u6\":\"6\",\"u8\":\"8\",\"u9\":\"9\"}";
static const char tags[] = "{\"50\":{\"users\":[\"u9\"],\"parties\":[6]}}";

static json_t *
jparse(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);

    if (j == NULL)
        print_error("bad test JSON: %s: %s\n", jerr.text, text);
    assert_non_null(j);
    return j;
}

/* The tenant's range for priv, narrowed to parties (n < 0: not). */
static struct vrange *
range(const char *priv, const long *parties, int n)
{
    json_t *p = jparse(priv), *pa = jparse(parents), *u = jparse(users),
           *t = jparse(tags);
    struct vrange *v = NULL;

    assert_int_equal(vrange_build(p, pa, u, t, &v), BRK_OK);
    if (n >= 0)
        assert_int_equal(vrange_narrow(v, parties, (size_t)n), BRK_OK);
    json_decref(p);
    json_decref(pa);
    json_decref(u);
    json_decref(t);
    return v;
}

/* The tops of v as "a,b,c". */
static void
tops_text(const struct vrange *v, char *buf, size_t len)
{
    long *ids = (long *)(uintptr_t)0x1;
    size_t n = 99, i, o = 0;

    assert_int_equal(vrange_top_departments(v, &ids, &n), BRK_OK);
    buf[0] = '\0';
    for (i = 0; i < n; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%ld", i ? "," : "", ids[i]);
    if (n == 0)
        assert_null(ids);
    brk_free(ids);
}

static void
test_tops(void **state)
{
    static const long p3[] = {3}, p4_6[] = {4, 6}, p2[] = {2}, p1[] = {1},
                      p77[] = {77};
    struct {
        const char *priv;
        const long *parties;
        int n;
        const char *want;
    } cases[] = {
        /* not narrowed: the tenant's own tops */
        {"{\"allow_party\":[1]}", NULL, -1, "1"},
        {"{\"allow_party\":[2,4,9]}", NULL, -1, "2,9"},
        /* the service's departments within the tenant's range */
        {"{\"allow_party\":[1]}", p3, 1, "3"},
        {"{\"allow_party\":[1]}", p4_6, 2, "4,6"},
        /* a service department outside: only what lies within */
        {"{\"allow_party\":[2]}", p3, 1, ""},
        {"{\"allow_party\":[2]}", p4_6, 2, "4"},
        /* the tenant's departments within a wider service department */
        {"{\"allow_party\":[4,5,9]}", p2, 1, "4,5"},
        {"{\"allow_party\":[8]}", p1, 1, "8"},
        /* a tag's department is part of the range */
        {"{\"allow_tag\":[50]}", p3, 1, "6"},
        /* an unknown department, and none at all */
        {"{\"allow_party\":[1]}", p77, 1, ""},
        {"{\"allow_party\":[1]}", NULL, 0, ""},
        {"{\"allow_user\":[\"u1\"]}", NULL, -1, ""},
    };
    char buf[128];
    size_t i;
    struct vrange *v;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        v = range(cases[i].priv, cases[i].parties, cases[i].n);
        tops_text(v, buf, sizeof(buf));
        if (strcmp(buf, cases[i].want) != 0)
            print_error("case %zu: want \"%s\", got \"%s\"\n", i, cases[i].want,
                        buf);
        assert_string_equal(buf, cases[i].want);
        vrange_free(v);
    }
}

/* A cycle in the parents is no top: nothing is listed for it. */
static void
test_tops_cycle(void **state)
{
    json_t *p = jparse("{\"allow_party\":[20]}"),
           *pa = jparse("{\"20\":\"21\",\"21\":\"20\"}");
    struct vrange *v = NULL;
    char buf[32];

    (void)state;
    assert_int_equal(vrange_build(p, pa, NULL, NULL, &v), BRK_OK);
    assert_true(vrange_has_department(v, 21));
    tops_text(v, buf, sizeof(buf));
    assert_string_equal(buf, "");
    vrange_free(v);
    json_decref(p);
    json_decref(pa);
}

static const char reply[] =
    "{\"errcode\":0,\"errmsg\":\"ok\",\"agentid\":1000002,"
    "\"name\":\"\xe6\xa8\xa1\xe6\x8b\x9f\",\"allow_userinfos\":{\"user\":"
    "[{\"userid\":\"u6\"}]},\"allow_partys\":{\"partyid\":[1,9]},"
    "\"allow_tags\":{\"tagid\":[50,51]},\"close\":0}";

static void
test_rewrite(void **state)
{
    static const long p3[] = {3};
    struct vrange *v = range("{\"allow_party\":[1]}", p3, 1);
    char *out = NULL;
    size_t len = 0;
    unsigned long dropped = 7;

    (void)state;
    assert_int_equal(
        agent_range_rewrite(reply, strlen(reply), v, &out, &len, &dropped),
        BRK_OK);
    /* 1 and 9 replaced by 3; both tags gone; the rest as it was */
    assert_string_equal(
        out, "{\"errcode\":0,\"errmsg\":\"ok\",\"agentid\":1000002,"
             "\"name\":\"\xe6\xa8\xa1\xe6\x8b\x9f\",\"allow_userinfos\":{"
             "\"user\":[{\"userid\":\"u6\"}]},\"allow_partys\":{\"partyid\":"
             "[3]},\"allow_tags\":{\"tagid\":[]},\"close\":0}");
    assert_int_equal(len, strlen(out));
    assert_int_equal(dropped, 4);
    brk_free(out);
    vrange_free(v);
}

/* A department the reply already lists and the narrowed range keeps is
 * not counted as removed. */
static void
test_rewrite_counts_only_removals(void **state)
{
    static const long p1[] = {1};
    static const char in[] = "{\"errcode\":0,\"allow_partys\":"
                             "{\"partyid\":[4,5]},\"allow_tags\":{}}";
    struct vrange *v = range("{\"allow_party\":[4,5,9]}", p1, 1);
    char *out = NULL;
    size_t len = 0;
    unsigned long dropped = 7;

    (void)state;
    assert_int_equal(
        agent_range_rewrite(in, strlen(in), v, &out, &len, &dropped), BRK_OK);
    assert_string_equal(out, "{\"errcode\":0,\"allow_partys\":{\"partyid\":"
                             "[4,5,9]},\"allow_tags\":{}}");
    assert_int_equal(dropped, 0);
    brk_free(out);
    vrange_free(v);
}

/* Without the lists (a grant without contacts) nothing is added; a
 * WeCom error passes as it is. */
static void
test_rewrite_leaves_what_is_not_there(void **state)
{
    static const long p3[] = {3};
    static const char *const same[] = {
        "{\"errcode\":0,\"errmsg\":\"ok\",\"agentid\":1,\"name\":\"x\"}",
        "{\"errcode\":60011,\"errmsg\":\"no\",\"allow_partys\":"
        "{\"partyid\":[1]}}",
    };
    struct vrange *v = range("{\"allow_party\":[1]}", p3, 1);
    char *out;
    size_t len, i;
    unsigned long dropped;

    (void)state;
    for (i = 0; i < 2; i++) {
        out = NULL;
        dropped = 7;
        assert_int_equal(agent_range_rewrite(same[i], strlen(same[i]), v, &out,
                                             &len, &dropped),
                         BRK_OK);
        assert_string_equal(out, same[i]);
        assert_int_equal(dropped, 0);
        brk_free(out);
    }
    vrange_free(v);
}

static void
test_rewrite_refuses_non_objects(void **state)
{
    static const long p3[] = {3};
    static const char *const bad[] = {
        "", "[]", "{\"errcode\":0,\"errcode\":0}", "{\"a\":", "42",
    };
    struct vrange *v = range("{\"allow_party\":[1]}", p3, 1);
    char *out = (char *)(uintptr_t)0x1;
    size_t len = 99, i;
    unsigned long dropped = 99;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(agent_range_rewrite(bad[i], strlen(bad[i]), v, &out,
                                             &len, &dropped),
                         BRK_ERR_INVAL);
        /* out-params untouched on failure */
        assert_ptr_equal(out, (char *)(uintptr_t)0x1);
        assert_int_equal(len, 99);
        assert_int_equal(dropped, 99);
    }
    vrange_free(v);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tops),
        cmocka_unit_test(test_tops_cycle),
        cmocka_unit_test(test_rewrite),
        cmocka_unit_test(test_rewrite_counts_only_removals),
        cmocka_unit_test(test_rewrite_leaves_what_is_not_there),
        cmocka_unit_test(test_rewrite_refuses_non_objects),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
