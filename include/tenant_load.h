/*
 * Reading a tenant for the in-process caches (the service API's and the
 * delivery engine's) without holding Redis for the whole directory.
 *
 * A copy in hand is revalidated with one small read (HMGET of the
 * tenant's generation and status, record_tenant_current): unchanged, the
 * copy is kept with its decoded directory and range. Otherwise the record
 * and its three directory hashes are read as four pipelined HGETALLs
 * (each atomic on its own, none blocking Redis for the others) and the
 * generation once more after them; a generation that moved in between
 * means a change was read half, and the read starts over, at most
 * TENANT_LOAD_TRIES times in all.
 */
#ifndef TENANT_LOAD_H
#define TENANT_LOAD_H

#include "broker.h"

struct record_tenant;
struct store;

/* The deadline of each command of a full read: a 100,000-member
 * directory is megabytes of reply, which the connection's deadline (kept
 * short for WeCom's acknowledgements) would cut off. */
#define TENANT_LOAD_TIMEOUT_MS 5000
/* Full reads of one load before it gives up on a tenant changing under
 * it. */
#define TENANT_LOAD_TRIES 3

/*
 * Called once per load started. err BRK_OK: t is the tenant (one
 * reference for the callee; NULL: there is none), renewed 1 when t is
 * the copy passed in, found current. Else t is NULL and err says why:
 * BRK_ERR_STORE (not answered, or changing on every try),
 * BRK_ERR_TIMEOUT, BRK_ERR_SHUTDOWN, or what record_tenant_decode
 * returned (BRK_ERR_INVAL, BRK_ERR_TOOBIG, BRK_ERR_NOMEM).
 */
typedef void tenant_load_cb(enum brk_err err, struct record_tenant *t,
                            int renewed, void *arg);

/*
 * Read tenant (suite, corp) under key prefix from st; copy (borrowed,
 * may be NULL) is revalidated first. On BRK_OK cb is called exactly once,
 * never before this returns; otherwise (BRK_ERR_STORE, BRK_ERR_NOMEM,
 * BRK_ERR_TOOBIG for key names too long) never.
 */
enum brk_err tenant_load_start(struct store *st, const char *prefix,
                               const char *suite, const char *corp,
                               struct record_tenant *copy, tenant_load_cb *cb,
                               void *arg) BRK_WUR;

#endif /* TENANT_LOAD_H */
