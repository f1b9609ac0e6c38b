/*
 * What writes keep in Redis (SPEC §5b), all under the tenant's {corpid}
 * hash tag, so a purge removes it with the tenant:
 *
 *   <prefix>{<corp>}:<suite>:wr:cust          hash external_userid ->
 *       the customer's follow users seen, userids joined by spaces
 *   <prefix>{<corp>}:<suite>:wr:owner         hash "tag:<id>" or
 *       "cw:<config_id>" -> the id of the service that created it
 *   <prefix>{<corp>}:<suite>:wr:welcome:<h>   hash svc, at, used: a
 *       WelcomeCode delivered to a service, named by the SHA-256 of the
 *       code (never the code), living 20 s from WeCom's push
 *   <prefix>{<corp>}:<suite>:wr:idem:<h>      hash sha, reply: an
 *       idempotency key (h: SHA-256 of service id and key), 24 h
 *
 * The customer index is fed by the replies of externalcontact/get and
 * batch/get_by_user passing through the service API, and by the event
 * worker through custidx_add / custidx_del. Functions here only send the
 * commands: cb (may be NULL) gets the store's reply, once.
 */
#ifndef WRITE_STORE_H
#define WRITE_STORE_H

#include <stddef.h>

#include "broker.h"
#include "store.h"

/* How long a WelcomeCode can be used after WeCom pushed it (§9.3). */
#define WELCOME_WINDOW_MS 20000
/* How long an idempotency key holds its reply. */
#define IDEM_TTL_S 86400
/* How long it is held while its write is under way: past the longest a
 * write can take, so a broker that died mid-write frees it soon. */
#define IDEM_PENDING_S 120
/* Most (customer, follow user) pairs one call records. */
#define CUSTIDX_MAX_PAIRS 1000

/* The tenant's key <prefix>{corp}:<suite>:wr:<what> into out. */
enum brk_err write_store_key(char *out, size_t len, const char *prefix,
                             const char *suite, const char *corp,
                             const char *what) BRK_WUR;

/* SHA-256 of data in lower-case hex (65 bytes with the NUL). */
enum brk_err write_store_sha256(const void *data, size_t len,
                                char out[65]) BRK_WUR;

/*
 * Record npairs (customer, follow user) pairs: pairs[2i] an
 * external_userid, pairs[2i+1] a userid (borrowed; both non-empty, at
 * most 128 bytes, else the pair is skipped). BRK_ERR_INVAL for npairs 0
 * or over CUSTIDX_MAX_PAIRS, else what the store returned.
 */
enum brk_err custidx_add(struct store *st, const char *prefix,
                         const char *suite, const char *corp,
                         const char *const *pairs, size_t npairs,
                         store_reply_cb *cb, void *arg) BRK_WUR;
/* Forget pairs the same way (a userid "" forgets the customer; a
 * customer whose last follow user goes is forgotten). */
enum brk_err custidx_del(struct store *st, const char *prefix,
                         const char *suite, const char *corp,
                         const char *const *pairs, size_t npairs,
                         store_reply_cb *cb, void *arg) BRK_WUR;

/*
 * Record that the WelcomeCode whose SHA-256 (hex) is code_hash was
 * delivered to service_id, pushed by WeCom at pushed_at_ms (its
 * TimeStamp): only that service can use it, once, until pushed_at_ms +
 * WELCOME_WINDOW_MS. A code recorded again is recorded anew. BRK_OK,
 * BRK_ERR_INVAL for a hash or id out of shape, or the store's error.
 */
enum brk_err welcome_record(struct store *st, const char *prefix,
                            const char *suite, const char *corp,
                            const char *code_hash, const char *service_id,
                            long long pushed_at_ms, store_reply_cb *cb,
                            void *arg) BRK_WUR;

#endif /* WRITE_STORE_H */
