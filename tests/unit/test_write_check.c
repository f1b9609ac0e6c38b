/*
 * Tests for the write body check: what passes and what it forwards, each
 * refusal with its errcode, subjects at any depth, the audit key names,
 * allocation failures, and a property test over random bodies built from
 * declared and undeclared keys.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "broker.h"
#include "scope_map.h"
#include "write_check.h"

static struct scope_map *shipped;

static const struct scope_body *
body_of(const char *path)
{
    const struct scope_endpoint *e = scope_map_find(shipped, path);

    assert_non_null(e);
    assert_true(e->write);
    return &e->body;
}

/* Check text against path's body, expecting want; the result (or NULL). */
static struct write_checked *
check(const char *path, const char *text, enum errcode want)
{
    struct write_checked *w = NULL;
    char msg[256] = "";
    enum errcode e;

    e = write_check(body_of(path), text, strlen(text), &w, msg, sizeof(msg));
    if (e != want)
        fail_msg("%s %s: errcode enum %d (%s), want %d", path, text, (int)e,
                 msg, (int)want);
    if (want != ERRCODE_OK)
        assert_null(w);
    return w;
}

#define REMARK "/cgi-bin/externalcontact/remark"
#define TPL    "/cgi-bin/externalcontact/add_msg_template"
#define CW     "/cgi-bin/externalcontact/add_contact_way"
#define WEL    "/cgi-bin/externalcontact/send_welcome_msg"

static void
test_valid_remark(void **state)
{
    struct write_checked *w;
    json_t *j;
    json_error_t jerr;

    (void)state;
    w = check(
        REMARK,
        "{\"userid\":\"u1\",\"external_userid\":\"wo1\","
        "\"remark\":\"\\u674e\\u90e8\\u957f\",\"remark_mobiles\":[\"1\"]}",
        ERRCODE_OK);
    assert_int_equal(w->nsubjects, 2);
    assert_int_equal(w->subjects[0].kind, SCOPE_S_MEMBER);
    assert_string_equal(w->subjects[0].id, "u1");
    assert_int_equal(w->subjects[1].kind, SCOPE_S_CUSTOMER);
    assert_string_equal(w->subjects[1].id, "wo1");
    assert_string_equal(w->keys,
                        "userid,external_userid,remark,remark_mobiles");
    j = json_loadb(w->body, w->body_len, 0, &jerr);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 4);
    assert_string_equal(json_string_value(json_object_get(j, "userid")), "u1");
    json_decref(j);
    assert_true(write_checked_has_key(w, "remark"));
    assert_false(write_checked_has_key(w, "remar"));
    assert_false(write_checked_has_key(w, "description"));
    write_checked_free(w);
}

static void
test_refusals(void **state)
{
    char big[WRITE_BODY_MAX + 64];

    (void)state;
    /* 40035: undeclared, repeated, missing */
    check(REMARK, "{\"userid\":\"u1\",\"external_userid\":\"w\",\"x\":1}",
          ERRCODE_INVALID_PARAMETER);
    check(REMARK,
          "{\"userid\":\"u1\",\"userid\":\"u2\",\"external_userid\":\"w\"}",
          ERRCODE_INVALID_PARAMETER);
    check(REMARK, "{\"userid\":\"u1\"}", ERRCODE_INVALID_PARAMETER);
    check(WEL,
          "{\"welcome_code\":\"c\",\"text\":{\"content\":\"a\",\"x\":\"b\"}}",
          ERRCODE_INVALID_PARAMETER);
    check(WEL,
          "{\"welcome_code\":\"c\",\"attachments\":[{\"msgtype\":\"image\","
          "\"image\":{\"media_id\":\"m\",\"media_id\":\"n\"}}]}",
          ERRCODE_INVALID_PARAMETER);
    /* 40058: malformed, not an object, wrong type, null, too long, too
     * many, enum */
    check(REMARK, "{\"userid\":", ERRCODE_INVALID_VALUE);
    check(REMARK, "", ERRCODE_INVALID_VALUE);
    check(REMARK, "[1]", ERRCODE_INVALID_VALUE);
    check(REMARK, "{\"userid\":1,\"external_userid\":\"w\"}",
          ERRCODE_INVALID_VALUE);
    check(REMARK, "{\"userid\":null,\"external_userid\":\"w\"}",
          ERRCODE_INVALID_VALUE);
    /* 20 characters pass, 21 do not: characters, not bytes */
    write_checked_free(
        check(REMARK,
              "{\"userid\":\"u\",\"external_userid\":\"w\","
              "\"remark\":\"一二三四五六七八九十一二三四五六七八九十\"}",
              ERRCODE_OK));
    check(REMARK,
          "{\"userid\":\"u\",\"external_userid\":\"w\","
          "\"remark\":\"一二三四五六七八九十一二三四五六七八九十一\"}",
          ERRCODE_INVALID_VALUE);
    check(REMARK,
          "{\"userid\":\"u\",\"external_userid\":\"w\",\"remark_mobiles\":"
          "[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\"]}",
          ERRCODE_INVALID_VALUE);
    check(TPL, "{\"chat_type\":\"many\"}", ERRCODE_INVALID_VALUE);
    check(CW, "{\"type\":3,\"scene\":1}", ERRCODE_INVALID_VALUE);
    check(WEL,
          "{\"welcome_code\":\"c\",\"attachments\":[{\"msgtype\":\"audio\"}]}",
          ERRCODE_INVALID_VALUE);
    /* an id with a NUL inside is refused */
    check(REMARK, "{\"userid\":\"u\\u0000x\",\"external_userid\":\"w\"}",
          ERRCODE_INVALID_VALUE);
    memset(big, ' ', sizeof(big) - 1);
    big[0] = '{';
    big[sizeof(big) - 2] = '}';
    big[sizeof(big) - 1] = '\0';
    check(REMARK, big, ERRCODE_INVALID_VALUE);
}

