/*
 * Tests for the grant: the order and errcodes of the refusals, the fate of
 * a field for every pair of grants, no allocation on the decision path,
 * and that brokerctl explain's reading (grant_decide, grant_field along a
 * field's ancestors) and the service API's (grant_decide, then the filter
 * with the effective grant) agree on every endpoint of the shipped scopes/
 * under every tenant grant x service scope combination tried.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "broker.h"
#include "errcodes.h"
#include "filter.h"
#include "grant.h"
#include "record.h"
#include "scope_map.h"

#define CORP "wwcorp0001"

static struct record_service svc;
static struct record_tenant ten;

static void
reset(void)
{
    memset(&svc, 0, sizeof(svc));
    memset(&ten, 0, sizeof(ten));
    svc.gen = 3;
    svc.any_corp = 1;
    ten.active = 1;
    snprintf(ten.status, sizeof(ten.status), "active");
    assert_int_equal(scope_grant_add_name(&svc.grant, "contacts.read"), BRK_OK);
    assert_int_equal(scope_grant_add_name(&ten.grant, "contact:base:base"),
                     BRK_OK);
}

static enum grant_refusal
ask(long token_gen, const char *suite, int need, enum errcode *code)
{
    struct grant_ask a = {&svc, token_gen, suite, CORP, &ten, need};
    struct grant_verdict v;

    grant_decide(&a, &v);
    *code = v.code;
    assert_int_equal(v.code, grant_errcode(v.why));
    return v.why;
}

/* Each refusal in turn, with its errcode, the earliest one winning. */
static void
test_refusal_order(void **state)
{
    int base = scope_perm_id("contact:base:base");
    int ext = scope_perm_id("externalcontact:base:base");
    char corps[1][RECORD_ID_MAX + 1] = {"wwother"};
    struct grant_ask none = {NULL, -1, "s1", CORP, &ten, base};
    struct grant_verdict v;
    enum errcode c;

    (void)state;
    reset();
    assert_int_equal(ask(3, "s1", base, &c), GRANT_ALLOWED);
    assert_int_equal(c, ERRCODE_OK);
    assert_int_equal(ask(-1, "s1", base, &c), GRANT_ALLOWED);
    assert_int_equal(ask(2, "s1", base, &c), GRANT_NO_SERVICE);
    assert_int_equal(errcodes_code(c), 40014);
    grant_decide(&none, &v);
    assert_int_equal(v.why, GRANT_NO_SERVICE);
    assert_int_equal(ask(3, "s1", ext, &c), GRANT_BOTH_LACK);
    assert_int_equal(errcodes_code(c), 48002);
    assert_int_equal(scope_grant_add_name(&ten.grant, "external.customers"),
                     BRK_OK);
    assert_int_equal(ask(3, "s1", ext, &c), GRANT_SERVICE_LACKS);
    reset();
    assert_int_equal(scope_grant_add_name(&svc.grant, "external.customers"),
                     BRK_OK);
    assert_int_equal(ask(3, "s1", ext, &c), GRANT_TENANT_LACKS);
    /* the OAuth endpoints need no scope */
    assert_int_equal(ask(3, "s1", SCOPE_PERM_ALWAYS, &c), GRANT_ALLOWED);
    svc.corps = corps;
    svc.ncorps = 1;
    svc.any_corp = 0;
    assert_int_equal(ask(3, "s1", base, &c), GRANT_CORP);
    assert_int_equal(errcodes_code(c), 48004);
    ten.active = 0;
    assert_int_equal(ask(3, "s1", base, &c), GRANT_INACTIVE);
    assert_int_equal(errcodes_code(c), 48004);
    snprintf(svc.suite, sizeof(svc.suite), "s2");
    assert_int_equal(ask(3, "s1", base, &c), GRANT_OTHER_SUITE);
    assert_int_equal(errcodes_code(c), 40013);
    assert_int_equal(ask(3, "s2", base, &c), GRANT_INACTIVE);
    svc.revoked = 1;
    assert_int_equal(ask(3, "s2", base, &c), GRANT_REVOKED);
    assert_int_equal(errcodes_code(c), 40014);
    assert_int_equal(ask(4, "s2", base, &c), GRANT_NO_SERVICE);
    /* not a tenant */
    reset();
    none.svc = &svc;
    none.ten = NULL;
    grant_decide(&none, &v);
    assert_int_equal(v.why, GRANT_NO_TENANT);
    assert_int_equal(errcodes_code(v.code), 48004);
    /* the service stage alone: what is checked before the tenant loads */
    none.suite = NULL;
    none.token_gen = 3;
    grant_decide(&none, &v);
    assert_int_equal(v.why, GRANT_ALLOWED);
    none.token_gen = 2;
    grant_decide(&none, &v);
    assert_int_equal(v.why, GRANT_NO_SERVICE);
    /* an unknown refusal is never success */
    assert_int_equal(grant_errcode((enum grant_refusal)99),
                     ERRCODE_API_FORBIDDEN);
}

