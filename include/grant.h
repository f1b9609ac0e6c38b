/*
 * The grant: which permission names and coarse aliases exist and what
 * each opens, and the one decision of whether a service may call an
 * endpoint for a tenant (SPEC §5: effective grant = the tenant's unexpired
 * permissions ∩ the service's scopes) and whether a response field reaches
 * it. The service API (proxy.c) and brokerctl explain both ask here. Pure:
 * no I/O, no allocation.
 *
 * The permission vocabulary keeps its scope_ names: the scope loader, the
 * filter and the stored records speak it.
 */
#ifndef GRANT_H
#define GRANT_H

#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "errcodes.h"

struct record_service;
struct record_tenant;

/*---- Permissions ----*/

/*
 * Permission ids are small integers indexing the table of known
 * permission names (scope_perm_name). Two pseudo-permissions:
 * ALWAYS (structural fields: errcode, errmsg, cursors) and NEVER (fields
 * WeCom documents but never returns to a third-party app, or that no
 * service may see: removed whatever the grant).
 */
#define SCOPE_PERM_ALWAYS 0
#define SCOPE_PERM_NEVER  1
#define SCOPE_PERM_MAX    128

/* A set of permission ids: the effective grant of one request. */
struct scope_grant {
    uint64_t bits[SCOPE_PERM_MAX / 64];
};

void scope_grant_clear(struct scope_grant *g);
void scope_grant_add(struct scope_grant *g, int perm);
int scope_grant_has(const struct scope_grant *g, int perm);
/* g = a ∩ b */
void scope_grant_intersect(struct scope_grant *g, const struct scope_grant *a,
                           const struct scope_grant *b);

/* Id of a permission name ("contact:base:base"), or -1 if unknown. */
int scope_perm_id(const char *name);
/* Name of a permission id (borrowed, static), or NULL. */
const char *scope_perm_name(int id);
/* Number of known permission ids (including ALWAYS and NEVER). */
int scope_perm_count(void);

/*
 * Add every permission a name stands for: a permission string, or a coarse
 * alias ("contacts.read", "member.sensitive", "external.customers") which
 * expands in one declared place. BRK_ERR_NOTFOUND for an unknown name.
 */
enum brk_err scope_grant_add_name(struct scope_grant *g,
                                  const char *name) BRK_WUR;
/* Nonzero if name is a coarse alias. */
int scope_is_alias(const char *name);

/* Number of coarse aliases, and the name of the i-th (static, or NULL
 * past the end). */
size_t scope_alias_count(void);
const char *scope_alias_name(size_t i);

/*---- Decisions ----*/

/* Why a request is refused, in the order the broker checks. */
enum grant_refusal {
    GRANT_ALLOWED = 0,
    GRANT_NO_SERVICE,    /* no such service, or a token of an older
                            generation (its secret was rotated): 40014 */
    GRANT_REVOKED,       /* 40014 */
    GRANT_OTHER_SUITE,   /* the service is limited to another suite: 40013 */
    GRANT_NO_TENANT,     /* 48004 */
    GRANT_INACTIVE,      /* installing, cancelled, ...: 48004 */
    GRANT_CORP,          /* outside the service's --corps: 48004 */
    GRANT_TENANT_LACKS,  /* the endpoint's scope: 48002 */
    GRANT_SERVICE_LACKS, /* 48002 */
    GRANT_BOTH_LACK,     /* 48002 */
};

/* One request, as the broker knows it once its records are loaded. */
struct grant_ask {
    const struct record_service *svc; /* NULL: none */
    long token_gen;    /* the broker token's generation; -1: no token */
    const char *suite; /* the tenant's suite */
    const char *corp;
    const struct record_tenant *ten; /* NULL: not a tenant of suite;
                                        its grant is read at decode time */
    int need; /* the endpoint's scope; SCOPE_PERM_ALWAYS: none (OAuth) */
};

struct grant_verdict {
    enum grant_refusal why;
    enum errcode code; /* ERRCODE_OK when allowed */
    /* tenant ∩ service when the tenant passed (also when the scope is
     * lacking: explain shows the fields anyway); empty otherwise */
    struct scope_grant effective;
};

/*
 * Decide a request: the first refusal in the order the broker checks
 * (service, suite, tenant, corp, scope), or GRANT_ALLOWED with the
 * effective grant. A service-only ask (ten NULL and suite NULL) stops
 * after the service: what the broker checks before loading the tenant.
 * Cannot fail; *out is always written.
 */
void grant_decide(const struct grant_ask *a, struct grant_verdict *out);

/* Why a response field is kept or removed. */
enum grant_field {
    GRANT_FIELD_ALWAYS,        /* kept: envelope and structure */
    GRANT_FIELD_KEPT,          /* kept: in the effective grant */
    GRANT_FIELD_NEVER,         /* removed whatever the grant */
    GRANT_FIELD_TENANT_LACKS,  /* removed */
    GRANT_FIELD_SERVICE_LACKS, /* removed */
    GRANT_FIELD_BOTH_LACK,     /* removed */
};

/* The fate of a field of permission perm, for the tenant's and the
 * service's grants. Kept exactly when the effective grant has perm. */
enum grant_field grant_field(const struct scope_grant *tenant,
                             const struct scope_grant *service, int perm);
/* Nonzero for the kept ones. */
int grant_field_kept(enum grant_field f);

/* The errcode a refusal is answered with (ERRCODE_OK for none). */
enum errcode grant_errcode(enum grant_refusal why);

#endif /* GRANT_H */