static void
test_subjects_at_depth(void **state)
{
    struct write_checked *w;

    (void)state;
    w = check(CW,
              "{\"type\":2,\"scene\":2,\"user\":[\"a\",\"b\"],\"party\":[7],"
              "\"conclusions\":{\"text\":{\"content\":\"hi\"}}}",
              ERRCODE_OK);
    assert_int_equal(w->nsubjects, 3);
    assert_int_equal(w->subjects[0].kind, SCOPE_S_MEMBER);
    assert_int_equal(w->subjects[1].kind, SCOPE_S_MEMBER);
    assert_int_equal(w->subjects[2].kind, SCOPE_S_DEPARTMENT);
    assert_string_equal(w->subjects[2].id, "7");
    assert_string_equal(w->keys, "type,scene,user,party,conclusions,"
                                 "conclusions.text,conclusions.text.content");
    write_checked_free(w);
    w = check(TPL,
              "{\"external_userid\":[\"c1\",\"c2\"],\"sender\":\"s\","
              "\"tag_filter\":{\"group_list\":[{\"tag_list\":[\"t\"]}]}}",
              ERRCODE_OK);
    assert_int_equal(w->nsubjects, 3);
    assert_int_equal(w->subjects[0].kind, SCOPE_S_CUSTOMER);
    assert_int_equal(w->subjects[2].kind, SCOPE_S_MEMBER);
    assert_true(write_checked_has_key(w, "tag_filter"));
    assert_true(write_checked_has_key(w, "tag_filter.group_list[].tag_list"));
    write_checked_free(w);
    w = check(WEL, "{\"welcome_code\":\"CODE\"}", ERRCODE_OK);
    assert_int_equal(w->nsubjects, 1);
    assert_int_equal(w->subjects[0].kind, SCOPE_S_WELCOME_CODE);
    write_checked_free(w);
}

static void
test_alloc_failures(void **state)
{
    static const char text[] =
        "{\"type\":2,\"scene\":2,\"user\":[\"a\",\"b\"],\"party\":[7],"
        "\"conclusions\":{\"text\":{\"content\":\"hi\"}}}";
    struct write_checked *w;
    char msg[128], ref[512], got[512];
    unsigned long n;
    enum errcode e;

    (void)state;
    w = NULL;
    assert_int_equal(
        write_check(body_of(CW), text, strlen(text), &w, msg, sizeof(msg)),
        ERRCODE_OK);
    snprintf(ref, sizeof(ref), "%s|%s", w->body, w->keys);
    write_checked_free(w);
    for (n = 1;; n++) {
        w = NULL;
        brk_alloc_fail_at(n);
        e = write_check(body_of(CW), text, strlen(text), &w, msg, sizeof(msg));
        if (!brk_alloc_failed()) {
            brk_alloc_fail_at(0);
            assert_int_equal(e, ERRCODE_OK);
            write_checked_free(w);
            break;
        }
        brk_alloc_fail_at(0);
        /* jansson's encoder shrugs off some failures of its own; what
         * passes is then exactly what passes without one */
        if (e == ERRCODE_OK) {
            snprintf(got, sizeof(got), "%s|%s", w->body, w->keys);
            assert_string_equal(got, ref);
            write_checked_free(w);
            continue;
        }
        /* otherwise the request is refused; never half a body */
        assert_null(w);
    }
    assert_true(n > 5);
}

/*---- Property: random bodies ----*/

static unsigned long long rs = 0x9E3779B97F4A7C15ULL;

static unsigned
rnd(unsigned n)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (unsigned)(rs % n);
}

