/*
 * The browser flows on the callback listener: the provider-site install
 * (/install, /install/done) and member OAuth (/oauth/authorize,
 * /oauth/callback). Both use a broker-made state (id + MAC, kept in Redis
 * ten minutes, accepted once, bound to flow and suite), check return URLs
 * against the suite's redirect_allow, and budget each client address: a
 * rate limit and a cap on its live states (shared by every instance
 * through Redis). The client address is the TCP peer, or behind a
 * trusted proxy (trusted_proxies) the address it appended to
 * X-Forwarded-For; IPv6 clients count by /64. Every refusal is a 400 (or
 * 429) page with a one-line reason and changes nothing.
 */
#ifndef BROWSER_H
#define BROWSER_H

#include "broker.h"

struct event_base;
struct config;
struct keyring;
struct store;
struct suites;
struct suite_rt;
struct tokens;
struct wecom_api;
struct httpd_req;
struct browser;

#define BROWSER_STATE_TTL       600 /* seconds a state lives */
#define BROWSER_STATES_PER_ADDR 50  /* live states of one client address */
/* live states per suite: a bound on Redis memory, reached only from
 * thousands of client addresses */
#define BROWSER_STATES_MAX   100000
#define BROWSER_RATE_PER_MIN 60  /* per client address, burst as much */
#define BROWSER_CODE_TTL     300 /* a broker OAuth code lives 5 minutes */
/* provider-site installs one client address may complete (each queues
 * an AuthCode the workers exchange with WeCom) per window */
#define BROWSER_INSTALLS_PER_ADDR 10
#define BROWSER_INSTALLS_WINDOW   3600 /* seconds */

/* Everything borrowed must outlive it. It also hands the configured
 * trusted proxies to the listeners (httpd_set_trusted_proxies) until
 * browser_free. BRK_ERR_CONFIG when trusted_proxies does not parse.
 * Owned: browser_free. */
enum brk_err browser_new(const struct config *cfg, const struct keyring *kr,
                         struct store *st, struct tokens *tok,
                         struct wecom_api *api, struct browser **out) BRK_WUR;
void browser_free(struct browser *b);
void browser_set_keyring(struct browser *b, const struct keyring *kr);

/*
 * Handle rest ("install", "install/done", "oauth/authorize",
 * "oauth/callback") of /wecom/suite/{id}/ for su. Returns 0 when the
 * request was taken (it will be answered), -1 when rest is no browser
 * route (nothing was sent).
 */
int browser_handle(struct browser *b, struct httpd_req *r, struct suite_rt *su,
                   const char *rest);

#endif /* BROWSER_H */