/* A refused request has no effective grant unless only the scope lacked. */
static void
test_effective_only_when_tenant_passes(void **state)
{
    int base = scope_perm_id("contact:base:base");
    struct grant_ask a = {&svc, 3, "s1", CORP, &ten, base};
    struct grant_verdict v;

    (void)state;
    reset();
    grant_decide(&a, &v);
    assert_true(scope_grant_has(&v.effective, base));
    ten.active = 0;
    grant_decide(&a, &v);
    assert_false(scope_grant_has(&v.effective, base));
}

static void
test_field_fates(void **state)
{
    struct scope_grant t, s;
    int p = scope_perm_id("contact:sensitive:gender");

    (void)state;
    scope_grant_clear(&t);
    scope_grant_clear(&s);
    assert_int_equal(grant_field(&t, &s, SCOPE_PERM_ALWAYS),
                     GRANT_FIELD_ALWAYS);
    assert_int_equal(grant_field(&t, &s, SCOPE_PERM_NEVER), GRANT_FIELD_NEVER);
    assert_int_equal(grant_field(&t, &s, -1), GRANT_FIELD_NEVER);
    assert_int_equal(grant_field(&t, &s, SCOPE_PERM_MAX), GRANT_FIELD_NEVER);
    assert_int_equal(grant_field(&t, &s, p), GRANT_FIELD_BOTH_LACK);
    scope_grant_add(&t, p);
    assert_int_equal(grant_field(&t, &s, p), GRANT_FIELD_SERVICE_LACKS);
    scope_grant_add(&s, p);
    assert_int_equal(grant_field(&t, &s, p), GRANT_FIELD_KEPT);
    scope_grant_clear(&t);
    assert_int_equal(grant_field(&t, &s, p), GRANT_FIELD_TENANT_LACKS);
    assert_true(grant_field_kept(GRANT_FIELD_ALWAYS));
    assert_true(grant_field_kept(GRANT_FIELD_KEPT));
    assert_false(grant_field_kept(GRANT_FIELD_NEVER));
    assert_false(grant_field_kept(GRANT_FIELD_TENANT_LACKS));
    assert_false(grant_field_kept(GRANT_FIELD_SERVICE_LACKS));
    assert_false(grant_field_kept(GRANT_FIELD_BOTH_LACK));
}

/* The decision path allocates nothing: with every allocation failing it
 * decides as without. */
static void
test_no_allocation(void **state)
{
    int base = scope_perm_id("contact:base:base");
    struct grant_ask a = {&svc, 3, "s1", CORP, &ten, base};
    struct grant_verdict v, w;
    struct scope_grant g;
    unsigned long n;

    (void)state;
    reset();
    grant_decide(&a, &w);
    for (n = 1; n <= 4; n++) {
        brk_alloc_fail_at(n);
        grant_decide(&a, &v);
        scope_grant_clear(&g);
        assert_int_equal(scope_grant_add_name(&g, "member.sensitive"), BRK_OK);
        assert_int_equal(grant_field(&g, &g, base), GRANT_FIELD_BOTH_LACK);
        assert_false(brk_alloc_failed());
        brk_alloc_fail_at(0);
        assert_int_equal(v.why, w.why);
        assert_memory_equal(&v.effective, &w.effective, sizeof(v.effective));
    }
}

/*---- explain and the service API agree ----*/

/* A value of every declared field, one element per array. */
static json_t *
full_value(const struct scope_node *n)
{
    json_t *o;
    size_t i;

    switch (n->type) {
    case SCOPE_T_STRING:
        return json_string("1");
    case SCOPE_T_INTEGER:
    case SCOPE_T_NUMBER:
        return json_integer(1);
    case SCOPE_T_BOOL:
        return json_true();
    case SCOPE_T_ARRAY:
        o = json_array();
        if (n->items != NULL)
            json_array_append_new(o, full_value(n->items));
        return o;
    case SCOPE_T_OBJECT:
    default:
        o = json_object();
        for (i = 0; i < n->nfields; i++)
            json_object_set_new(o, n->fields[i].name,
                                full_value(&n->fields[i]));
        return o;
    }
}

static int
all_in_range(enum scope_record kind, const char *id, size_t len, void *arg)
{
    (void)kind;
    (void)id;
    (void)len;
    (void)arg;
    return 1;
}

/* What the service API sends for e under effective (the filter). */
static json_t *
served(const struct scope_endpoint *e, const struct scope_grant *effective)
{
    json_t *full = full_value(&e->root), *out;
    char *in = json_dumps(full, JSON_COMPACT), *res = NULL;
    struct filter *f = NULL;
    json_error_t jerr;
    size_t len;

    assert_non_null(in);
    assert_int_equal(
        filter_new(&e->root, effective, all_in_range, NULL, NULL, &f), BRK_OK);
    assert_int_equal(filter_feed(f, in, strlen(in)), BRK_OK);
    assert_int_equal(filter_finish(f), BRK_OK);
    assert_int_equal(filter_take_output(f, &res, &len), BRK_OK);
    out = json_loadb(res, len, 0, &jerr);
    assert_non_null(out);
    filter_free(f);
    brk_free(res);
    free(in); /* from jansson */
    json_decref(full);
    return out;
}

