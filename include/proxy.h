/*
 * The service API: WeCom-compatible gettoken for internal services, and
 * every read path declared in scopes/ proxied to WeCom with the tenant's
 * corp token through the streaming filter. Effective grant = the tenant's
 * permissions ∩ the service's scopes ∩ unexpired; visible range = the
 * tenant's, narrowed by the service's own. Fail closed: any doubt is an
 * error reply, never unfiltered bytes.
 */
#ifndef PROXY_H
#define PROXY_H

#include <stddef.h>

#include "broker.h"

struct event_base;
struct budget;
struct config;
struct keyring;
struct store;
struct suites;
struct tokens;
struct wecom_api;
struct scope_map;
struct httpd_req;
struct proxy;

/* Lifetime of a broker token, as WeCom's (seconds). */
#define PROXY_TOKEN_TTL 7200
/* gettoken hands out the current token while more than this remains. */
#define PROXY_TOKEN_REUSE_S 300
/* Largest JSON body of a request; media/upload's multipart body has its
 * own limit (MULTIPART_BODY_MAX), which the listener is sized for. */
#define PROXY_JSON_BODY_MAX (1024 * 1024)

/* Everything borrowed must outlive the proxy. Owned: proxy_free. */
enum brk_err proxy_new(struct event_base *base, const struct config *cfg,
                       const struct keyring *kr, struct store *st,
                       struct suites *suites, struct tokens *tok,
                       struct wecom_api *api, struct proxy **out) BRK_WUR;
void proxy_free(struct proxy *p);
/* Use kr (borrowed) from now on; see proxy.c. */
void proxy_set_keyring(struct proxy *p, const struct keyring *kr);

/* Use this budget (borrowed) for every WeCom call; unset, calls are
 * refused with -1/503. */
void proxy_set_budget(struct proxy *p, struct budget *b);
/* Count the in-process caches against b (borrowed, shared by every
 * proxy of the process: cache_max_bytes) and drop expired entries once a
 * second. Before the first request. */
struct cache_budget;
void proxy_set_cache_budget(struct proxy *p, struct cache_budget *b);
/* Write the audit trail through a (borrowed; NULL: none). */
struct audit;
void proxy_set_audit(struct proxy *p, struct audit *a);

/* Use this scope map from now on (borrowed; requests in flight keep the
 * one they started with until they finish, so swap only at idle or keep
 * the old map alive until proxy_inflight() is 0). */
void proxy_set_scopes(struct proxy *p, const struct scope_map *m);
unsigned proxy_inflight(const struct proxy *p);

/* httpd handler for the service API paths (/cgi-bin/...). */
void proxy_handle(struct httpd_req *r, void *arg);

/* A change notice: "svc <id>" (a service changed) or "<suite> <corpid>"
 * (a tenant changed). */
void proxy_notice(struct proxy *p, const char *msg, size_t len);
/* Forget every cached grant, service and token (Redis reconnected). */
void proxy_drop_caches(struct proxy *p);

#endif /* PROXY_H */
