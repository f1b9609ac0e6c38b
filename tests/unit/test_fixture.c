/*
 * Tests for the generated enterprise: bounds, determinism, the default
 * visible range, every renderer's JSON, lookups and cursors, and
 * allocation failures. The module lives in mocks/ (linked into
 * bin/mock-wecom, not into libbroker.a), so its source is compiled into
 * this test directly, which also makes its static helpers testable.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include <jansson.h>

#include "../../mocks/fixture.c"

#define LIMIT (256L * 1024 * 1024)

static const struct fixture_sizes small = FIXTURE_SIZES_DEFAULT;

/*---- Helpers ----*/

static struct fixture_corp *
corp(uint64_t seed, long index)
{
    struct fixture_corp *c = NULL;

    assert_int_equal(fixture_corp_new(seed, index, &small, &c), BRK_OK);
    assert_non_null(c);
    return c;
}

/* Parse a rendered reply; it must be JSON with errcode 0 and a note. */
static json_t *
parsed(const struct dynbuf *d)
{
    json_error_t err;
    json_t *j;

    assert_non_null(d->buf);
    j = json_loadb(d->buf, d->len, JSON_REJECT_DUPLICATES, &err);
    if (j == NULL)
        fail_msg("invalid JSON: %s at %d: %.120s", err.text, err.position,
                 d->buf);
    assert_int_equal(json_integer_value(json_object_get(j, "errcode")), 0);
    assert_string_equal(json_string_value(json_object_get(j, "errmsg")), "ok");
    assert_non_null(
        json_string_value(json_object_get(j, "mock_internal_note")));
    return j;
}

static char *
user_list_text(const struct fixture_corp *c)
{
    struct dynbuf d;
    char *out = NULL;

    dynbuf_init(&d, LIMIT);
    assert_int_equal(fixture_render_user_list(c, 1, 1, &d), BRK_OK);
    assert_int_equal(dynbuf_take(&d, &out, NULL), BRK_OK);
    return out;
}

/*---- Generation ----*/

static void
test_new_rejects_bad_sizes(void **state)
{
    const struct fixture_sizes bad[] = {
        {2, 40, 4, 20, 5},
        {12, 2, 4, 20, 5},
        {12, 40, 0, 20, 5},
        {12, 40, 4, -1, 5},
        {12, 40, 4, 20, -1},
        {FIXTURE_MAX_DEPARTMENTS + 1, 40, 4, 20, 5},
        {12, FIXTURE_MAX_MEMBERS + 1, 4, 20, 5},
        {12, 40, FIXTURE_MAX_TAGS + 1, 20, 5},
        {12, 40, 4, FIXTURE_MAX_CUSTOMERS + 1, 5},
        {12, 40, 4, 20, FIXTURE_MAX_CHATS + 1},
    };
    struct fixture_corp *c = NULL;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(bad); i++) {
        assert_int_equal(fixture_corp_new(1, 1, &bad[i], &c), BRK_ERR_INVAL);
        assert_null(c);
    }
    assert_int_equal(fixture_corp_new(1, 0, &small, &c), BRK_ERR_INVAL);
    assert_int_equal(fixture_corp_new(1, 10000, &small, &c), BRK_ERR_INVAL);
    assert_int_equal(fixture_corp_new(1, 1, NULL, &c), BRK_ERR_INVAL);
    assert_null(c);
    fixture_corp_free(NULL);
}