/* Compare, field by field, explain's verdict (parent kept and the grant
 * keeping the field) with what the filter left in got. */
static unsigned long
compare(const struct scope_node *obj, const json_t *got, int parent_kept,
        const struct scope_grant *t, const struct scope_grant *s,
        const char *path)
{
    const struct scope_node *ch, *inner;
    const json_t *v;
    unsigned long n = 0;
    size_t i;
    int kept;

    for (i = 0; i < obj->nfields; i++) {
        ch = &obj->fields[i];
        kept = parent_kept && grant_field_kept(grant_field(t, s, ch->perm));
        v = json_object_get(got, ch->name);
        if ((v != NULL) != kept)
            fail_msg("%s %s.%s: explain says %s, the service API %s", path,
                     obj->name ? obj->name : "", ch->name,
                     kept ? "kept" : "removed", v ? "kept" : "removed");
        n++;
        inner = ch;
        while (inner->type == SCOPE_T_ARRAY && inner->items != NULL) {
            inner = inner->items;
            v = json_array_get(v, 0);
        }
        if (kept && inner->type == SCOPE_T_OBJECT)
            n += compare(inner, v, kept, t, s, path);
    }
    return n;
}

static void
test_explain_and_service_api_agree(void **state)
{
    static const char *const tenants[][4] = {
        {NULL},
        {"contact:base:base", NULL},
        {"contact:edit:all", NULL},
        {"contacts.read", "member.sensitive", NULL},
        {"external.customers", NULL},
        {"contacts.read", "member.sensitive", "external.customers",
         "corp_arch:base:base"},
    };
    const char *dir = getenv("BROKER_SRCDIR");
    char path[4096];
    struct brk_errinfo info = {"", 0, -1};
    struct scope_map *m = NULL;
    const struct scope_endpoint *e;
    struct grant_verdict v;
    struct grant_ask a;
    unsigned long fields = 0, combos = 0;
    size_t i, k, j;
    int svc_i, p, served_ok;
    json_t *got;

    (void)state;
    snprintf(path, sizeof(path), "%s/scopes", dir ? dir : ".");
    if (scope_map_load(path, &m, &info) != BRK_OK)
        fail_msg("shipped scopes: %s", info.msg);
    assert_true(scope_map_count(m) >= 16);
    for (i = 0; i < scope_map_count(m); i++) {
        e = scope_map_at(m, i);
        for (k = 0; k < nitems(tenants); k++) {
            /* services: each alias, each permission, everything */
            for (svc_i = -1;
                 svc_i < scope_perm_count() + (int)scope_alias_count();
                 svc_i++) {
                reset();
                scope_grant_clear(&svc.grant);
                scope_grant_clear(&ten.grant);
                for (j = 0; j < 4 && tenants[k][j] != NULL; j++)
                    assert_int_equal(
                        scope_grant_add_name(&ten.grant, tenants[k][j]),
                        BRK_OK);
                if (svc_i < 0) {
                    for (p = 2; p < scope_perm_count(); p++)
                        scope_grant_add(&svc.grant, p);
                } else if (svc_i < scope_perm_count()) {
                    if (svc_i <= SCOPE_PERM_NEVER)
                        continue;
                    scope_grant_add(&svc.grant, svc_i);
                } else {
                    assert_int_equal(
                        scope_grant_add_name(
                            &svc.grant,
                            scope_alias_name((size_t)svc_i -
                                             (size_t)scope_perm_count())),
                        BRK_OK);
                }
                a = (struct grant_ask){&svc, 3, "s1", CORP, &ten, e->scope};
                grant_decide(&a, &v);
                /* the rule as SPEC §5 writes it */
                served_ok = scope_grant_has(&ten.grant, e->scope) &&
                            scope_grant_has(&svc.grant, e->scope);
                assert_int_equal(v.why == GRANT_ALLOWED, served_ok);
                combos++;
                if (!served_ok)
                    continue;
                got = served(e, &v.effective);
                fields +=
                    compare(&e->root, got, 1, &ten.grant, &svc.grant, e->path);
                json_decref(got);
            }
        }
    }
    /* every endpoint is served under some combination */
    assert_true(combos > 16 * nitems(tenants));
    assert_true(fields > 1000);
    scope_map_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusal_order),
        cmocka_unit_test(test_effective_only_when_tenant_passes),
        cmocka_unit_test(test_field_fates),
        cmocka_unit_test(test_no_allocation),
        cmocka_unit_test(test_explain_and_service_api_agree),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
