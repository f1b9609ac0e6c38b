/*
 * The grant: the one table of permission names and coarse aliases, and
 * the one decision of what a service may call and receive.
 */
#include <string.h>

#include "grant.h"
#include "record.h"

/*---- Permissions ----*/

/*
 * Every permission the scope files and grants may name. The strings are
 * WeCom's (wecom-protocol.md §2.10, agent/get_permissions); ids are
 * indexes into this table, so append only.
 */
static const char *const perm_names[] = {
    [SCOPE_PERM_ALWAYS] = "always",
    [SCOPE_PERM_NEVER] = "never",
    "contact:base:base",
    "contact:base:single_user",
    "contact:edit:all",
    "contact:sensitive:avatar",
    "contact:sensitive:qrcode",
    "contact:sensitive:gender",
    "contact:sensitive:user_name",
    "contact:sensitive:mobile",
    "contact:sensitive:department_name",
    "contact:sensitive:email",
    "contact:sensitive:position",
    "contact:sensitive:telephone",
    "contact:sensitive:address",
    "contact:sensitive:extattr",
    "contact:sensitive:external_profile",
    "contact:sensitive:external_position",
    "contact:sensitive:biz_mail",
    "corp_arch:base:base",
    "corp_arch:member:direct_leader",
    "externalcontact:base:base",
    "externalcontact:contact:tag",
    "externalcontact:contact:group_msg",
    "externalcontact:contact:welcome_msg",
    "externalcontact:contact:qrcode",
    "externalcontact:contact:transfer",
    "externalcontact:contact:resigned",
    "externalcontact:contact:stat",
};

_Static_assert(nitems(perm_names) <= SCOPE_PERM_MAX,
               "permission table larger than struct scope_grant");

/*
 * What a name adds to a grant besides itself, in one place. A coarse
 * alias (what ops give services) is not a permission; a permission may
 * imply weaker ones. A pattern ending in '*' stands for every permission
 * with that prefix, so a sensitive field added to the table joins
 * member.sensitive by itself.
 *
 * - contacts.read: basic contact reads only. Not contact:base:single_user
 *   (no declared endpoint uses it; a level-4 app reads nobody else), not
 *   the sensitive fields (a separate consent per tenant), not corp_arch
 *   (the 组织架构信息 consent shows structure beyond the visible range
 *   and leaders: ops name corp_arch:* explicitly).
 * - member.sensitive: every contact:sensitive:* field.
 * - external.customers: customer basic info, the gate of every
 *   externalcontact read; the other externalcontact:* strings are write
 *   or statistics scopes no declared endpoint uses.
 * - contact:edit:all (contacts read-write, level 3) includes the basic
 *   read-only permission (level 1).
 */
struct expansion {
    const char *name;
    int alias; /* 1: a coarse alias, 0: a permission implying others */
    const char *const *perms; /* NULL-terminated names or prefixes* */
};

static const char *const exp_contacts_read[] = {"contact:base:base", NULL};
static const char *const exp_member_sensitive[] = {"contact:sensitive:*", NULL};
static const char *const exp_external_customers[] = {
    "externalcontact:base:base", NULL};
static const char *const exp_edit_all[] = {"contact:edit:all",
                                           "contact:base:base", NULL};

static const struct expansion expansions[] = {
    {"contacts.read", 1, exp_contacts_read},
    {"member.sensitive", 1, exp_member_sensitive},
    {"external.customers", 1, exp_external_customers},
    {"contact:edit:all", 0, exp_edit_all},
};

/* Empty g (it still has ALWAYS). Cannot fail. */
void
scope_grant_clear(struct scope_grant *g)
{
    memset(g, 0, sizeof(*g));
}

/* NEVER is never granted: a field tagged "never" stays removed whatever
 * a grant was built from. */
void
scope_grant_add(struct scope_grant *g, int perm)
{
    if (perm < 0 || perm >= SCOPE_PERM_MAX || perm == SCOPE_PERM_NEVER)
        return;
    g->bits[perm / 64] |= (uint64_t)1 << (perm % 64);
}

