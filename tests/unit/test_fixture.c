/*
 * Tests for the generated enterprise: bounds, determinism, the default
 * visible range, every renderer's JSON (leaky and strict), the grant and
 * what WeCom refuses under it, the third-party shapes, lookups and
 * cursors, and allocation failures. The module lives in mocks/ (linked into
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
    assert_int_equal(fixture_corp_new(1, FIXTURE_MAX_CORPS + 1, &small, &c),
                     BRK_ERR_INVAL);
    assert_int_equal(fixture_corp_new(1, 1, NULL, &c), BRK_ERR_INVAL);
    assert_null(c);
    fixture_corp_free(NULL);
}

/* Corps past 9999 (the scale bench's 10,001) get five-digit ids. */
static void
test_five_digit_corp_index(void **state)
{
    const struct fixture_sizes tiny = {3, 3, 1, 0, 0};
    struct fixture_corp *c = NULL;

    (void)state;
    assert_int_equal(fixture_corp_new(1, 10001, &tiny, &c), BRK_OK);
    assert_string_equal(fixture_corp_id(c), "wwmockcorp10001");
    fixture_corp_free(c);
    c = NULL;
    assert_int_equal(fixture_corp_new(1, FIXTURE_MAX_CORPS, &tiny, &c), BRK_OK);
    assert_string_equal(fixture_corp_id(c), "wwmockcorp99999");
    fixture_corp_free(c);
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
    /* leaky, then strict */
    for (step = 0; step < 48; step++) {
        enum brk_err err = BRK_ERR_INVAL;

        fixture_corp_set_strict(c, step >= 24);
        dynbuf_reset(&d);
        switch (step % 24) {
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
        case 21:
            err = fixture_render_admin_list(c, &d);
            break;
        case 22:
            err = fixture_render_member_auth(c, NULL, 10, step & 1, &d);
            break;
        default:
            err = fixture_render_user_record(c, "u00002", &d);
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

/*---- The grant and strict mode ----*/

/* A strict corp with permissions names[0..n). */
static struct fixture_corp *
strict_corp(uint64_t seed, const char *const *names, size_t n)
{
    struct fixture_corp *c = corp(seed, 1);

    fixture_corp_set_strict(c, 1);
    if (names != NULL)
        assert_int_equal(
            fixture_corp_set_permissions(c, names, n, FIXTURE_PERM_EXPIRY),
            BRK_OK);
    return c;
}

static long
chk(const struct fixture_corp *c, enum fixture_api api, const char *id,
    long num)
{
    const struct fixture_args a = {id, num, NULL, 0};

    return fixture_check(c, api, &a);
}

static long
chk_ids(const struct fixture_corp *c, enum fixture_api api,
        const char *const *ids, size_t n)
{
    const struct fixture_args a = {NULL, 0, ids, n};

    return fixture_check(c, api, &a);
}

/* The reply of one renderer call, parsed. */
#define RENDERED(call)                                                         \
    do {                                                                       \
        enum brk_err rerr_;                                                    \
        dynbuf_reset(&d);                                                      \
        rerr_ = (call);                                                        \
        if (rerr_ != BRK_OK)                                                   \
            fail_msg("%s: %s", #call, brk_strerror(rerr_));                    \
        json_decref(j);                                                        \
        j = parsed(&d);                                                        \
    } while (0)

/* o has exactly the keys in want (NULL-terminated). */
static void
exact_keys(const json_t *o, const char *const *want)
{
    const char *key;
    json_t *v;
    size_t n = 0, i;

    json_object_foreach((json_t *)(uintptr_t)o, key, v)
    {
        int found = 0;

        (void)v;
        for (i = 0; want[i] != NULL; i++)
            found |= strcmp(want[i], key) == 0;
        if (!found)
            fail_msg("unexpected member %s", key);
        n++;
    }
    for (i = 0; want[i] != NULL; i++)
        if (json_object_get(o, want[i]) == NULL)
            fail_msg("no member %s", want[i]);
    assert_int_equal(n, i);
}

/* Member visibility by wecom-protocol §3.3, computed from the structure. */
static void
expected_range(const struct fixture_corp *c, unsigned char *vd,
               unsigned char *vm)
{
    const struct fixture_privilege *p = fixture_corp_privilege(c);
    long roots[64], tags[64], j, i;
    size_t nr = 0, nt = 0, k;
    int u;

    for (k = 0; k < p->nallow_party; k++)
        roots[nr++] = p->allow_party[k];
    for (k = 0; k < p->nextra_party; k++)
        roots[nr++] = p->extra_party[k];
    for (k = 0; k < p->nallow_tag; k++)
        tags[nt++] = p->allow_tag[k];
    for (k = 0; k < p->nextra_tag; k++)
        tags[nt++] = p->extra_tag[k];
    for (k = 0; k < nt; k++)
        for (u = 0; u < c->tag[tags[k] - 1].nparty; u++)
            roots[nr++] = c->tag[tags[k] - 1].party[u];
    memset(vd, 0, (size_t)c->sz.departments);
    for (k = 0; k < nr; k++) {
        unsigned char *m = subtree_marks(c, roots[k]);

        assert_non_null(m);
        for (j = 0; j < c->sz.departments; j++)
            vd[j] |= m[j];
        brk_free(m);
    }
    for (i = 0; i < c->sz.members; i++) {
        char id[32];

        vm[i] = (unsigned char)member_in_marks(c, i, vd);
        fmt_userid(id, sizeof(id), i);
        for (k = 0; k < p->nallow_user; k++)
            vm[i] |= strcmp(p->allow_user[k], id) == 0;
        for (k = 0; k < p->nextra_user; k++)
            vm[i] |= strcmp(p->extra_user[k], id) == 0;
        for (k = 0; k < nt; k++)
            for (u = 0; u < c->tag[tags[k] - 1].nuser; u++)
                vm[i] |= c->tag[tags[k] - 1].user[u] == i;
    }
}

/* Every member and department is refused exactly when §3.3 says it is
 * outside the range, for several ranges. */
static void
test_check_range_matches_the_formula(void **state)
{
    static const long p3[] = {3}, p5[] = {5, 7}, t2[] = {2, 3};
    char u10[] = "u00010", u2[] = "u00002";
    char *eu[] = {u10, u2};
    struct fixture_corp *c = strict_corp(21, NULL, 0);
    unsigned char vd[12], vm[40];
    struct fixture_privilege p;
    long i, nvis;
    int round;

    (void)state;
    for (round = 0; round < 4; round++) {
        memset(&p, 0, sizeof(p));
        p.level = 1;
        if (round == 1) {
            p.allow_party = (long *)(uintptr_t)p3;
            p.nallow_party = 1;
        } else if (round == 2) {
            p.extra_party = (long *)(uintptr_t)p5;
            p.nextra_party = 2;
            p.extra_user = eu;
            p.nextra_user = 2;
        } else if (round == 3) {
            p.extra_tag = (long *)(uintptr_t)t2;
            p.nextra_tag = 2;
        }
        if (round > 0)
            assert_int_equal(fixture_corp_set_privilege(c, &p), BRK_OK);
        expected_range(c, vd, vm);
        nvis = 0;
        for (i = 0; i < c->sz.members; i++) {
            char id[32];

            fmt_userid(id, sizeof(id), i);
            assert_int_equal(chk(c, FIXTURE_API_USER_GET, id, 0),
                             vm[i] ? 0 : FIXTURE_E_RANGE);
            nvis += vm[i];
        }
        assert_int_equal(fixture_corp_visible_members(c), nvis);
        assert_true(nvis > 0 && nvis < c->sz.members);
        for (i = 1; i <= c->sz.departments; i++) {
            assert_int_equal(chk(c, FIXTURE_API_DEPARTMENT_GET, NULL, i),
                             vd[i - 1] ? 0 : FIXTURE_E_RANGE);
            assert_int_equal(chk(c, FIXTURE_API_USER_SIMPLELIST, NULL, i),
                             vd[i - 1] ? 0 : FIXTURE_E_RANGE);
        }
    }
    fixture_corp_free(c);
}

static void
test_check_permissions(void **state)
{
    static const char *const none[] = {"contact:sensitive:avatar"};
    static const char *const base[] = {"contact:base:base"};
    static const char *const edit[] = {"contact:edit:all"};
    static const char *const arch[] = {"corp_arch:base:base"};
    static const char *const ext[] = {"externalcontact:base:base"};
    static const char *const one[] = {"u00001"};
    static const struct {
        enum fixture_api api;
        long num;
        long code[5]; /* none, base, edit, arch, ext */
    } cases[] = {
        {FIXTURE_API_USER_GET, 0, {48002, 0, 0, 48002, 48002}},
        {FIXTURE_API_USER_SIMPLELIST, 2, {48002, 0, 0, 48002, 48002}},
        {FIXTURE_API_USER_LIST, 2, {48002, 0, 0, 48002, 48002}},
        {FIXTURE_API_USER_LIST_ID, 0, {48002, 48002, 0, 48002, 48002}},
        {FIXTURE_API_DEPARTMENT_LIST, 0, {48002, 0, 0, 0, 48002}},
        {FIXTURE_API_DEPARTMENT_SIMPLE, 3, {48002, 60011, 0, 0, 48002}},
        {FIXTURE_API_DEPARTMENT_GET, 3, {48002, 60011, 0, 0, 48002}},
        {FIXTURE_API_TAG_LIST, 0, {48002, 0, 0, 48002, 48002}},
        {FIXTURE_API_TAG_GET, 1, {48002, 0, 0, 48002, 48002}},
        {FIXTURE_API_FOLLOW_USERS, 0, {48002, 48002, 48002, 48002, 0}},
        {FIXTURE_API_EXTERNAL_LIST, 0, {48002, 48002, 48002, 48002, 0}},
        {FIXTURE_API_EXTERNAL_BATCH, 0, {48002, 48002, 48002, 48002, 0}},
        {FIXTURE_API_GROUPCHAT_LIST, 0, {48002, 48002, 48002, 48002, 0}},
        {FIXTURE_API_USER_MEMBER_AUTH, 0, {48002, 48002, 48002, 48002, 48002}},
    };
    const char *const *sets[] = {none, base, edit, arch, ext};
    struct fixture_corp *c;
    size_t i;
    int g;

    (void)state;
    for (g = 0; g < 5; g++) {
        c = strict_corp(1, sets[g], 1);
        for (i = 0; i < nitems(cases); i++) {
            const struct fixture_args a = {"u00001", cases[i].num, one, 1};
            long got = fixture_check(c, cases[i].api, &a);

            if (got != cases[i].code[g])
                fail_msg("case %zu, grant %d: %ld, want %ld", i, g, got,
                         cases[i].code[g]);
        }
        /* a leaky corp refuses nothing */
        fixture_corp_set_strict(c, 0);
        for (i = 0; i < nitems(cases); i++) {
            const struct fixture_args a = {"u00002", 3, one, 1};

            assert_int_equal(fixture_check(c, cases[i].api, &a), 0);
        }
        fixture_corp_free(c);
    }
}

static void
test_check_range_refusals(void **state)
{
    static const char *const perms[] = {"contact:base:base",
                                        "externalcontact:base:base"};
    static const char *const u1[] = {"u00001"}, *const u2[] = {"u00002"};
    static const char *const both[] = {"u00002", "u00001"};
    static const char *const nobody[] = {"nobody"};
    static const long tag2[] = {2};
    struct fixture_corp *c = strict_corp(1, perms, 2);
    char e1[ID_SIZE], e2[ID_SIZE], g1[ID_SIZE], g2[ID_SIZE];

    (void)state;
    assert_int_equal(fixture_customer_id(c, 0, e1, sizeof(e1)), BRK_OK);
    assert_int_equal(fixture_customer_id(c, 1, e2, sizeof(e2)), BRK_OK);
    assert_int_equal(fixture_chat_id(c, 0, g1, sizeof(g1)), BRK_OK);
    assert_int_equal(fixture_chat_id(c, 1, g2, sizeof(g2)), BRK_OK);
    assert_int_equal(chk(c, FIXTURE_API_USER_GET, "u00002", 0), 60011);
    assert_int_equal(chk(c, FIXTURE_API_USER_GET, "u00003", 0), 0);
    /* unknown records are the renderers' to answer */
    assert_int_equal(chk(c, FIXTURE_API_USER_GET, "u99999", 0), 0);
    assert_int_equal(chk(c, FIXTURE_API_USER_LIST, NULL, 3), 60011);
    assert_int_equal(chk(c, FIXTURE_API_USER_LIST, NULL, 999), 0);
    assert_int_equal(chk(c, FIXTURE_API_TAG_GET, NULL, 2), 60011);
    assert_int_equal(chk(c, FIXTURE_API_TAG_GET, NULL, 99), 0);
    assert_int_equal(fixture_corp_set_app_tags(c, tag2, 1), BRK_OK);
    assert_int_equal(chk(c, FIXTURE_API_TAG_GET, NULL, 2), 0);
    assert_int_equal(chk(c, FIXTURE_API_EXTERNAL_LIST, "u00002", 0), 60011);
    assert_int_equal(chk(c, FIXTURE_API_EXTERNAL_LIST, "u00001", 0), 0);
    assert_int_equal(chk(c, FIXTURE_API_EXTERNAL_GET, e2, 0), 60011);
    assert_int_equal(chk(c, FIXTURE_API_EXTERNAL_GET, e1, 0), 0);
    assert_int_equal(chk(c, FIXTURE_API_EXTERNAL_GET, "wmnope", 0), 0);
    assert_int_equal(chk_ids(c, FIXTURE_API_EXTERNAL_BATCH, u2, 1), 60011);
    assert_int_equal(chk_ids(c, FIXTURE_API_EXTERNAL_BATCH, both, 2), 0);
    assert_int_equal(chk_ids(c, FIXTURE_API_EXTERNAL_BATCH, nobody, 1), 60011);
    assert_int_equal(chk_ids(c, FIXTURE_API_GROUPCHAT_LIST, u1, 1), 0);
    assert_int_equal(chk_ids(c, FIXTURE_API_GROUPCHAT_LIST, both, 2), 60011);
    assert_int_equal(chk_ids(c, FIXTURE_API_GROUPCHAT_LIST, nobody, 1), 60011);
    assert_int_equal(chk_ids(c, FIXTURE_API_GROUPCHAT_LIST, NULL, 0), 0);
    assert_int_equal(chk(c, FIXTURE_API_GROUPCHAT_GET, g2, 0), 60011);
    assert_int_equal(chk(c, FIXTURE_API_GROUPCHAT_GET, g1, 0), 0);
    fixture_corp_free(c);
}

static void
test_check_groupchat_list_too_wide(void **state)
{
    static const struct fixture_sizes big = {12, 1500, 4, 20, 5};
    static const char *const u1[] = {"u00001"};
    struct fixture_corp *c = NULL;
    struct fixture_privilege p;
    long root = 1;

    (void)state;
    assert_int_equal(fixture_corp_new(1, 1, &big, &c), BRK_OK);
    fixture_corp_set_strict(c, 1);
    assert_true(fixture_corp_visible_members(c) < 1000);
    assert_int_equal(chk_ids(c, FIXTURE_API_GROUPCHAT_LIST, NULL, 0), 0);
    memset(&p, 0, sizeof(p));
    p.level = 1;
    p.allow_party = &root;
    p.nallow_party = 1;
    assert_int_equal(fixture_corp_set_privilege(c, &p), BRK_OK);
    assert_int_equal(fixture_corp_visible_members(c), 1500);
    assert_int_equal(chk_ids(c, FIXTURE_API_GROUPCHAT_LIST, NULL, 0), 81017);
    assert_int_equal(chk_ids(c, FIXTURE_API_GROUPCHAT_LIST, u1, 1), 0);
    fixture_corp_free(c);
}

static void
test_strict_user_shapes(void **state)
{
    static const char *const ro_keys[] = {"errcode",
                                          "errmsg",
                                          "userid",
                                          "name",
                                          "department",
                                          "order",
                                          "gender",
                                          "open_userid",
                                          "main_department",
                                          "status",
                                          "mock_internal_note",
                                          NULL};
    static const char *const edit_keys[] = {"errcode",
                                            "errmsg",
                                            "userid",
                                            "name",
                                            "department",
                                            "order",
                                            "position",
                                            "gender",
                                            "is_leader_in_dept",
                                            "direct_leader",
                                            "telephone",
                                            "alias",
                                            "open_userid",
                                            "main_department",
                                            "extattr",
                                            "status",
                                            "external_position",
                                            "external_profile",
                                            "mock_internal_note",
                                            NULL};
    static const char *const base_sens[] = {
        "contact:base:base",        "contact:sensitive:gender",
        "contact:sensitive:avatar", "contact:sensitive:qrcode",
        "contact:sensitive:mobile", "contact:sensitive:email"};
    static const char *const edit_sens[] = {
        "contact:edit:all", "contact:sensitive:gender",
        "contact:sensitive:avatar", "contact:sensitive:mobile"};
    static const char *const edit[] = {"contact:edit:all"};
    static const char *const simple_keys[] = {
        "userid", "name", "department", "open_userid", "mock_internal_note",
        NULL};
    struct fixture_corp *c = strict_corp(1, NULL, 0);
    struct dynbuf d;
    json_t *j = NULL, *u;
    const char *g;

    (void)state;
    dynbuf_init(&d, LIMIT);
    RENDERED(fixture_render_user_get(c, "u00001", &d));
    exact_keys(j, ro_keys);
    assert_string_equal(json_string_value(json_object_get(j, "name")),
                        "u00001");
    assert_string_equal(json_string_value(json_object_get(j, "gender")), "0");
    /* u00003 is in the range by name only: no department of it shows */
    RENDERED(fixture_render_user_get(c, "u00003", &d));
    assert_int_equal(json_array_size(json_object_get(j, "department")), 0);
    assert_null(json_object_get(j, "main_department"));
    /* sensitive permissions do not open user/get to a read-only app */
    assert_int_equal(fixture_corp_set_permissions(c, base_sens, 6, 1), BRK_OK);
    RENDERED(fixture_render_user_get(c, "u00001", &d));
    exact_keys(j, ro_keys);
    RENDERED(fixture_render_user_list(c, 2, 1, &d));
    u = json_array_get(json_object_get(j, "userlist"), 0);
    assert_non_null(u);
    assert_null(json_object_get(u, "mobile"));
    assert_null(json_object_get(u, "avatar"));
    RENDERED(fixture_render_user_simplelist(c, 2, 0, &d));
    u = json_array_get(json_object_get(j, "userlist"), 0);
    exact_keys(u, simple_keys);
    assert_string_equal(json_string_value(json_object_get(u, "name")),
                        json_string_value(json_object_get(u, "userid")));
    /* the contacts app: names and contact fields, not the sensitive ones */
    assert_int_equal(fixture_corp_set_permissions(c, edit, 1, 1), BRK_OK);
    RENDERED(fixture_render_user_get(c, "u00001", &d));
    exact_keys(j, edit_keys);
    assert_string_not_equal(json_string_value(json_object_get(j, "name")),
                            "u00001");
    assert_string_equal(json_string_value(json_object_get(j, "gender")), "0");
    /* ... and those it was granted */
    assert_int_equal(fixture_corp_set_permissions(c, edit_sens, 4, 1), BRK_OK);
    RENDERED(fixture_render_user_get(c, "u00001", &d));
    assert_non_null(json_object_get(j, "mobile"));
    assert_non_null(json_object_get(j, "avatar"));
    assert_non_null(json_object_get(j, "thumb_avatar"));
    assert_null(json_object_get(j, "email"));
    assert_null(json_object_get(j, "qr_code"));
    assert_null(json_object_get(j, "address"));
    g = json_string_value(json_object_get(j, "gender"));
    assert_true(strcmp(g, "1") == 0 || strcmp(g, "2") == 0);
    /* the whole record whatever the mode */
    RENDERED(fixture_render_user_record(c, "u00002", &d));
    assert_non_null(json_object_get(j, "email"));
    assert_non_null(json_object_get(j, "qr_code"));
    json_decref(j);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

/* The members a strict user/list of department id gives, leaky's subset. */
static void
test_strict_user_lists(void **state)
{
    struct fixture_corp *c = strict_corp(5, NULL, 0);
    struct fixture_privilege p;
    long root = 1, i;
    struct dynbuf d;
    json_t *j = NULL, *u;
    size_t k, n_strict, n_leaky;

    (void)state;
    dynbuf_init(&d, LIMIT);
    memset(&p, 0, sizeof(p));
    p.level = 1;
    p.allow_party = &root;
    p.nallow_party = 1;
    assert_int_equal(fixture_corp_set_privilege(c, &p), BRK_OK);
    /* fetch_child is gone: department 1's own members only */
    RENDERED(fixture_render_user_list(c, 1, 1, &d));
    n_strict = json_array_size(json_object_get(j, "userlist"));
    json_array_foreach(json_object_get(j, "userlist"), k, u)
    {
        i = fixture_member_index(
            c, json_string_value(json_object_get(u, "userid")));
        assert_true(member_in_dept(c, i, 1));
    }
    fixture_corp_set_strict(c, 0);
    RENDERED(fixture_render_user_list(c, 1, 1, &d));
    n_leaky = json_array_size(json_object_get(j, "userlist"));
    assert_int_equal(n_leaky, 40);
    assert_true(n_strict > 0 && n_strict < n_leaky);
    /* with the default range, department 2 has only members in range */
    fixture_corp_free(c);
    c = strict_corp(1, NULL, 0);
    RENDERED(fixture_render_user_list(c, 2, 0, &d));
    json_array_foreach(json_object_get(j, "userlist"), k, u)
    {
        assert_int_equal(chk(c, FIXTURE_API_USER_GET,
                             json_string_value(json_object_get(u, "userid")),
                             0),
                         0);
    }
    json_decref(j);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_strict_list_id(void **state)
{
    static const char *const row_keys[] = {"open_userid", "department",
                                           "mock_internal_note", NULL};
    static const char *const edit[] = {"contact:edit:all"};
    struct fixture_corp *c = strict_corp(11, edit, 1);
    char cursor[CURSOR_MAX] = "";
    long rows = 0, want = 0, i, pages = 0;
    struct dynbuf d;
    json_t *j = NULL, *r;
    size_t k;

    (void)state;
    for (i = 0; i < c->sz.members; i++)
        if (c->vis_mem[i])
            want += c->mem[i].ndept;
    assert_true(want > 0);
    dynbuf_init(&d, LIMIT);
    do {
        RENDERED(fixture_render_user_list_id(c, cursor, 3, &d));
        json_array_foreach(json_object_get(j, "dept_user"), k, r)
        {
            exact_keys(r, row_keys);
        }
        rows += (long)json_array_size(json_object_get(j, "dept_user"));
        snprintf(cursor, sizeof(cursor), "%s",
                 json_string_value(json_object_get(j, "next_cursor")));
        pages++;
    } while (cursor[0] != '\0' && pages < 100);
    assert_int_equal(rows, want);
    assert_int_equal(pages, (want + 2) / 3);
    json_decref(j);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_strict_departments_and_tags(void **state)
{
    static const char *const arch[] = {"contact:base:base",
                                       "corp_arch:base:base"};
    static const char *const edit[] = {"contact:edit:all"};
    static const char *const get_keys[] = {"id", "parentid", "order",
                                           "mock_internal_note", NULL};
    static const long mine[] = {2, 4};
    struct fixture_corp *c = strict_corp(1, NULL, 0);
    struct dynbuf d;
    json_t *j = NULL, *v;
    size_t k;
    char id[24];

    (void)state;
    dynbuf_init(&d, LIMIT);
    RENDERED(fixture_render_department_list(c, 0, &d));
    assert_true(json_array_size(json_object_get(j, "department")) <
                (size_t)c->sz.departments);
    json_array_foreach(json_object_get(j, "department"), k, v)
    {
        long dep = (long)json_integer_value(json_object_get(v, "id"));

        assert_true(c->vis_dept[dep - 1]);
        snprintf(id, sizeof(id), "%ld", dep);
        assert_string_equal(json_string_value(json_object_get(v, "name")), id);
        assert_null(json_object_get(v, "name_en"));
        assert_null(json_object_get(v, "department_leader"));
    }
    RENDERED(fixture_render_department_get(c, 2, &d));
    exact_keys(json_object_get(j, "department"), get_keys);
    /* 组织架构信息: every department id, still no names */
    assert_int_equal(fixture_corp_set_permissions(c, arch, 2, 1), BRK_OK);
    RENDERED(fixture_render_department_simplelist(c, 0, &d));
    assert_int_equal(json_array_size(json_object_get(j, "department_id")),
                     c->sz.departments);
    /* the contacts app: real names and leaders in department/list only */
    assert_int_equal(fixture_corp_set_permissions(c, edit, 1, 1), BRK_OK);
    RENDERED(fixture_render_department_list(c, 0, &d));
    v = json_array_get(json_object_get(j, "department"), 1);
    assert_non_null(json_object_get(v, "name_en"));
    assert_non_null(json_object_get(v, "department_leader"));
    RENDERED(fixture_render_department_get(c, 3, &d));
    assert_null(json_object_get(json_object_get(j, "department"), "name"));
    /* tags: only those the app created; members in range, no names */
    RENDERED(fixture_render_tag_list(c, &d));
    assert_int_equal(json_array_size(json_object_get(j, "taglist")), 0);
    assert_int_equal(fixture_corp_set_app_tags(c, mine, 2), BRK_OK);
    RENDERED(fixture_render_tag_list(c, &d));
    assert_int_equal(json_array_size(json_object_get(j, "taglist")), 2);
    assert_int_equal(
        json_integer_value(json_object_get(
            json_array_get(json_object_get(j, "taglist"), 1), "tagid")),
        4);
    for (k = 1; k <= (size_t)c->sz.tags; k++) {
        json_t *u;
        size_t m;

        RENDERED(fixture_render_tag_get(c, (long)k, &d));
        json_array_foreach(json_object_get(j, "userlist"), m, u)
        {
            assert_null(json_object_get(u, "name"));
            assert_true(c->vis_mem[fixture_member_index(
                c, json_string_value(json_object_get(u, "userid")))]);
        }
    }
    json_decref(j);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_strict_external_shapes(void **state)
{
    static const char *const both[] = {"u00001", "u00002"};
    struct fixture_corp *c = strict_corp(1, NULL, 0);
    char e1[ID_SIZE], g1[ID_SIZE];
    struct dynbuf d;
    json_t *j = NULL, *v, *ec;
    size_t k;
    long i, visible_owned = 0;

    (void)state;
    dynbuf_init(&d, LIMIT);
    assert_int_equal(fixture_customer_id(c, 0, e1, sizeof(e1)), BRK_OK);
    assert_int_equal(fixture_chat_id(c, 0, g1, sizeof(g1)), BRK_OK);
    RENDERED(fixture_render_external_get(c, e1, &d));
    ec = json_object_get(j, "external_contact");
    assert_null(json_object_get(ec, "avatar"));
    assert_null(json_object_get(ec, "unionid"));
    assert_int_equal(json_integer_value(json_object_get(ec, "gender")), 0);
    json_array_foreach(json_object_get(j, "follow_user"), k, v)
    {
        assert_true(c->vis_mem[fixture_member_index(
            c, json_string_value(json_object_get(v, "userid")))]);
    }
    RENDERED(fixture_render_external_batch(c, both, 2, NULL, 100, &d));
    assert_true(json_array_size(json_object_get(j, "external_contact_list")) >
                0);
    json_array_foreach(json_object_get(j, "external_contact_list"), k, v)
    {
        assert_string_equal(json_string_value(json_object_get(
                                json_object_get(v, "follow_info"), "userid")),
                            "u00001");
    }
    RENDERED(fixture_render_follow_user_list(c, &d));
    json_array_foreach(json_object_get(j, "follow_user"), k, v)
    {
        assert_true(c->vis_mem[fixture_member_index(c, json_string_value(v))]);
    }
    RENDERED(fixture_render_groupchat_list(c, 0, NULL, 0, NULL, 1000, &d));
    for (i = 0; i < c->sz.chats; i++)
        visible_owned += c->vis_mem[c->chat[i].owner];
    assert_int_equal(json_array_size(json_object_get(j, "group_chat_list")),
                     visible_owned);
    assert_true(visible_owned < c->sz.chats);
    RENDERED(fixture_render_groupchat_get(c, g1, 1, &d));
    json_array_foreach(
        json_object_get(json_object_get(j, "group_chat"), "member_list"), k, v)
    {
        assert_null(json_object_get(v, "unionid"));
    }
    json_decref(j);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_member_authorization(void **state)
{
    static const char *const who[] = {"u00005", "u00007", "u00005"};
    static const char *const unknown[] = {"u00005", "u99999"};
    static const char *const open_keys[] = {"open_userid", "mock_internal_note",
                                            NULL};
    static const char *const id_keys[] = {"userid", "mock_internal_note", NULL};
    struct fixture_corp *c = strict_corp(1, NULL, 0);
    struct dynbuf d;
    json_t *j = NULL, *u, *agent;
    const char *open5;

    (void)state;
    dynbuf_init(&d, LIMIT);
    assert_int_equal(chk(c, FIXTURE_API_USER_MEMBER_AUTH, NULL, 0), 48002);
    assert_int_equal(fixture_corp_set_auth_mode(c, 2, NULL, 0), BRK_ERR_INVAL);
    assert_int_equal(fixture_corp_set_auth_mode(c, 1, unknown, 2),
                     BRK_ERR_INVAL);
    assert_int_equal(fixture_corp_auth_mode(c), 0);
    assert_int_equal(fixture_corp_set_auth_mode(c, 1, who, 3), BRK_OK);
    assert_int_equal(fixture_corp_auth_mode(c), 1);
    assert_int_equal(chk(c, FIXTURE_API_USER_MEMBER_AUTH, NULL, 0), 0);
    /* the members who authorized are the range */
    assert_int_equal(fixture_corp_visible_members(c), 2);
    assert_int_equal(chk(c, FIXTURE_API_USER_GET, "u00001", 0), 60011);
    assert_int_equal(chk(c, FIXTURE_API_USER_GET, "u00007", 0), 0);
    RENDERED(fixture_render_auth_info(c, &d));
    agent = json_array_get(
        json_object_get(json_object_get(j, "auth_info"), "agent"), 0);
    assert_int_equal(json_integer_value(json_object_get(agent, "auth_mode")),
                     1);
    RENDERED(fixture_render_user_get(c, "u00005", &d));
    assert_int_equal(json_array_size(json_object_get(j, "department")), 1);
    assert_int_equal(
        json_integer_value(json_array_get(json_object_get(j, "department"), 0)),
        1);
    assert_null(json_object_get(j, "order"));
    open5 = json_string_value(json_object_get(j, "open_userid"));
    assert_non_null(open5);
    u = json_incref(json_object_get(j, "open_userid"));
    RENDERED(fixture_render_user_simplelist(c, 1, 0, &d));
    assert_int_equal(json_array_size(json_object_get(j, "userlist")), 2);
    /* rows of open_userid, two pages of one */
    RENDERED(fixture_render_member_auth(c, NULL, 1, 0, &d));
    exact_keys(json_array_get(json_object_get(j, "member_auth_list"), 0),
               open_keys);
    assert_true(json_equal(
        json_object_get(json_array_get(json_object_get(j, "member_auth_"
                                                          "list"),
                                       0),
                        "open_userid"),
        u));
    assert_string_equal(json_string_value(json_object_get(j, "next_cursor")),
                        "mc1");
    RENDERED(fixture_render_member_auth(c, "mc1", 1, 0, &d));
    assert_int_equal(json_array_size(json_object_get(j, "member_auth_list")),
                     1);
    assert_string_equal(json_string_value(json_object_get(j, "next_cursor")),
                        "");
    /* the other reading of the unconfirmed shape */
    RENDERED(fixture_render_member_auth(c, NULL, 10, 1, &d));
    exact_keys(json_array_get(json_object_get(j, "member_auth_list"), 1),
               id_keys);
    assert_string_equal(
        json_string_value(json_object_get(
            json_array_get(json_object_get(j, "member_auth_list"), 1),
            "userid")),
        "u00007");
    assert_int_equal(fixture_render_member_auth(c, "mc3", 1, 0, &d),
                     BRK_ERR_INVAL);
    assert_int_equal(fixture_render_member_auth(c, NULL, 0, 0, &d),
                     BRK_ERR_INVAL);
    /* WeCom lists no admins of an app authorized by member */
    RENDERED(fixture_render_admin_list(c, &d));
    assert_null(json_object_get(j, "admin"));
    /* leaky: every member, both ids; the admins too */
    fixture_corp_set_strict(c, 0);
    RENDERED(fixture_render_member_auth(c, NULL, 10000, 0, &d));
    assert_int_equal(json_array_size(json_object_get(j, "member_auth_list")),
                     40);
    RENDERED(fixture_render_admin_list(c, &d));
    assert_int_equal(json_array_size(json_object_get(j, "admin")), 1);
    json_decref(u);
    json_decref(j);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_level_and_permissions_in_step(void **state)
{
    static const char *const ext[] = {"externalcontact:base:base"};
    static const char *const edit[] = {"externalcontact:base:base",
                                       "contact:edit:all"};
    struct fixture_corp *c = corp(1, 1);

    (void)state;
    assert_int_equal(fixture_corp_set_level(c, 3), BRK_OK);
    assert_int_equal(fixture_corp_privilege(c)->level, 3);
    assert_true(fixture_corp_has_permission(c, "contact:edit:all"));
    assert_false(fixture_corp_has_permission(c, "contact:base:base"));
    assert_true(fixture_corp_has_permission(c, "externalcontact:base:base"));
    assert_int_equal(fixture_corp_set_level(c, 4), BRK_OK);
    assert_true(fixture_corp_has_permission(c, "contact:base:single_user"));
    assert_false(fixture_corp_has_permission(c, "contact:edit:all"));
    /* a deprecated level changes the level only */
    assert_int_equal(fixture_corp_set_level(c, 2), BRK_OK);
    assert_int_equal(fixture_corp_privilege(c)->level, 2);
    assert_true(fixture_corp_has_permission(c, "contact:base:single_user"));
    /* the permissions carry the level along */
    assert_int_equal(fixture_corp_set_permissions(c, ext, 1, 1), BRK_OK);
    assert_int_equal(fixture_corp_privilege(c)->level, 2);
    assert_int_equal(fixture_corp_set_permissions(c, edit, 2, 1), BRK_OK);
    assert_int_equal(fixture_corp_privilege(c)->level, 3);
    fixture_corp_free(c);
}

static void
test_app_tags_and_admins(void **state)
{
    static const long bad_tag[] = {1, 5};
    static const long good_tag[] = {3};
    static const char *const who[] = {"u00002", "u00009"};
    static const char *const nobody[] = {"u00002", "x"};
    static const long types[] = {0, 1}, bad_types[] = {0, 2};
    struct fixture_corp *c = corp(1, 1);
    struct dynbuf d;
    json_t *j = NULL, *a;

    (void)state;
    dynbuf_init(&d, LIMIT);
    RENDERED(fixture_render_admin_list(c, &d));
    a = json_array_get(json_object_get(j, "admin"), 0);
    assert_string_equal(json_string_value(json_object_get(a, "userid")),
                        "u00001");
    assert_int_equal(json_integer_value(json_object_get(a, "auth_type")), 1);
    assert_int_equal(
        strncmp(json_string_value(json_object_get(a, "open_userid")), "wo", 2),
        0);
    assert_int_equal(fixture_corp_set_admins(c, nobody, types, 2),
                     BRK_ERR_INVAL);
    assert_int_equal(fixture_corp_set_admins(c, who, bad_types, 2),
                     BRK_ERR_INVAL);
    assert_int_equal(
        fixture_corp_set_admins(c, who, types, FIXTURE_MAX_ADMINS + 1),
        BRK_ERR_INVAL);
    RENDERED(fixture_render_admin_list(c, &d));
    assert_int_equal(json_array_size(json_object_get(j, "admin")), 1);
    assert_int_equal(fixture_corp_set_admins(c, who, types, 2), BRK_OK);
    RENDERED(fixture_render_admin_list(c, &d));
    a = json_array_get(json_object_get(j, "admin"), 1);
    assert_string_equal(json_string_value(json_object_get(a, "userid")),
                        "u00009");
    assert_int_equal(fixture_corp_set_admins(c, NULL, NULL, 0), BRK_OK);
    RENDERED(fixture_render_admin_list(c, &d));
    assert_int_equal(json_array_size(json_object_get(j, "admin")), 0);
    assert_int_equal(fixture_corp_set_app_tags(c, bad_tag, 2), BRK_ERR_INVAL);
    assert_int_equal(
        fixture_corp_set_app_tags(c, good_tag, FIXTURE_MAX_APP_TAGS + 1),
        BRK_ERR_INVAL);
    assert_int_equal(c->napp_tag, 0);
    assert_int_equal(fixture_corp_set_app_tags(c, good_tag, 1), BRK_OK);
    assert_int_equal(c->napp_tag, 1);
    json_decref(j);
    dynbuf_free(&d);
    fixture_corp_free(c);
}

static void
test_alloc_failure_grant(void **state)
{
    static const char *const who[] = {"u00005", "u00007"};
    static const long types[] = {1, 0}, tags[] = {2};
    struct fixture_corp *c = strict_corp(1, NULL, 0);
    struct dynbuf d;
    unsigned long n;
    enum brk_err err = BRK_ERR_NOMEM;
    int which;

    (void)state;
    for (which = 0; which < 7; which++) {
        for (n = 1; n < 1000; n++) {
            dynbuf_init(&d, LIMIT);
            brk_alloc_fail_at(n);
            switch (which) {
            case 0:
                err = fixture_corp_set_auth_mode(c, 1, who, 2);
                break;
            case 1:
                err = fixture_corp_set_app_tags(c, tags, 1);
                break;
            case 2:
                err = fixture_corp_set_admins(c, who, types, 2);
                break;
            case 3:
                err = fixture_corp_set_level(c, 3);
                break;
            case 4:
                err = fixture_render_user_list_id(c, NULL, 100, &d);
                break;
            case 5:
                err = fixture_render_department_list(c, 0, &d);
                break;
            default:
                err = fixture_render_member_auth(c, NULL, 100, 0, &d);
                break;
            }
            brk_alloc_fail_at(0);
            dynbuf_free(&d);
            if (err == BRK_OK)
                break;
            assert_int_equal(err, BRK_ERR_NOMEM);
            /* nothing changed */
            if (which == 0)
                assert_int_equal(fixture_corp_auth_mode(c), 0);
            else if (which == 1)
                assert_int_equal(c->napp_tag, 0);
            else if (which == 2)
                assert_int_equal(c->nadmin, 1);
            else if (which == 3)
                assert_int_equal(fixture_corp_privilege(c)->level, 1);
        }
        assert_int_equal(err, BRK_OK);
    }
    assert_int_equal(fixture_corp_auth_mode(c), 1);
    assert_int_equal(fixture_corp_privilege(c)->level, 3);
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
        cmocka_unit_test(test_five_digit_corp_index),
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
        cmocka_unit_test(test_check_range_matches_the_formula),
        cmocka_unit_test(test_check_permissions),
        cmocka_unit_test(test_check_range_refusals),
        cmocka_unit_test(test_check_groupchat_list_too_wide),
        cmocka_unit_test(test_strict_user_shapes),
        cmocka_unit_test(test_strict_user_lists),
        cmocka_unit_test(test_strict_list_id),
        cmocka_unit_test(test_strict_departments_and_tags),
        cmocka_unit_test(test_strict_external_shapes),
        cmocka_unit_test(test_member_authorization),
        cmocka_unit_test(test_level_and_permissions_in_step),
        cmocka_unit_test(test_app_tags_and_admins),
        cmocka_unit_test(test_alloc_failure_grant),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