/* A random value for d; sometimes with undeclared keys or wrong types. */
static json_t *
gen(const struct scope_body *d, int depth)
{
    static const char *const junk[] = {"x", "secret", "mock_internal", "a"};
    json_t *v;
    size_t i, n;
    char id[16];

    if (rnd(20) == 0)
        return json_integer(rnd(3)); /* often the wrong type */
    switch (d->type) {
    case SCOPE_T_OBJECT:
        v = json_object();
        for (i = 0; i < d->nfields; i++)
            if (rnd(3) != 0 && depth < 8)
                json_object_set_new(v, d->fields[i].name,
                                    gen(&d->fields[i], depth + 1));
        if (rnd(8) == 0)
            json_object_set_new(v, junk[rnd(4)], json_string("leak"));
        return v;
    case SCOPE_T_ARRAY:
        v = json_array();
        n = rnd(4);
        for (i = 0; i < n; i++)
            json_array_append_new(v, gen(d->items, depth + 1));
        return v;
    case SCOPE_T_STRING:
        if (d->nenum)
            return json_string(d->enum_s[rnd((unsigned)d->nenum)]);
        snprintf(id, sizeof(id), "id%u", rnd(1000));
        return json_string(id);
    case SCOPE_T_INTEGER:
        if (d->nenum)
            return json_integer(d->enum_i[rnd((unsigned)d->nenum)]);
        return json_integer(rnd(100));
    case SCOPE_T_NUMBER:
        return json_real(1.5);
    case SCOPE_T_BOOL:
        return json_boolean(rnd(2));
    }
    return json_null();
}

/* Every key of v declared in d; count the subjects v names. */
static void
declared_only(const struct scope_body *d, const json_t *v, size_t *subjects)
{
    const char *k;
    const json_t *e;
    size_t i;

    if (d->subject != SCOPE_S_NONE)
        (*subjects)++;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)(uintptr_t)v, k, e)
        {
            const struct scope_body *f = scope_body_field(d, k, strlen(k));

            if (f == NULL)
                fail_msg("undeclared key %s forwarded", k);
            declared_only(f, e, subjects);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, e) declared_only(d->items, e, subjects);
    }
}

static void
test_property_random_bodies(void **state)
{
    size_t i, e, subjects, passed = 0, refused = 0;
    const struct scope_endpoint *ep;
    struct write_checked *w;
    json_error_t jerr;
    json_t *body, *out;
    char msg[256], *text;
    enum errcode code;

    (void)state;
    for (i = 0; i < 20000; i++) {
        do
            ep = scope_map_at(shipped, rnd((unsigned)scope_map_count(shipped)));
        while (!ep->write);
        body = gen(&ep->body, 0);
        text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(body);
        assert_non_null(text);
        w = NULL;
        code = write_check(&ep->body, text, strlen(text), &w, msg, sizeof(msg));
        if (code != ERRCODE_OK) {
            assert_true(code == ERRCODE_INVALID_PARAMETER ||
                        code == ERRCODE_INVALID_VALUE);
            assert_null(w);
            refused++;
            free(text);
            continue;
        }
        passed++;
        /* the input passed: its subjects all reach the list, and what is
         * forwarded holds declared keys only */
        subjects = 0;
        body = json_loads(text, 0, &jerr);
        declared_only(&ep->body, body, &subjects);
        json_decref(body);
        assert_int_equal(subjects, w->nsubjects);
        out = json_loadb(w->body, w->body_len, JSON_REJECT_DUPLICATES, &jerr);
        assert_non_null(out);
        subjects = 0;
        declared_only(&ep->body, out, &subjects);
        assert_int_equal(subjects, w->nsubjects);
        for (e = 0; e < w->nsubjects; e++)
            assert_non_null(w->subjects[e].id);
        json_decref(out);
        write_checked_free(w);
        free(text);
    }
    /* both outcomes were exercised */
    assert_true(passed > 1000);
    assert_true(refused > 1000);
}

static int
setup(void **state)
{
    static const char *const cands[] = {".", "..", "../..", "../../.."};
    struct brk_errinfo info;
    char dir[PATH_MAX];
    size_t i;

    (void)state;
    json_set_alloc_funcs(brk_malloc, brk_free);
    for (i = 0; i < sizeof(cands) / sizeof(cands[0]); i++) {
        snprintf(dir, sizeof(dir), "%s/scopes", cands[i]);
        if (access(dir, F_OK) == 0 &&
            scope_map_load(dir, &shipped, &info) == BRK_OK)
            return 0;
    }
    return -1;
}

static int
teardown(void **state)
{
    (void)state;
    brk_alloc_fail_at(0);
    scope_map_free(shipped);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_remark),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_subjects_at_depth),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_property_random_bodies),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
