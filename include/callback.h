/*
 * The callback listener: WeCom's URL verification (GET) and encrypted
 * callbacks (POST) for each configured suite. A POST is verified,
 * decrypted, checked, and made durable in Redis — still encrypted — before
 * `success` is sent; workers decrypt it again when they process it.
 */
#ifndef CALLBACK_H
#define CALLBACK_H

#include "broker.h"

#include <stddef.h>

struct config;
struct keyring;
struct store;
struct suites;
struct httpd_req;
struct callback;
struct query;
struct wecom_crypto;
struct wecom_xml;

/* Hard bound on a callback body (SPEC: 413 above 64 KiB). */
#define CALLBACK_MAX_BODY (64 * 1024)
/* How long a dedupe mark of a processed event lives. */
#define CALLBACK_SEEN_TTL 86400
/* A suite_ticket lives 30 minutes. */
#define CALLBACK_TICKET_TTL 1800
/* Longest nonce and SuiteTicket accepted. */
#define CALLBACK_NONCE_MAX  64
#define CALLBACK_TICKET_MAX 512

/*---- The checks before Redis, as pure functions ----*/

/* Why a request was refused: HTTP status, the metric reason (a fixed
 * name) and a one-line detail made by the code, never request bytes. */
struct callback_refusal {
    int status;
    const char *reason;
    char detail[256];
};

/* What an accepted request carries. Owned: callback_msg_clear. */
struct callback_msg {
    const char *encrypt; /* borrowed from env (POST) or the query (GET) */
    char *msg;           /* decrypted; secret */
    size_t msglen;
    char *receiveid;
    size_t which;          /* GET: 0 the suite id, 1 provider_corpid */
    struct wecom_xml *env; /* POST: the envelope */
    struct wecom_xml *ev;  /* POST: the decrypted event */
};

/*
 * The query of a callback (get: the URL check, which carries echostr):
 * msg_signature, timestamp, nonce (and echostr) exactly once, a numeric
 * timestamp within max_skew seconds of now, a nonce of 1..64 bytes.
 * Returns 0, or -1 with *why filled.
 */
int callback_check_query(const struct query *q, int get, long long now,
                         long long max_skew, struct callback_refusal *why);

/*
 * Open a callback whose query passed callback_check_query: POST parses
 * the envelope (body of blen bytes, at most CALLBACK_MAX_BODY); both
 * verify the signature, decrypt, and check the receiveid (GET: the suite
 * id or provider_corpid, which may be NULL; a POST on the callback route:
 * the suite id; the data route: any, the caller checks the corp); POST
 * then parses the decrypted event. Returns BRK_OK with *out (clear it),
 * or an error with *why filled and *out empty.
 */
enum brk_err callback_open(const struct wecom_crypto *c, const struct query *q,
                           int get, int data, const char *suite_id,
                           const char *provider_corpid, const char *body,
                           size_t blen, struct callback_msg *out,
                           struct callback_refusal *why) BRK_WUR;
void callback_msg_clear(struct callback_msg *m);

/*
 * The type of a command event of suite_id: *type is the InfoType when the
 * event is queued or "suite_ticket" (both static strings), NULL when it is
 * acknowledged and not handled. Refused (BRK_ERR_INVAL, *why filled): a
 * SuiteId other than suite_id, no InfoType, a suite_ticket without a
 * SuiteTicket of 1..CALLBACK_TICKET_MAX bytes and a numeric TimeStamp.
 */
enum brk_err callback_event_type(const struct wecom_xml *ev,
                                 const char *suite_id, const char **type,
                                 struct callback_refusal *why) BRK_WUR;

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
/*
 * With min_acks >= 1, write events on ack_st (borrowed; a connection used
 * for nothing else) and answer WeCom `success` only once WAIT min_acks 200
 * on it confirms them, else 503 (see SPEC §7). NULL/0 turns it off.
 */
void callback_set_ack_store(struct callback *cb, struct store *ack_st,
                            long min_acks);

#endif /* CALLBACK_H */
