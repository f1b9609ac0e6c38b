/*
 * The callback listener: WeCom's URL verification (GET) and encrypted
 * callbacks (POST) for each configured suite. A POST is verified,
 * decrypted, checked, and made durable in Redis — still encrypted — before
 * `success` is sent; workers decrypt it again when they process it.
 */
#ifndef CALLBACK_H
#define CALLBACK_H

#include "broker.h"

struct config;
struct keyring;
struct store;
struct suites;
struct httpd_req;
struct callback;

/* Hard bound on a callback body (SPEC: 413 above 64 KiB). */
#define CALLBACK_MAX_BODY (64 * 1024)
/* How long a dedupe mark of a processed event lives. */
#define CALLBACK_SEEN_TTL 86400
/* A suite_ticket lives 30 minutes. */
#define CALLBACK_TICKET_TTL 1800

/*
 * Build the handler. cfg, kr, st and suites are borrowed and must outlive
 * it. Owned: callback_free.
 */
enum brk_err callback_new(const struct config *cfg, const struct keyring *kr,
                          struct store *st, struct suites *suites,
                          struct callback **out) BRK_WUR;
void callback_free(struct callback *cb);
/* Use kr (borrowed) from now on; see callback.c. */
void callback_set_keyring(struct callback *cb, const struct keyring *kr);

/* httpd_handler for the callback listener; arg is the struct callback. */
void callback_handle(struct httpd_req *r, void *arg);


struct browser;
/* Serve the browser flows (browser.h) on this listener too. */
void callback_set_browser(struct callback *cb, struct browser *b);

#endif /* CALLBACK_H */