static void
test_minimum_sizes_work(void **state)
{
    const struct fixture_sizes tiny = {3, 3, 1, 0, 0};
    struct fixture_corp *c = NULL;
    struct dynbuf d;
    json_t *j;

    (void)state;
    assert_int_equal(fixture_corp_new(9, 1, &tiny, &c), BRK_OK);
    dynbuf_init(&d, LIMIT);
    assert_int_equal(fixture_render_user_list(c, 1, 1, &d), BRK_OK);
    j = parsed(&d);
    assert_int_equal(json_array_size(json_object_get(j, "userlist")), 3);
    json_decref(j);
    dynbuf_reset(&d);
    assert_int_equal(fixture_render_follow_user_list(c, &d), BRK_OK);
    j = parsed(&d);
    assert_int_equal(json_array_size(json_object_get(j, "follow_user")), 0);
    json_decref(j);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_same_seed_same_bytes(void **state)
{
    struct fixture_corp *a = corp(7, 1), *b = corp(7, 1), *c = corp(8, 1),
                        *d = corp(7, 2);
    char *ta = user_list_text(a), *tb = user_list_text(b),
         *tc = user_list_text(c), *td = user_list_text(d);

    (void)state;
    assert_string_equal(ta, tb);
    assert_string_not_equal(ta, tc);
    assert_string_not_equal(ta, td);
    assert_string_equal(fixture_corp_id(d), "wwmockcorp0002");
    assert_non_null(strstr(fixture_corp_name(d), "模拟企业2"));
    brk_free(ta);
    brk_free(tb);
    brk_free(tc);
    brk_free(td);
    fixture_corp_free(a);
    fixture_corp_free(b);
    fixture_corp_free(c);
    fixture_corp_free(d);
}

static void
test_default_range_leaves_members_out(void **state)
{
    struct fixture_corp *c = corp(1, 1);
    const struct fixture_privilege *p = fixture_corp_privilege(c);
    unsigned char *in2 = subtree_marks(c, 2);
    const struct f_tag *t1 = &c->tag[0];
    long i, outside = 0;
    int k;

    (void)state;
    assert_non_null(in2);
    assert_int_equal(p->level, 1);
    assert_int_equal(p->nallow_party, 1);
    assert_int_equal(p->allow_party[0], 2);
    assert_int_equal(p->nallow_user, 1);
    assert_string_equal(p->allow_user[0], "u00003");
    assert_int_equal(p->nallow_tag, 1);
    assert_int_equal(p->allow_tag[0], 1);
    assert_int_equal(p->nextra_party + p->nextra_user + p->nextra_tag, 0);
    /* department 3 is outside department 2's subtree */
    assert_false(in2[2]);
    /* tag 1 widens the range only inside department 2's subtree */
    for (k = 0; k < t1->nparty; k++)
        assert_true(in2[t1->party[k] - 1]);
    for (i = 0; i < c->sz.members; i++) {
        int vis = member_in_marks(c, i, in2) || i == 2;

        for (k = 0; k < t1->nuser; k++)
            vis |= t1->user[k] == i;
        outside += !vis;
        if (i == 1)
            assert_false(vis);
    }
    assert_true(outside > 0);
    /* u00003, the allow_user, is outside the subtree */
    assert_false(member_in_marks(c, 2, in2));
    brk_free(in2);
    fixture_corp_free(c);
}

/*---- Renderers ----*/

static void
test_every_renderer_is_valid_json(void **state)
{
    struct fixture_corp *c = corp(3, 1);
    const char *users[] = {"u00001", "u00002", "nobody"};
    char ext[ID_SIZE], chat[ID_SIZE];
    struct dynbuf d;
    json_t *j;
    int step;

    (void)state;
    assert_int_equal(fixture_customer_id(c, 0, ext, sizeof(ext)), BRK_OK);
    assert_int_equal(fixture_chat_id(c, 0, chat, sizeof(chat)), BRK_OK);
    dynbuf_init(&d, LIMIT);
    for (step = 0; step < 21; step++) {
        enum brk_err err = BRK_ERR_INVAL;

        dynbuf_reset(&d);
        switch (step) {
        case 0:
            err = fixture_render_permanent_code(c, "AT", 7200, "PC", "s", &d);
            break;
        case 1:
            err = fixture_render_permanent_code_v2(c, "PC", NULL, &d);
            break;
        case 2:
            err = fixture_render_auth_info(c, &d);
            break;
        case 3:
            err = fixture_render_permissions(c, &d);
            break;
        case 4:
            err = fixture_render_agent_get(c, FIXTURE_AGENTID, &d);
            break;
        case 5:
            err = fixture_render_user_get(c, "u00040", &d);
            break;
        case 6:
            err = fixture_render_user_simplelist(c, 2, 1, &d);
            break;
        case 7:
            err = fixture_render_user_list(c, 3, 0, &d);
            break;
        case 8:
            err = fixture_render_user_list_id(c, NULL, 10000, &d);
            break;
        case 9:
            err = fixture_render_department_list(c, 0, &d);
            break;
        case 10:
            err = fixture_render_department_simplelist(c, 2, &d);
            break;
        case 11:
            err = fixture_render_department_get(c, 1, &d);
            break;
        case 12:
            err = fixture_render_tag_list(c, &d);
            break;
        case 13:
            err = fixture_render_tag_get(c, 4, &d);
            break;
        case 14:
            err = fixture_render_follow_user_list(c, &d);
            break;
        case 15:
            err = fixture_render_external_list(c, "u00001", &d);
            break;
        case 16:
            err = fixture_render_external_get(c, ext, &d);
            break;
        case 17:
            err = fixture_render_external_batch(c, users, 3, "", 100, &d);
            break;
        case 18:
            err = fixture_render_groupchat_list(c, 0, NULL, 0, NULL, 1000, &d);
            break;
        case 19:
            err = fixture_render_groupchat_get(c, chat, 1, &d);
            break;
        case 20:
            err = fixture_render_groupchat_list(c, 0, users, 1, "", 5, &d);
            break;
        }
        if (err != BRK_OK)
            fail_msg("step %d: %s", step, brk_strerror(err));
        j = parsed(&d);
        json_decref(j);
    }
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_user_lists_follow_the_tree(void **state)
{
    struct fixture_corp *c = corp(5, 1);
    struct dynbuf d;
    json_t *all, *root, *simple, *u;
    size_t i;

    (void)state;
    dynbuf_init(&d, LIMIT);
    assert_int_equal(fixture_render_user_list(c, 1, 1, &d), BRK_OK);
    all = parsed(&d);
    dynbuf_reset(&d);
    assert_int_equal(fixture_render_user_list(c, 1, 0, &d), BRK_OK);
    root = parsed(&d);
    dynbuf_reset(&d);
    assert_int_equal(fixture_render_user_simplelist(c, 1, 1, &d), BRK_OK);
    simple = parsed(&d);
    assert_int_equal(json_array_size(json_object_get(all, "userlist")), 40);
    assert_int_equal(json_array_size(json_object_get(simple, "userlist")), 40);
    /* without fetch_child only members of department 1 itself */
    assert_true(json_array_size(json_object_get(root, "userlist")) < 40);
    json_array_foreach(json_object_get(root, "userlist"), i, u)
    {
        const json_t *dep = json_object_get(u, "department");
        size_t k;
        int in = 0;

        for (k = 0; k < json_array_size(dep); k++)
            in |= json_integer_value(json_array_get(dep, k)) == 1;
        assert_true(in);
    }
    /* the simple list carries no detail */
    assert_null(json_object_get(
        json_array_get(json_object_get(simple, "userlist"), 0), "mobile"));
    json_decref(all);
    json_decref(root);
    json_decref(simple);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_unknown_ids_leave_out_unchanged(void **state)
{
    struct fixture_corp *c = corp(1, 1);
    struct dynbuf d;
    const char *none[] = {"u99999"};

    (void)state;
    dynbuf_init(&d, LIMIT);
    assert_int_equal(dynbuf_add_str(&d, "keep"), BRK_OK);
    assert_int_equal(fixture_render_user_get(c, "u00041", &d),
                     BRK_ERR_NOTFOUND);
    assert_int_equal(fixture_render_user_get(c, "u1", &d), BRK_ERR_NOTFOUND);
    assert_int_equal(fixture_render_user_get(c, "u00001x", &d),
                     BRK_ERR_NOTFOUND);
    assert_int_equal(fixture_render_user_get(c, "", &d), BRK_ERR_NOTFOUND);
    assert_int_equal(fixture_render_user_get(c, NULL, &d), BRK_ERR_NOTFOUND);
    assert_int_equal(fixture_render_user_list(c, 13, 1, &d), BRK_ERR_NOTFOUND);
    assert_int_equal(fixture_render_user_list(c, 0, 1, &d), BRK_ERR_NOTFOUND);
    assert_int_equal(fixture_render_department_get(c, 0, &d), BRK_ERR_NOTFOUND);
    assert_int_equal(fixture_render_department_list(c, -1, &d),
                     BRK_ERR_NOTFOUND);
    assert_int_equal(fixture_render_tag_get(c, 5, &d), BRK_ERR_NOTFOUND);
    assert_int_equal(fixture_render_external_get(c, "wmnope", &d),
                     BRK_ERR_NOTFOUND);
    assert_int_equal(fixture_render_external_list(c, "u99999", &d),
                     BRK_ERR_NOTFOUND);
    assert_int_equal(fixture_render_groupchat_get(c, "wrnope", 0, &d),
                     BRK_ERR_NOTFOUND);
    assert_int_equal(fixture_render_agent_get(c, 1, &d), BRK_ERR_NOTFOUND);
    /* an unknown follow user just matches nothing */
    assert_int_equal(fixture_render_external_batch(c, none, 1, NULL, 10, &d),
                     BRK_OK);
    assert_memory_equal(d.buf, "keep{", 5);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_bad_cursors_and_limits(void **state)
{
    struct fixture_corp *c = corp(1, 1);
    static const char *const bad[] = {
        "x", "mc", "mc-1", "mc1x", "mc 1", "mc99999999999999999999", "MC1"};
    struct dynbuf d;
    size_t i;

    (void)state;
    dynbuf_init(&d, LIMIT);
    for (i = 0; i < nitems(bad); i++) {
        assert_int_equal(fixture_render_user_list_id(c, bad[i], 10, &d),
                         BRK_ERR_INVAL);
        assert_int_equal(
            fixture_render_groupchat_list(c, 0, NULL, 0, bad[i], 10, &d),
            BRK_ERR_INVAL);
    }
    /* past the end */
    assert_int_equal(fixture_render_user_list_id(c, "mc100000", 10, &d),
                     BRK_ERR_INVAL);
    assert_int_equal(fixture_render_user_list_id(c, NULL, 0, &d),
                     BRK_ERR_INVAL);
    assert_int_equal(fixture_render_user_list_id(c, NULL, 10001, &d),
                     BRK_ERR_INVAL);
    assert_int_equal(fixture_render_external_batch(c, NULL, 0, NULL, 101, &d),
                     BRK_ERR_INVAL);
    assert_int_equal(fixture_render_groupchat_list(c, 4, NULL, 0, NULL, 1, &d),
                     BRK_ERR_INVAL);
    assert_int_equal(
        fixture_render_groupchat_list(c, 0, NULL, 0, NULL, 1001, &d),
        BRK_ERR_INVAL);
    assert_null(d.buf);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_list_id_cursor_walk(void **state)
{
    struct fixture_corp *c = corp(11, 1);
    char cursor[CURSOR_MAX] = "";
    long rows = 0, want = 0, i, pages = 0;
    struct dynbuf d;
    json_t *j;

    (void)state;
    for (i = 0; i < c->sz.members; i++)
        want += c->mem[i].ndept;
    dynbuf_init(&d, LIMIT);
    do {
        dynbuf_reset(&d);
        assert_int_equal(fixture_render_user_list_id(c, cursor, 9, &d), BRK_OK);
        j = parsed(&d);
        rows += (long)json_array_size(json_object_get(j, "dept_user"));
        snprintf(cursor, sizeof(cursor), "%s",
                 json_string_value(json_object_get(j, "next_cursor")));
        json_decref(j);
        pages++;
    } while (cursor[0] != '\0' && pages < 100);
    assert_int_equal(rows, want);
    assert_int_equal(pages, (want + 8) / 9);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_member_index(void **state)
{
    struct fixture_corp *c = corp(1, 1);
    char buf[8];

    (void)state;
    assert_int_equal(fixture_member_index(c, "u00001"), 0);
    assert_int_equal(fixture_member_index(c, "u00040"), 39);
    assert_int_equal(fixture_member_index(c, "u00041"), -1);
    assert_int_equal(fixture_member_index(c, "u00000"), -1);
    assert_int_equal(fixture_member_index(c, "u-0001"), -1);
    assert_int_equal(fixture_member_index(c, "U00001"), -1);
    assert_int_equal(fixture_member_index(c, NULL), -1);
    assert_int_equal(fixture_member_userid(c, 39, buf, sizeof(buf)), BRK_OK);
    assert_string_equal(buf, "u00040");
    assert_int_equal(fixture_member_userid(c, 40, buf, sizeof(buf)),
                     BRK_ERR_INVAL);
    assert_int_equal(fixture_member_userid(c, 0, buf, 6), BRK_ERR_INVAL);
    assert_int_equal(fixture_customer_id(c, 20, buf, sizeof(buf)),
                     BRK_ERR_INVAL);
    assert_int_equal(fixture_chat_id(c, -1, buf, sizeof(buf)), BRK_ERR_INVAL);
    assert_int_equal(fixture_corp_member_count(c), 40);
    assert_int_equal(fixture_corp_customer_count(c), 20);
    assert_int_equal(fixture_corp_chat_count(c), 5);
    fixture_corp_free(c);
}

static void
test_escaping(void **state)
{
    const char *tricky = "a\"b\\c\n\x01\x1f/é";
    struct dynbuf d;
    struct jw w;
    json_error_t err;
    json_t *j;

    (void)state;
    dynbuf_init(&d, 4096);
    jw_begin(&w, &d, 0);
    jw_str(&w, "k\"ey", tricky);
    assert_int_equal(jw_end(&w, "n"), BRK_OK);
    j = json_loadb(d.buf, d.len, 0, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "k\"ey")), tricky);
    json_decref(j);
    dynbuf_free(&d);
}

static void
test_too_big_is_reported(void **state)
{
    struct fixture_corp *c = corp(1, 1);
    struct dynbuf d;

    (void)state;
    dynbuf_init(&d, 1000);
    assert_int_equal(fixture_render_user_list(c, 1, 1, &d), BRK_ERR_TOOBIG);
    assert_null(d.buf);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_set_privilege_copies(void **state)
{
    struct fixture_corp *c = corp(1, 1);
    long parties[] = {3, 4};
    char u[] = "u00009";
    char *users[] = {u};
    struct fixture_privilege p;
    const struct fixture_privilege *got;
    struct dynbuf d;
    json_t *j, *priv;

    (void)state;
    memset(&p, 0, sizeof(p));
    p.level = 4;
    p.allow_party = parties;
    p.nallow_party = 2;
    p.extra_user = users;
    p.nextra_user = 1;
    assert_int_equal(fixture_corp_set_privilege(c, &p), BRK_OK);
    parties[0] = 99;
    u[0] = 'x';
    got = fixture_corp_privilege(c);
    assert_int_equal(got->allow_party[0], 3);
    assert_string_equal(got->extra_user[0], "u00009");
    assert_int_equal(got->nallow_tag, 0);
    dynbuf_init(&d, LIMIT);
    assert_int_equal(fixture_render_auth_info(c, &d), BRK_OK);
    j = parsed(&d);
    priv = json_object_get(
        json_array_get(
            json_object_get(json_object_get(j, "auth_info"), "agent"), 0),
        "privilege");
    assert_int_equal(json_integer_value(json_object_get(priv, "level")), 4);
    assert_int_equal(json_array_size(json_object_get(priv, "allow_user")), 0);
    assert_int_equal(json_array_size(json_object_get(priv, "allow_party")), 2);
    json_decref(j);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_set_permissions(void **state)
{
    struct fixture_corp *c = corp(1, 1);
    const char *names[] = {"contact:sensitive:mobile"};
    struct dynbuf d;
    json_t *j, *ext;

    (void)state;
    assert_int_equal(fixture_corp_set_permissions(c, names, 1, 1234), BRK_OK);
    dynbuf_init(&d, LIMIT);
    assert_int_equal(fixture_render_permissions(c, &d), BRK_OK);
    j = parsed(&d);
    assert_int_equal(json_array_size(json_object_get(j, "app_permissions")), 1);
    ext = json_array_get(json_object_get(j, "app_permissions_ext"), 0);
    assert_int_equal(json_integer_value(json_object_get(ext, "expire_time")),
                     1234);
    json_decref(j);
    assert_int_equal(fixture_corp_set_permissions(c, NULL, 0, 1), BRK_OK);
    dynbuf_reset(&d);
    assert_int_equal(fixture_render_permissions(c, &d), BRK_OK);
    j = parsed(&d);
    assert_int_equal(json_array_size(json_object_get(j, "app_permissions")), 0);
    json_decref(j);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_large_corp_renders(void **state)
{
    const struct fixture_sizes big = {200, 20000, 20, 2000, 200};
    struct fixture_corp *c = NULL;
    struct dynbuf d;
    json_t *j;

    (void)state;
    assert_int_equal(fixture_corp_new(1, 1, &big, &c), BRK_OK);
    dynbuf_init(&d, LIMIT);
    assert_int_equal(fixture_render_user_list(c, 1, 1, &d), BRK_OK);
    assert_true(d.len > 10L * 1000 * 1000);
    j = parsed(&d);
    assert_int_equal(json_array_size(json_object_get(j, "userlist")), 20000);
    json_decref(j);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

/*---- Allocation failures ----*/

static void
test_alloc_failure_new(void **state)
{
    struct fixture_corp *c = NULL;
    unsigned long n;
    enum brk_err err;

    (void)state;
    for (n = 1; n < 1000; n++) {
        brk_alloc_fail_at(n);
        err = fixture_corp_new(1, 1, &small, &c);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(c);
    }
    assert_int_equal(err, BRK_OK);
    assert_false(brk_alloc_failed());
    assert_true(n > 5);
    fixture_corp_free(c);
}

static void
test_alloc_failure_render(void **state)
{
    struct fixture_corp *c = corp(1, 1);
    const char *users[] = {"u00001"};
    struct dynbuf d;
    unsigned long n;
    enum brk_err err = BRK_ERR_NOMEM;
    int which;

    (void)state;
    for (which = 0; which < 3; which++) {
        for (n = 1; n < 1000; n++) {
            dynbuf_init(&d, LIMIT);
            brk_alloc_fail_at(n);
            if (which == 0)
                err = fixture_render_user_list(c, 1, 1, &d);
            else if (which == 1)
                err = fixture_render_external_batch(c, users, 1, NULL, 10, &d);
            else
                err = fixture_render_department_list(c, 0, &d);
            brk_alloc_fail_at(0);
            if (err == BRK_OK) {
                dynbuf_free(&d);
                break;
            }
            assert_int_equal(err, BRK_ERR_NOMEM);
            assert_null(d.buf);
        }
        assert_int_equal(err, BRK_OK);
    }
    fixture_corp_free(c);
}

static void
test_alloc_failure_set_keeps_old(void **state)
{
    struct fixture_corp *c = corp(1, 1);
    long parties[] = {5};
    char u1[] = "u00010", u2[] = "u00011";
    char *users[] = {u1, u2};
    const char *names[] = {"a", "b", "c"};
    struct fixture_privilege p;
    unsigned long n;
    enum brk_err err = BRK_ERR_NOMEM;

    (void)state;
    memset(&p, 0, sizeof(p));
    p.level = 1;
    p.allow_party = parties;
    p.nallow_party = 1;
    p.allow_user = users;
    p.nallow_user = 2;
    p.extra_user = users;
    p.nextra_user = 2;
    for (n = 1; n < 100; n++) {
        brk_alloc_fail_at(n);
        err = fixture_corp_set_privilege(c, &p);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_int_equal(fixture_corp_privilege(c)->allow_party[0], 2);
        assert_string_equal(fixture_corp_privilege(c)->allow_user[0], "u00003");
    }
    assert_int_equal(err, BRK_OK);
    assert_int_equal(fixture_corp_privilege(c)->allow_party[0], 5);
    for (n = 1; n < 100; n++) {
        brk_alloc_fail_at(n);
        err = fixture_corp_set_permissions(c, names, 3, 1);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_int_equal(c->nperm, 2);
    }
    assert_int_equal(err, BRK_OK);
    assert_int_equal(c->nperm, 3);
    fixture_corp_free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_rejects_bad_sizes),
        cmocka_unit_test(test_minimum_sizes_work),
        cmocka_unit_test(test_same_seed_same_bytes),
        cmocka_unit_test(test_default_range_leaves_members_out),
        cmocka_unit_test(test_every_renderer_is_valid_json),
        cmocka_unit_test(test_user_lists_follow_the_tree),
        cmocka_unit_test(test_unknown_ids_leave_out_unchanged),
        cmocka_unit_test(test_bad_cursors_and_limits),
        cmocka_unit_test(test_list_id_cursor_walk),
        cmocka_unit_test(test_member_index),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_too_big_is_reported),
        cmocka_unit_test(test_set_privilege_copies),
        cmocka_unit_test(test_set_permissions),
        cmocka_unit_test(test_large_corp_renders),
        cmocka_unit_test(test_alloc_failure_new),
        cmocka_unit_test(test_alloc_failure_render),
        cmocka_unit_test(test_alloc_failure_set_keeps_old),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
