/*
 * The Redis key schema, in one place. Every key starts with key_prefix and
 * carries a hash tag: {suite_id} for a suite's own keys, {corpid} for a
 * tenant's, so a future Cluster deployment shards by tenant.
 */
#ifndef KEYS_H
#define KEYS_H

#include <stddef.h>

#include "broker.h"

#define KEYS_MAX 512

/* <prefix>{<suite>}:dk — the suite's wrapped data key */
enum brk_err keys_suite_dk(char *out, size_t len, const char *prefix,
                           const char *suite) BRK_WUR;
/* <prefix>{<suite>}:ticket — hash ts, ticket (sealed), at */
enum brk_err keys_suite_ticket(char *out, size_t len, const char *prefix,
                               const char *suite) BRK_WUR;
/* <prefix>{<suite>}:events — stream of callbacks as WeCom sent them */
enum brk_err keys_suite_events(char *out, size_t len, const char *prefix,
                               const char *suite) BRK_WUR;
/* <prefix>{<suite>}:seen:<hmac> — dedupe mark of one decrypted event */
enum brk_err keys_suite_seen(char *out, size_t len, const char *prefix,
                             const char *suite, const char *hmac) BRK_WUR;
/* <prefix>{<corpid>}:<suite>:tenant — the tenant record (hash) */
enum brk_err keys_tenant(char *out, size_t len, const char *prefix,
                         const char *corpid, const char *suite) BRK_WUR;
/* The tenant record's generation field: a decimal counter raised by every
 * write of the tenant's status, grant, privilege or directory (scripts.c,
 * LUA_TENANT_GEN_BUMP), so that a reader can tell that nothing changed
 * from this one field. */
#define KEYS_TENANT_GEN "gen"

/* <prefix>{<suite>}:<what> — any other key of a suite (token, lost,
 * dead, attempts, authx:<hmac>, lock:<name>) */
enum brk_err keys_suite(char *out, size_t len, const char *prefix,
                        const char *suite, const char *what) BRK_WUR;
/* <prefix>{<corpid>}:<suite>:<what> — any other key of a tenant (dk,
 * token, dir:parents, dir:users, dir:tags, dir:dnames, lock:token) */
enum brk_err keys_tenant_sub(char *out, size_t len, const char *prefix,
                             const char *corpid, const char *suite,
                             const char *what) BRK_WUR;
/* <prefix>{<corpid>}:<suite>:* — a MATCH pattern for every key of a
 * tenant (corpid and suite must not contain glob characters) */
enum brk_err keys_tenant_pattern(char *out, size_t len, const char *prefix,
                                 const char *corpid, const char *suite) BRK_WUR;
/* <prefix>{<slot tag of corpid>}:gone:<hmac> — marker and deletion report
 * of a purged tenant, named by an HMAC of (suite, corpid) so the corpid is
 * not kept, in the corp's Cluster slot so that the scripts reading it with
 * the tenant touch one slot */
enum brk_err keys_gone(char *out, size_t len, const char *prefix,
                       const char *corpid, const char *hmac) BRK_WUR;
/* A hash tag ("s<hex>", at most 6 characters) in the same Cluster slot as
 * id, which it does not name: it tells only id's slot (14 bits of a CRC). */
enum brk_err keys_slot_tag(char *out, size_t len, const char *id) BRK_WUR;
/* <prefix>tenants — set of "<suite> <corpid>" members, the tenant index */
enum brk_err keys_tenants(char *out, size_t len, const char *prefix) BRK_WUR;

/* <prefix>svc:{<id>} (what NULL) or <prefix>svc:{<id>}:<what> — a service
 * record and its keys (dk, toks, cur:<corpid>) */
enum brk_err keys_service(char *out, size_t len, const char *prefix,
                          const char *id, const char *what) BRK_WUR;
/* <prefix>svcname:<name> — the id of a service by name */
enum brk_err keys_service_name(char *out, size_t len, const char *prefix,
                               const char *name) BRK_WUR;
/* <prefix>services — set of service ids */
enum brk_err keys_services(char *out, size_t len, const char *prefix) BRK_WUR;
/* <prefix>btok:{<hash>} — a broker token, named by its SHA-256 */
enum brk_err keys_btoken(char *out, size_t len, const char *prefix,
                         const char *hash) BRK_WUR;

/* <prefix>{<corpid>}:budget:<api>:<what> — the upstream budget of one
 * (corpid, API): m<N> and h<N> (calls in minute and hour window N, a hash
 * of all and bg), pause (WeCom answered 45009) */
enum brk_err keys_budget_corp(char *out, size_t len, const char *prefix,
                              const char *corpid, const char *api,
                              const char *what) BRK_WUR;
/* <prefix>{<corpid>}:budget:* — a MATCH pattern for the corp's budget
 * counters (purged with a tenant of the corp: counts only) */
enum brk_err keys_budget_pattern(char *out, size_t len, const char *prefix,
                                 const char *corpid) BRK_WUR;
/* <prefix>{api:<api>}:budget:<what> — the budget of one API over every
 * tenant: m<N>, h<N> as above */
enum brk_err keys_budget_api(char *out, size_t len, const char *prefix,
                             const char *api, const char *what) BRK_WUR;

/* "<key>#<field>": the sealing context of a field stored in a hash, so a
 * sealed value opens only where it was written */
enum brk_err keys_seal_ctx(char *out, size_t len, const char *key,
                           const char *field) BRK_WUR;
/* Nonzero if s is a usable id in key names: 1..64 of [A-Za-z0-9_-]. */
int keys_id_ok(const char *s);

#endif /* KEYS_H */
