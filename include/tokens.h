/*
 * Upstream tokens: each suite's suite_access_token (from its newest
 * suite_ticket) and each tenant's corp access_token (from its permanent
 * code). Cached in process and in Redis (sealed), refreshed ahead of expiry,
 * single-flight within a process (waiters queue) and across instances (a
 * Redis lock whose fencing value guards the write).
 */
#ifndef TOKENS_H
#define TOKENS_H

#include "broker.h"

struct event_base;
struct config;
struct keyring;
struct store;
struct suites;
struct wecom_api;
struct tokens;

/* A token is not handed out once less than this remains (or less than
 * an eighth of its life, when that is shorter); a quarter of its life
 * before its end, the next request renews it in the background. */
#define TOKENS_REFRESH_MARGIN_S 300
/* How long a refresher may hold the cross-instance lock. */
#define TOKENS_LOCK_MS 15000

/*
 * Called exactly once, never before the request returns. On BRK_OK token
 * is borrowed for the call. On BRK_ERR_WECOM errcode is WeCom's.
 */
typedef void tokens_cb(enum brk_err err, const char *token, long errcode,
                       void *arg);

/* Everything borrowed must outlive the manager. Owned: tokens_free. */
enum brk_err tokens_new(struct event_base *base, const struct config *cfg,
                        const struct keyring *kr, struct store *st,
                        struct suites *suites, struct wecom_api *api,
                        struct tokens **out) BRK_WUR;
/* Waiters still queued get BRK_ERR_SHUTDOWN. */
void tokens_free(struct tokens *t);
/* Use kr (borrowed) from now on; see tokens.c. */
void tokens_set_keyring(struct tokens *t, const struct keyring *kr);

/* The suite's suite_access_token. BRK_OK: cb will be called; otherwise
 * (unknown suite, no memory) cb is never called. */
enum brk_err tokens_suite(struct tokens *t, const char *suite_id, tokens_cb *cb,
                          void *arg) BRK_WUR;
/* The tenant's corp access_token. */
enum brk_err tokens_corp(struct tokens *t, const char *suite_id,
                         const char *corpid, tokens_cb *cb, void *arg) BRK_WUR;

/*
 * WeCom refused token (40014, 42001, 40001 for corp tokens; 40082, 42009
 * for suite tokens): forget it here and in Redis, but only if it is still
 * the stored one, so a token another instance just refreshed survives.
 */
void tokens_corp_rejected(struct tokens *t, const char *suite_id,
                          const char *corpid, const char *token);
void tokens_suite_rejected(struct tokens *t, const char *suite_id,
                           const char *token);
/* Nonzero if errcode means "this corp token is no good". */
int tokens_is_corp_token_error(long errcode);

/* Drop every in-process cache entry (Redis reconnected). */
void tokens_drop_cache(struct tokens *t);
/* Drop one tenant's in-process entry (purged). */
void tokens_forget_tenant(struct tokens *t, const char *suite_id,
                          const char *corpid);

#endif /* TOKENS_H */
