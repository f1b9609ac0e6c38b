/*
 * The delivery engine's tenants (SPEC §5, §6b): each tenant a send needs,
 * read through tenant_load.h and decoded once, then kept with the
 * ranges narrowed for the services it was sent to, so a send does not
 * read and decode a whole directory again.
 *
 * Rules (the service API's, SPEC §5):
 *  - bounded: at most max_entries tenants and about max_bytes (the size of
 *    the Redis reply plus the narrowed ranges); the least recently used
 *    goes first, and a tenant alone larger than max_bytes is not kept;
 *  - a copy is never used once older than max_age_ms (counted from when
 *    its read started);
 *  - after a change notice of the tenant the next send starts a new read
 *    (at most one per DELIVERY_TENANT_REFRESH_MS) and the copy read before
 *    the notice serves sends for at most DELIVERY_TENANT_STALE_MS more;
 *    later sends wait for a read that started after the notice. So a change
 * stored is applied to every send from DELIVERY_TENANT_STALE_MS after its
 * notice on, and a burst of changes (one notice per directory event) costs one
 * read per refresh period rather than one per send;
 *  - delivery_tenant_clear (every Redis reconnect: notices sent meanwhile
 *    are lost) forgets every copy, and reads in flight are not kept;
 *  - single flight: one read per tenant at a time; every send waiting for
 *    the tenant is served from it.
 *
 * Runs on one event loop; not thread-safe.
 */
#ifndef DELIVERY_TENANT_H
#define DELIVERY_TENANT_H

#include <stddef.h>

#include "broker.h"

struct record_service;
struct record_tenant;
struct store;
struct vrange;
struct delivery_tenants;

/* A copy read before a change notice serves sends this long after it. */
#define DELIVERY_TENANT_STALE_MS 600
/* A tenant is read again after a notice at most this often. */
#define DELIVERY_TENANT_REFRESH_MS 200

/*
 * Called exactly once per delivery_tenant_get that returned BRK_OK: err
 * BRK_OK with t (active or not) and, for an active t, the range the
 * service sees (both borrowed for the call); BRK_ERR_NOTFOUND when the
 * tenant is not stored; a store or decode error; BRK_ERR_SHUTDOWN when the
 * set is freed first.
 */
typedef void delivery_tenant_cb(enum brk_err err, const struct record_tenant *t,
                                const struct vrange *range, int own_range,
                                void *arg);

/* st and key_prefix borrowed, outliving the set. max_entries > 0,
 * max_bytes > 0, max_age_ms >= 0 (0: no copy is kept). */
enum brk_err delivery_tenant_new(struct store *st, const char *key_prefix,
                                 size_t max_entries, size_t max_bytes,
                                 long long max_age_ms,
                                 struct delivery_tenants **out) BRK_WUR;
/* Waiting sends get BRK_ERR_SHUTDOWN; reads in flight end on their own.
 * NULL is a no-op. */
void delivery_tenant_free(struct delivery_tenants *c);

/*
 * The tenant (suite, corp) for a send to service svc (borrowed; a
 * reference is kept while waiting) whose record generation is svc_gen (a
 * narrowed range is kept per service and generation). cb may run before
 * this returns. BRK_OK (cb runs once) or an error (cb never runs).
 */
enum brk_err delivery_tenant_get(struct delivery_tenants *c, const char *suite,
                                 const char *corp, struct record_service *svc,
                                 unsigned long svc_gen, delivery_tenant_cb *cb,
                                 void *arg) BRK_WUR;

/* A change notice "<suite> <corp>" was received; now_ms its time. */
void delivery_tenant_changed(struct delivery_tenants *c, const char *suite,
                             const char *corp, long long now_ms);
/* Forget every copy (a reconnect); reads in flight are not kept. */
void delivery_tenant_clear(struct delivery_tenants *c);

/* For tests and metrics. */
size_t delivery_tenant_count(const struct delivery_tenants *c);
size_t delivery_tenant_bytes(const struct delivery_tenants *c);
/* Reads started since the set was made. */
unsigned long delivery_tenant_reads(const struct delivery_tenants *c);

#endif /* DELIVERY_TENANT_H */
