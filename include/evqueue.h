/*
 * The event queues of a suite, in Redis: where callbacks wait for the
 * workers. Events that name a corp go to that tenant's own queue, worked
 * on by one instance at a time under a lease, so a tenant's events apply
 * in order while a failing or slow tenant delays only itself. Events that
 * name no corp yet (an AuthCode) go to the suite stream, consumed through
 * a consumer group and worked on concurrently; once the exchange names
 * the corp, the work moves to that tenant's queue (evq_handover).
 *
 * Every key lives under the suite's hash tag, so each script touches one
 * slot. This module owns the key names and the scripts; it sends them
 * through store.h and leaves the replies to the caller.
 *
 *   <prefix>{<suite>}:events      stream, the suite stream (group "workers")
 *   <prefix>{<suite>}:attempts    hash entry id -> failed attempts
 *   <prefix>{<suite>}:q:<corp>    stream, the tenant's queue (no group)
 *   <prefix>{<suite>}:qa:<corp>   hash entry id -> failed attempts
 *   <prefix>{<suite>}:ready       zset corp -> ms after which it may be taken
 *                                 (while leased: when the lease runs out)
 *   <prefix>{<suite>}:lease       hash corp -> the instance holding it
 *   <prefix>{<suite>}:qseq        hash corp -> events queued so far
 *   <prefix>{<suite>}:dead        stream of dead letters (field corp set
 *                                 for entries of a tenant's queue)
 */
#ifndef EVQUEUE_H
#define EVQUEUE_H

#include <stddef.h>

#include "broker.h"
#include "keys.h"
#include "store.h"

/* The consumer group of the suite stream, shared by every instance. */
#define EVQ_GROUP "workers"

/* The names of one suite's queue keys; tenant ones only with a corp. */
struct evq_keys {
    char events[KEYS_MAX];
    char attempts[KEYS_MAX];
    char ready[KEYS_MAX];
    char lease[KEYS_MAX];
    char seq[KEYS_MAX];
    char dead[KEYS_MAX];
    char q[KEYS_MAX];  /* "" without a corp */
    char qa[KEYS_MAX]; /* "" without a corp */
};

/* Fill k for suite and, when corp is not NULL, that tenant's queue.
 * BRK_ERR_TOOBIG when a name does not fit; BRK_ERR_INVAL for a corp that
 * is no usable id. */
enum brk_err evq_keys(struct evq_keys *k, const char *prefix, const char *suite,
                      const char *corp) BRK_WUR;

/*
 * Queue one event: set the dedupe mark seen (for ttl_s seconds) and, if
 * it was not set, append the fields kv[0..nkv) (name, value pairs) to the
 * tenant queue of corp, or to the suite stream when corp is NULL. The
 * reply is the integer 1 (queued) or 0 (a duplicate, nothing written).
 */
enum brk_err evq_push(struct store *st, const struct evq_keys *k,
                      const char *corp, const char *seen, long ttl_s,
                      const char *const *kv, size_t nkv, store_reply_cb *cb,
                      void *arg) BRK_WUR;

/*
 * Move suite-stream entry id to corp's queue as the fields kv (name, value
 * pairs), acknowledging and deleting it in the same step. Reply: 1.
 */
enum brk_err evq_handover(struct store *st, const struct evq_keys *k,
                          const char *corp, const char *id,
                          const char *const *kv, size_t nkv, store_reply_cb *cb,
                          void *arg) BRK_WUR;

/*
 * Lease up to max tenants whose queues may be worked on now, for lease_ms,
 * as consumer me. Reply: a flat array corp, seq, previous holder ("" when
 * none), … — seq is the tenant's enqueue count when it was taken.
 */
enum brk_err evq_claim(struct store *st, const struct evq_keys *k,
                       const char *me, long long lease_ms, unsigned max,
                       store_reply_cb *cb, void *arg) BRK_WUR;

/* Make every lease held by me claimable at once (a restart of me, or a
 * lost connection), except those of the corps keep[0..nkeep) (at most 40)
 * still being worked on. Reply: the number of tenants released. */
enum brk_err evq_reclaim_own(struct store *st, const struct evq_keys *k,
                             const char *me, const char *const *keep,
                             size_t nkeep, store_reply_cb *cb,
                             void *arg) BRK_WUR;

/* Extend my lease on k's tenant; reply 1, or 0 when I lost it. */
enum brk_err evq_refresh(struct store *st, const struct evq_keys *k,
                         const char *corp, const char *me, long long lease_ms,
                         store_reply_cb *cb, void *arg) BRK_WUR;

/*
 * Give the tenant back. When nothing was queued since seq and its queue is
 * empty it leaves the ready set (reply 1), otherwise it is ready again at
 * once (reply 2); 0 when the lease was no longer mine.
 */
enum brk_err evq_release(struct store *st, const struct evq_keys *k,
                         const char *corp, const char *seq, const char *me,
                         store_reply_cb *cb, void *arg) BRK_WUR;

/* Give the tenant back until delay_ms from now (a backoff that holds no
 * slot). Reply 1, or 0 when the lease was no longer mine. */
enum brk_err evq_backoff(struct store *st, const struct evq_keys *k,
                         const char *corp, const char *me, long long delay_ms,
                         store_reply_cb *cb, void *arg) BRK_WUR;

/* The head of the tenant queue: XRANGE q - + COUNT 1. */
enum brk_err evq_head(struct store *st, const struct evq_keys *k,
                      store_reply_cb *cb, void *arg) BRK_WUR;

/* Count a failed attempt of a tenant-queue entry (reply: the count). */
enum brk_err evq_count_attempt(struct store *st, const struct evq_keys *k,
                               const char *id, store_reply_cb *cb,
                               void *arg) BRK_WUR;

/* Done with a tenant-queue entry: delete it and its attempt count. */
enum brk_err evq_ack(struct store *st, const struct evq_keys *k, const char *id,
                     store_reply_cb *cb, void *arg) BRK_WUR;

/* Move a tenant-queue entry to the dead letters, with reason and the
 * number of attempts, and delete it. */
enum brk_err evq_dead(struct store *st, const struct evq_keys *k,
                      const char *corp, const char *id, const char *reason,
                      int attempts, store_reply_cb *cb, void *arg) BRK_WUR;

#endif /* EVQUEUE_H */
