/*
 * Event delivery to services (SPEC §6b): the engine. The workers hand it
 * an event once it has taken effect (delivery_route); it queues one copy
 * per service allowed to get it, in that (service, tenant)'s ordered
 * queue in Redis (delivery_def.h names the keys), and sends the queues to
 * the services' receivers in WeCom's callback format, signed with each
 * service's token and encrypted with its key. One instance sends a given
 * (service, tenant) at a time, under a lease another takes over when it
 * dies; a failing receiver or tenant waits out its backoff holding no
 * slot, so it delays no other.
 *
 * Sending: POST URL?msg_signature&timestamp&nonce, a fresh timestamp,
 * nonce and signature per attempt, header X-Broker-Event-Id stable per
 * event, at most DELIVERY_TIMEOUT_MS, redirects not followed, the reply
 * read up to DELIVERY_MAX_REPLY bytes. A command callback is delivered
 * when the reply is HTTP 200 with the body `success` (surrounding ASCII
 * whitespace ignored: WeCom's rule is the literal string, and a trailing
 * newline many frameworks add changes nothing about what was meant);
 * anything else is retried 1 s, 2 s, 4 s … at most 300 s apart until
 * delivery_max_age after its acknowledgement, then dead-lettered for that
 * service.
 *
 * What is stored: lifecycle notices (create_auth, change_auth,
 * cancel_auth) hold no personal data — suite, corp, InfoType, TimeStamp —
 * and are stored as those fields. Contact, external and data events,
 * once routed, are stored as WeCom's ciphertext as received and each
 * service's filtered copy is made when it is sent.
 */
#ifndef DELIVERY_H
#define DELIVERY_H

#include <stddef.h>

#include "broker.h"
#include "delivery_def.h"

struct audit;
struct config;
struct event_base;
struct keyring;
struct record_delivery;
struct record_service;
struct record_tenant;
struct scope_map;
struct store;
struct suites;
struct delivery;

/* One receiver's reply is awaited this long (connect and total). */
#define DELIVERY_TIMEOUT_MS 5000
/* Bytes of a receiver's reply read; a longer one is a failure. */
#define DELIVERY_MAX_REPLY 4096
/* (service, tenant) queues one instance sends at once. */
#define DELIVERY_SLOTS 64

/* An event to deliver; every pointer is borrowed for the call. */
struct delivery_event {
    const char *suite;
    const char *corp;
    const char *info_type;
    const char *change_type; /* NULL or "" when none */
    const char *timestamp;   /* WeCom's TimeStamp, as sent */
    /* the queue entry the worker took it from: the event id (and so the
     * de-duplication of a retried fan-out) derives from it */
    const char *src_id;
    long long received_ms; /* when it was acknowledged to WeCom */
    /* the names of the fields WeCom sent that are not delivered,
     * comma-separated ("" when none), for the audit trail */
    const char *removed;
    /* Every event but the lifecycle notices (else NULL, 0): */
    const char *encrypt; /* WeCom's Encrypt as received: what is stored */
    const char *plain;   /* its inner XML: decided on, never stored */
    size_t plain_len;
    /* the tenant the range is decided against: for a deletion as it was
     * before, else as it is after the change (borrowed; the fan-out
     * takes a reference of its own) */
    struct record_tenant *tenant;
    int data;               /* a data callback (receiveid the corp) */
    const char *agentid;    /* a data callback's AgentID */
    const char *chat_owner; /* change_external_chat: the owner, from the
                               broker's index (NULL: not known) */
};

/* Per service: nonzero to queue ev for s, whose delivery setting is d. */
typedef int delivery_decide_fn(const struct delivery_event *ev,
                               const struct record_service *s,
                               const struct record_delivery *d, void *arg);

/* Called exactly once. */
typedef void delivery_done_cb(enum brk_err err, void *arg);
typedef void delivery_purged_cb(enum brk_err err, long long removed, void *arg);

/*
 * me names this instance in leases (stable across restarts). Everything
 * borrowed must outlive the engine. Owned: delivery_free.
 */
enum brk_err delivery_new(struct event_base *base, const struct config *cfg,
                          const struct keyring *kr, struct store *st,
                          const char *me, struct delivery **out) BRK_WUR;
/* Write type=delivery audit entries through a (borrowed; NULL: none). */
void delivery_set_audit(struct delivery *d, struct audit *a);
/* Use kr (borrowed) from now on. */
void delivery_set_keyring(struct delivery *d, const struct keyring *kr);
/* Decide and filter routed events against m (borrowed; the latest set is
 * used for each decision, so a reload may free the one before once it is
 * replaced). NULL: routed events go to no one. */
void delivery_set_scopes(struct delivery *d, const struct scope_map *m);
/* The suites whose crypto opens the stored events (borrowed). */
void delivery_set_suites(struct delivery *d, struct suites *s);
/* A change notice as published on the change channel: "<suite> <corp>"
 * (the tenant's copy is read again before it is used for long, see
 * delivery_tenant.h) or "svc <id>" (the service is read again now). */
void delivery_notice(struct delivery *d, const char *msg, size_t len);
/* Forget every tenant kept (the Redis connection or the subscription was
 * re-established: notices may have been lost). */
void delivery_drop_caches(struct delivery *d);
/* Start (or resume after a Redis reconnect) sending. */
void delivery_start(struct delivery *d);
/* Stop taking queues; sends in flight end with the client (delivery_free
 * or the store's shutdown). */
void delivery_stop(struct delivery *d);
/* Abort every send and free; NULL is a no-op. Call after delivery_stop,
 * before the store is freed. */
void delivery_free(struct delivery *d);

/*
 * The one place where the workers hand over an event that has taken
 * effect. Routes it by InfoType: the lifecycle notices go to every service
 * allowed the tenant (its suite, its --corps, not revoked, delivery on,
 * its --events); every other event, given with its ciphertext, inner XML
 * and tenant, goes to the services evfilter_apply delivers it to (the
 * effective grant, capabilities, the range of ev->tenant), each queue
 * entry holding WeCom's ciphertext and the subjects found in range, never
 * the plaintext. At send time the entry is decrypted and filtered again
 * with the service's and the tenant's current grant (range decided by the
 * stored subjects; list items by the current range) and dropped when the
 * service may no longer have it. A routed event without ciphertext, inner
 * XML or tenant goes to no one. Returns BRK_OK (cb runs once, later) or an
 * error (cb never runs).
 */
enum brk_err delivery_route(struct delivery *d, const struct delivery_event *ev,
                            delivery_done_cb *cb, void *arg) BRK_WUR;

/*
 * Queue ev for every service decide accepts, once per service however
 * often it is called for the same event, and only for services whose
 * delivery was stored before ev->received_ms. A service whose record does
 * not decode gets nothing. cb gets the first Redis error, or BRK_OK.
 */
enum brk_err delivery_fanout(struct delivery *d,
                             const struct delivery_event *ev,
                             delivery_decide_fn *decide, void *decide_arg,
                             delivery_done_cb *cb, void *arg) BRK_WUR;

/* The lifecycle decision: the service may serve the tenant and takes the
 * event (see delivery_route). */
int delivery_decide_lifecycle(const struct delivery_event *ev,
                              const struct record_service *s,
                              const struct record_delivery *d, void *arg);

/* Remove the tenant's pending deliveries and dead letters for every
 * service (a purge); cb gets the number of entries removed. */
enum brk_err delivery_purge_tenant(struct delivery *d, const char *suite,
                                   const char *corp, delivery_purged_cb *cb,
                                   void *arg) BRK_WUR;

#endif /* DELIVERY_H */
