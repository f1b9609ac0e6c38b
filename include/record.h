/*
 * The records the broker reads back from Redis to decide what a caller may
 * see: services, broker tokens, tenants (status, grant, privilege and
 * directory), and the browser flows' states and OAuth codes. Each is
 * decoded here and nowhere else, strictly: a record that is missing is
 * BRK_ERR_NOTFOUND; one that does not parse, has the wrong shape, or
 * cannot be read for lack of memory is BRK_ERR_INVAL or BRK_ERR_NOMEM, and
 * the caller refuses the request. A record never decodes to a wider
 * default (SPEC §10). Pure: no I/O; replies are hiredis replies as the
 * store hands them over.
 *
 * Services and tenants are shared by the in-process caches and the
 * requests in flight: counted references, taken with *_ref (which returns
 * its argument) and dropped with *_unref (the last one frees).
 */
#ifndef RECORD_H
#define RECORD_H

#include <stddef.h>

#include <jansson.h>

#include "broker.h"
#include "delivery_def.h"
#include "oauth.h"
#include "scope_map.h"
#include "service.h"

struct redisReply;
struct vrange;
struct vrange_view;

/* Longest corpid or suite id a record may name (keys_id_ok: 64). */
#define RECORD_ID_MAX 64
/* Longest userid or openid in an OAuth code record. */
#define RECORD_USER_MAX 127

/*---- Services ----*/

/* A service's own departments in one corp (its --parties there). */
struct record_parties {
    char corp[RECORD_ID_MAX + 1];
    long *ids; /* 0..4294967295 */
    size_t n;
};

struct record_service {
    int refs;
    char id[SERVICE_ID_LEN + 1];
    char name[SERVICE_NAME_MAX + 1];
    char salt[SERVICE_SALT_LEN + 1];
    char hash[SERVICE_HASH_LEN + 1];
    long gen;
    int revoked;
    struct scope_grant grant;      /* what ops allowed it */
    unsigned caps;                 /* enum capability bits ops granted */
    long write_rate;               /* writes a minute; 0: no limit of its own */
    char suite[RECORD_ID_MAX + 1]; /* "" for any suite */
    int any_corp;                  /* no --corps */
    char (*corps)[RECORD_ID_MAX + 1];
    size_t ncorps;
    struct record_parties *parties;
    size_t nparties;
};

/*
 * Decode the HGETALL reply r of the service id. Fields: name, salt (32
 * hex), hash (64 hex), scopes (comma-separated known scopes, at least
 * one), gen (a decimal integer >= 0), suite ("" or an id), corps ("" for
 * any corp, else a JSON array of corpids, at least one), parties ("" for
 * none, else a JSON object corpid -> array of department ids), optional
 * revoked_at, created_at, updated_at, capabilities (absent or "" for
 * none, else capability names as capability_parse reads them), write_rate
 * (absent: none; else a decimal integer 1..1000000, writes a minute). Returns
 * BRK_OK with *out (one reference: record_service_unref), BRK_ERR_NOTFOUND for
 * an empty reply, BRK_ERR_INVAL for anything else that is not exactly that
 * shape, BRK_ERR_NOMEM.
 */
enum brk_err record_service_decode(const char *id, const struct redisReply *r,
                                   struct record_service **out) BRK_WUR;
/* One more reference to s (not NULL); returns s. Cannot fail. */
struct record_service *record_service_ref(struct record_service *s);
/* Drop a reference; the last frees. NULL is a no-op. */
void record_service_unref(struct record_service *s);
/* Nonzero when the service may serve corp (its --corps, or any). */
int record_service_allows_corp(const struct record_service *s,
                               const char *corp);
/*
 * The service's own departments in corp into *out (borrowed from s; NULL
 * when it has none there: the tenant's range is not narrowed). Returns
 * BRK_OK, or BRK_ERR_INVAL when they name corp in other letter cases only
 * (an entry that was meant to narrow it: refuse).
 */
enum brk_err record_service_parties(const struct record_service *s,
                                    const char *corp,
                                    const struct record_parties **out) BRK_WUR;

/*
 * The stored forms of corps and parties, as record_service_decode reads
 * them back: corps a JSON array of n corpids; parties a JSON object from
 * each p[i].corp to its ids. Owned strings (brk_free). BRK_ERR_INVAL for
 * an id keys_id_ok refuses or a department outside 0..4294967295 (n == 0
 * too), BRK_ERR_NOMEM.
 */