/* ALWAYS is in every grant, NEVER in none; ids out of range in none. */
int
scope_grant_has(const struct scope_grant *g, int perm)
{
    if (perm == SCOPE_PERM_ALWAYS)
        return 1;
    if (perm < 0 || perm >= SCOPE_PERM_MAX || perm == SCOPE_PERM_NEVER)
        return 0;
    return (g->bits[perm / 64] >> (perm % 64)) & 1;
}

/* g = a ∩ b; g may be a or b. Cannot fail. */
void
scope_grant_intersect(struct scope_grant *g, const struct scope_grant *a,
                      const struct scope_grant *b)
{
    size_t i;

    for (i = 0; i < nitems(g->bits); i++)
        g->bits[i] = a->bits[i] & b->bits[i];
}

/* The id of a permission name, or -1 (aliases are not permissions). */
int
scope_perm_id(const char *name)
{
    size_t i;

    if (name == NULL)
        return -1;
    for (i = 0; i < nitems(perm_names); i++)
        if (strcmp(perm_names[i], name) == 0)
            return (int)i;
    return -1;
}

/* The name of a permission id: static, or NULL out of range. */
const char *
scope_perm_name(int id)
{
    if (id < 0 || (size_t)id >= nitems(perm_names))
        return NULL;
    return perm_names[id];
}

/* Number of ids, ALWAYS and NEVER included. */
int
scope_perm_count(void)
{
    return (int)nitems(perm_names);
}

static const struct expansion *
find_expansion(const char *name)
{
    size_t i;

    for (i = 0; i < nitems(expansions); i++)
        if (strcmp(expansions[i].name, name) == 0)
            return &expansions[i];
    return NULL;
}

/* Add one entry of an expansion: a permission name or a "prefix*". */
static void
add_pattern(struct scope_grant *g, const char *pat)
{
    size_t len = strlen(pat), i;

    if (len > 0 && pat[len - 1] == '*') {
        for (i = 2; i < nitems(perm_names); i++)
            if (strncmp(perm_names[i], pat, len - 1) == 0)
                scope_grant_add(g, (int)i);
        return;
    }
    scope_grant_add(g, scope_perm_id(pat));
}

/*
 * Add what name stands for to g: a coarse alias expands to its
 * permissions, a permission adds itself and what it implies. The
 * pseudo-permissions "always" and "never" cannot be granted.
 * Returns BRK_OK, or BRK_ERR_NOTFOUND (g unchanged) for any other name.
 */
enum brk_err
scope_grant_add_name(struct scope_grant *g, const char *name)
{
    const struct expansion *x;
    size_t i;
    int id;

    if (name == NULL)
        return BRK_ERR_NOTFOUND;
    x = find_expansion(name);
    if (x != NULL) {
        for (i = 0; x->perms[i] != NULL; i++)
            add_pattern(g, x->perms[i]);
        return BRK_OK;
    }
    id = scope_perm_id(name);
    if (id < 0 || id == SCOPE_PERM_ALWAYS || id == SCOPE_PERM_NEVER)
        return BRK_ERR_NOTFOUND;
    scope_grant_add(g, id);
    return BRK_OK;
}

/* Nonzero for a coarse alias (not for an implying permission). */
int
scope_is_alias(const char *name)
{
    const struct expansion *x = name ? find_expansion(name) : NULL;

    return x != NULL && x->alias;
}

/* Number of coarse aliases. */
size_t
scope_alias_count(void)
{
    size_t i, n = 0;

    for (i = 0; i < nitems(expansions); i++)
        n += expansions[i].alias != 0;
    return n;
}

/* The i-th coarse alias in table order: static, or NULL. */
const char *
scope_alias_name(size_t i)
{
    size_t k;

    for (k = 0; k < nitems(expansions); k++) {
        if (!expansions[k].alias)
            continue;
        if (i-- == 0)
            return expansions[k].name;
    }
    return NULL;
}

/*---- Decisions ----*/

