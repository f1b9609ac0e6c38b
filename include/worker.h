/*
 * Event workers: consume each suite's callback stream through a consumer
 * group, decrypt each event only now, and apply it — install a tenant,
 * re-read its grant, purge it, keep its directory current. An entry is
 * acknowledged (and deleted) only after its work is stored; a failing one
 * is retried with backoff and dead-lettered after event_max_attempts.
 */
#ifndef WORKER_H
#define WORKER_H

#include "broker.h"

struct event_base;
struct config;
struct keyring;
struct store;
struct suites;
struct tokens;
struct wecom_api;
struct worker;
struct budget;

/* Stream consumer group shared by every instance. */
#define WORKER_GROUP "workers"
/* Redis channel of tenant-change notices ("<suite> <corpid>"). */
#define WORKER_INVAL_CHANNEL "inval"

/*
 * consumer names this instance in the group (stable across restarts, so
 * a restarted instance resumes its own unfinished entries at once).
 * Everything borrowed must outlive the worker. Owned: worker_free.
 */
enum brk_err worker_new(struct event_base *base, const struct config *cfg,
                        const struct keyring *kr, struct store *st,
                        struct suites *suites, struct tokens *tok,
                        struct wecom_api *api, const char *consumer,
                        struct worker **out) BRK_WUR;
/* Start (or resume after a Redis reconnect) polling the streams. */
void worker_start(struct worker *w);
/* Stop taking new entries; work in flight is abandoned at exit and
 * resumed later from the pending list. */
void worker_stop(struct worker *w);
void worker_free(struct worker *w);
/* Count the tenants the workers keep decoded against b (borrowed,
 * outliving w: cache_max_bytes); before worker_start. */
struct cache_budget;
void worker_set_cache_budget(struct worker *w, struct cache_budget *b);
/* Forget the tenants kept decoded (every Redis reconnect). NULL ok. */
void worker_drop_caches(struct worker *w);
/* Draw every corp-token call on b (borrowed; NULL: none), as background
 * work: at most half of a tenant's budget. */
void worker_set_budget(struct worker *w, struct budget *b);
/* Write lifecycle audit entries through a (borrowed; NULL: none). */
struct audit;
void worker_set_audit(struct worker *w, struct audit *a);
/* Hand the events that took effect to d (borrowed; NULL: none), the
 * event delivery to services. */
struct delivery;
void worker_set_delivery(struct worker *w, struct delivery *d);
/* Use kr (borrowed) from now on; see worker.c. */
void worker_set_keyring(struct worker *w, const struct keyring *kr);

#endif /* WORKER_H */