enum brk_err record_corps_encode(const char *const *corps, size_t n,
                                 char **out) BRK_WUR;
enum brk_err record_parties_encode(const struct record_parties *p, size_t n,
                                   char **out) BRK_WUR;

/*---- A service's event delivery (SPEC §6b) ----*/

/* Longest sealed token or key (keyring_seal of at most 64 bytes). */
#define RECORD_SEALED_MAX 256

struct record_delivery {
    char url[DELIVERY_URL_MAX + 1];
    char events[DELIVERY_EVENTS_MAX]; /* "" for every event */
    char suite[RECORD_ID_MAX + 1];    /* "" for every suite of the service */
    int on;
    long long since_ms; /* events acknowledged from then on are queued */
    long gen;           /* key generation: 1 at the first, +1 per rotation */
    char token[RECORD_SEALED_MAX + 1]; /* sealed under the service's data
                                          key, context "<dlv key>#token" */
    char key[RECORD_SEALED_MAX + 1];   /* the same, "#key" */
};

/*
 * Decode the HGETALL reply of <prefix>svc:{id}:dlv: exactly the fields
 * url (delivery_url_ok), events ("" or delivery_events_check), suite (""
 * or an id), on ("0" or "1"), since_ms, gen (decimal integers), token and
 * key (sealed: "s1." and at most RECORD_SEALED_MAX bytes) and
 * updated_at. BRK_OK with *out, BRK_ERR_NOTFOUND for an empty reply,
 * BRK_ERR_INVAL for anything else: a setting in doubt delivers nothing.
 * Allocates nothing.
 */
enum brk_err record_delivery_decode(const struct redisReply *r,
                                    struct record_delivery *out) BRK_WUR;

/*---- Broker tokens ----*/

struct record_token {
    char svc[SERVICE_ID_LEN + 1];
    long gen;
    char suite[RECORD_ID_MAX + 1];
    char corp[RECORD_ID_MAX + 1];
    long long exp; /* seconds since the epoch */
};

/*
 * Decode a broker token's HGETALL reply: svc (16 lower-case hex), gen,
 * suite, corp, exp (decimal integers >= 0 and ids). BRK_OK with *out,
 * BRK_ERR_NOTFOUND for an empty reply, BRK_ERR_INVAL. Allocates nothing.
 */
enum brk_err record_token_decode(const struct redisReply *r,
                                 struct record_token *out) BRK_WUR;

/*---- Tenants ----*/

struct record_tenant {
    int refs;
    char status[32];
    int active;               /* status "active" */
    struct scope_grant grant; /* unexpired permissions (active only) */
    /* the tenant's visible range (active only), copied and narrowed for a
     * service with departments of its own */
    struct vrange *range;
    /* KEYS_TENANT_GEN as stored (0: the record has none: never current) */
    unsigned long long gen;
    /* the first permission expiry after decoding, in s (0: none): the
     * grant must be decoded again from then on */
    long long grant_until_s;
};

/*
 * Decode the tenant from an array of four HGETALL replies: the tenant hash
 * and its dir:parents, dir:users and dir:tags hashes. now_s decides which
 * permissions have expired. An active tenant needs permissions (a JSON
 * array of {"name": string, "expires_at": integer}; unknown names grant
 * nothing) and privilege (a JSON object), and a directory from which its
 * visible range builds; for any other status only the status is read.
 * The generation (KEYS_TENANT_GEN), when present, is a decimal integer.
 * Returns BRK_OK with *out (one reference: record_tenant_unref),
 * BRK_ERR_NOTFOUND when the tenant hash is empty, BRK_ERR_INVAL,
 * BRK_ERR_TOOBIG (a directory past the resolver's bounds), BRK_ERR_NOMEM.
 */
enum brk_err record_tenant_decode(const struct redisReply *r, long long now_s,
                                  struct record_tenant **out) BRK_WUR;
/*
 * Whether t still holds what the tenant record holds, from the reply to
 * "HMGET <tenant> gen status" (KEYS_TENANT_GEN first): the same non-zero
 * generation and status, and no permission of t expired by now_s. 1 when
 * current, else 0 (a record without a generation never is). Pure.
 */
int record_tenant_current(const struct record_tenant *t,
                          const struct redisReply *r, long long now_s);