static const enum errcode refusal_codes[] = {
    [GRANT_ALLOWED] = ERRCODE_OK,
    [GRANT_NO_SERVICE] = ERRCODE_INVALID_TOKEN,
    [GRANT_REVOKED] = ERRCODE_INVALID_TOKEN,
    [GRANT_OTHER_SUITE] = ERRCODE_INVALID_CORPID,
    [GRANT_NO_TENANT] = ERRCODE_NOT_AUTHORIZED,
    [GRANT_INACTIVE] = ERRCODE_NOT_AUTHORIZED,
    [GRANT_CORP] = ERRCODE_NOT_AUTHORIZED,
    [GRANT_TENANT_LACKS] = ERRCODE_API_FORBIDDEN,
    [GRANT_SERVICE_LACKS] = ERRCODE_API_FORBIDDEN,
    [GRANT_BOTH_LACK] = ERRCODE_API_FORBIDDEN,
};

_Static_assert(nitems(refusal_codes) == GRANT_BOTH_LACK + 1,
               "one errcode per refusal");

/* An unknown refusal is answered as a refusal, never as success. */
enum errcode
grant_errcode(enum grant_refusal why)
{
    if ((unsigned)why >= nitems(refusal_codes))
        return ERRCODE_API_FORBIDDEN;
    return refusal_codes[why];
}

static void
verdict(struct grant_verdict *out, enum grant_refusal why)
{
    out->why = why;
    out->code = grant_errcode(why);
}

void
grant_decide(const struct grant_ask *a, struct grant_verdict *out)
{
    const struct record_service *s = a->svc;
    const struct record_tenant *t = a->ten;
    int tn, sv;

    scope_grant_clear(&out->effective);
    if (s == NULL || (a->token_gen >= 0 && s->gen != a->token_gen)) {
        verdict(out, GRANT_NO_SERVICE);
        return;
    }
    if (s->revoked) {
        verdict(out, GRANT_REVOKED);
        return;
    }
    if (a->suite == NULL && t == NULL) {
        verdict(out, GRANT_ALLOWED);
        return;
    }
    if (s->suite[0] != '\0' &&
        (a->suite == NULL || strcmp(s->suite, a->suite) != 0)) {
        verdict(out, GRANT_OTHER_SUITE);
        return;
    }
    if (t == NULL) {
        verdict(out, GRANT_NO_TENANT);
        return;
    }
    if (!t->active) {
        verdict(out, GRANT_INACTIVE);
        return;
    }
    if (a->corp == NULL || !record_service_allows_corp(s, a->corp)) {
        verdict(out, GRANT_CORP);
        return;
    }
    scope_grant_intersect(&out->effective, &t->grant, &s->grant);
    tn = scope_grant_has(&t->grant, a->need);
    sv = scope_grant_has(&s->grant, a->need);
    if (!tn && !sv)
        verdict(out, GRANT_BOTH_LACK);
    else if (!tn)
        verdict(out, GRANT_TENANT_LACKS);
    else if (!sv)
        verdict(out, GRANT_SERVICE_LACKS);
    else
        verdict(out, GRANT_ALLOWED);
}

enum grant_field
grant_field(const struct scope_grant *tenant, const struct scope_grant *service,
            int perm)
{
    int tn, sv;

    if (perm == SCOPE_PERM_ALWAYS)
        return GRANT_FIELD_ALWAYS;
    tn = scope_grant_has(tenant, perm);
    sv = scope_grant_has(service, perm);
    if (perm == SCOPE_PERM_NEVER || perm < 0 || perm >= SCOPE_PERM_MAX)
        return GRANT_FIELD_NEVER;
    if (tn && sv)
        return GRANT_FIELD_KEPT;
    if (!tn && !sv)
        return GRANT_FIELD_BOTH_LACK;
    return tn ? GRANT_FIELD_SERVICE_LACKS : GRANT_FIELD_TENANT_LACKS;
}

int
grant_field_kept(enum grant_field f)
{
    return f == GRANT_FIELD_ALWAYS || f == GRANT_FIELD_KEPT;
}