/*
 * Apply to t, in place, the change the contact_apply script reports it
 * made (its reply r, scripts.c), so a reader holding the tenant need not
 * read the directory again: t must be held by the caller alone (refs 1),
 * active, at the generation before the change and with no permission
 * expired by now_s, and the change must be of members only. Returns
 * BRK_OK when t is now the tenant at the generation after;
 * BRK_ERR_NOTFOUND when t is not such a copy (nothing changed: read the
 * tenant again); BRK_ERR_INVAL for a reply of another shape or a member
 * the range refuses, BRK_ERR_TOOBIG, BRK_ERR_NOMEM. After an error other
 * than BRK_ERR_NOTFOUND t may be changed in part: drop it.
 */
enum brk_err record_tenant_apply(struct record_tenant *t,
                                 const struct redisReply *r,
                                 long long now_s) BRK_WUR;
/* Bytes t holds (its range, the record), roughly. */
size_t record_tenant_bytes(const struct record_tenant *t);
struct record_tenant *record_tenant_ref(struct record_tenant *t);
void record_tenant_unref(struct record_tenant *t);

/*
 * The range a service sees of an active tenant t in corp: the tenant's
 * range when the service has no departments of its own there (*owned
 * NULL, *range borrowed from t), else the tenant's range narrowed to them
 * (*owned the new range, vrange_free; *range the same). Both written only
 * on success. BRK_ERR_INVAL when t has no range or the service's
 * departments name corp in other letter cases only, else what building the
 * range returned.
 */
enum brk_err record_effective_range(const struct record_service *s,
                                    const struct record_tenant *t,
                                    const char *corp, struct vrange **owned,
                                    const struct vrange **range) BRK_WUR;

/*
 * record_effective_range without a copy: *owned NULL when the service
 * sees the tenant's range (t->range), else a view of it narrowed to the
 * service's departments (vrange_view_free), valid while t is. Written
 * only on success; the errors of record_effective_range.
 */
enum brk_err record_effective_view(const struct record_service *s,
                                   const struct record_tenant *t,
                                   const char *corp,
                                   struct vrange_view **owned) BRK_WUR;

/*---- Browser flows ----*/

/* A browser flow's state, as saved when the flow started. */
struct record_state {
    char flow[16];                           /* "install" or "oauth" */
    char ret[OAUTH_RETURN_MAX + 1];          /* may be "" (install) */
    char cstate[OAUTH_CALLER_STATE_MAX + 1]; /* the caller's (oauth) */
    char scope[24]; /* snsapi_base or snsapi_privateinfo (oauth) */
};

/*
 * Decode a state's HGETALL reply (flow, return, and for oauth cstate and
 * scope; nothing else). The values' own rules (the return URL against the
 * suite's redirect_allow, the caller's state) are the caller's to check
 * again. BRK_OK with *out, BRK_ERR_NOTFOUND for an empty reply (unknown,
 * expired or used), BRK_ERR_INVAL. Allocates nothing.
 */
enum brk_err record_state_decode(const struct redisReply *r,
                                 struct record_state *out) BRK_WUR;

/* What a broker OAuth code stands for (sealed in Redis). */
struct record_oauth_code {
    char userid[RECORD_USER_MAX + 1];
    char openid[RECORD_USER_MAX + 1];
    char user_ticket[SERVICE_TOKEN_LEN + 1]; /* "" when none */
    long long expires_in;                    /* the ticket's, 0 when none */
};

/*
 * The JSON a code is stored as, and back. Encode: owned string
 * (brk_free_secret_str: it holds a ticket), BRK_ERR_INVAL for values out
 * of shape, BRK_ERR_NOMEM. Decode: exactly the keys userid, openid,
 * user_ticket (SERVICE_TOKEN_LEN characters or "") and expires_in (>= 0),
 * a userid or an openid not empty; BRK_OK with *out, BRK_ERR_INVAL,
 * BRK_ERR_NOMEM.
 */
enum brk_err record_oauth_code_encode(const struct record_oauth_code *c,
                                      char **out) BRK_WUR;
enum brk_err record_oauth_code_decode(const char *json, size_t len,
                                      struct record_oauth_code *out) BRK_WUR;

/*---- Shared helpers ----*/

/*
 * Parse s as a decimal integer in 0..max with no sign, space or leading
 * zero ("0" itself allowed). BRK_OK with *out, else BRK_ERR_INVAL.
 */
enum brk_err record_parse_uint(const char *s, long long max,
                               long long *out) BRK_WUR;

#endif /* RECORD_H */
