/*
 * A small HTTP/1.1 client on libevent bufferevents for streamed upstream
 * calls: per origin (scheme, host, port) a bounded pool of idle keep-alive
 * connections, TLS through bufferevent_openssl (peer and host name
 * verified, SNI; a new connection resumes the origin's last session), one
 * request written at once, the response parsed by http1.c and its body
 * handed out as it arrives. A host name is looked up
 * once per origin and its addresses kept for dns_ttl_ms; a connection tries
 * them in turn until one connects (an origin whose every address failed is
 * looked up again). No redirects, no proxies, no HTTP/2. One client
 * belongs to one event_base (one loop); nothing in it is shared across
 * loops.
 */
#ifndef UPCLIENT_H
#define UPCLIENT_H

#include <stddef.h>

#include "broker.h"

struct event_base;
struct evdns_base;
struct upclient;
struct upclient_call;

struct upclient_opts {
    long timeout_ms;         /* the whole call, queueing included; > 0 */
    long connect_timeout_ms; /* TCP and TLS set-up; 0: timeout_ms */
    size_t max_body;         /* longer bodies: BRK_ERR_UPSTREAM_TOOBIG; > 0 */
    unsigned max_conns;      /* per origin; further calls wait; 0: 256 */
    unsigned max_idle;       /* idle connections kept per origin; 0: 64 */
    long idle_timeout_ms;    /* an idle connection closes after; 0: 30000 */
    const char *ca_file;     /* PEM trust anchors; NULL: the system's */
    /* The resolver for host names, borrowed (it must outlive the client);
     * NULL: one of the client's own, from the system's resolv.conf and
     * hosts file, made on the first host name. */
    struct evdns_base *dns;
    long dns_ttl_ms; /* an origin's addresses are used this long; 0: 60000 */
};

/* How a call ended; borrowed for the done callback. */
struct upclient_result {
    enum brk_err err; /* BRK_OK, BRK_ERR_UPSTREAM (connect, TLS, reset,
                         resolve), BRK_ERR_UPSTREAM_TIMEOUT,
                         BRK_ERR_UPSTREAM_BAD (refused by the parser, a
                         status other than want_status, truncated),
                         BRK_ERR_UPSTREAM_TOOBIG, BRK_ERR_NOMEM,
                         BRK_ERR_SHUTDOWN, or what on_data returned */
    long status;      /* the final status; 0 when no head was read */
    const char *why;  /* static detail for logs, never a URL; "-" if none */
    int reused;       /* the call went out on a kept-alive connection */
};

/* Body bytes in order, borrowed for the call. Return 0 to go on, a
 * BRK_ERR_* value to end the call with it, anything else to end it with
 * BRK_ERR_UPSTREAM_BAD. May cancel any call or free the client. */
typedef int upclient_data_cb(const char *data, size_t len, void *arg);
/* Runs exactly once per started call, never from upclient_start, unless
 * the call is cancelled first. May start calls or free the client. */
typedef void upclient_done_cb(const struct upclient_result *res, void *arg);

struct upclient_req {
    const char *origin;  /* "http://host[:port]" or "https://...",
                            no user info, no path */
    const char *method;  /* "GET" or "POST" */
    const char *target;  /* "/path?query", printable ASCII */
    const char *headers; /* "Name: value\r\n" lines sent as given
                            (trusted: not checked); NULL: none. Host and
                            Content-Length are the client's own. */
    const char *body;    /* POST only; copied */
    size_t len;
    long want_status; /* nonzero: any other status ends the call
                         with BRK_ERR_UPSTREAM_BAD, no body out */
};

/* A client on base; owned, free with upclient_free. BRK_ERR_INVAL for bad
 * options, BRK_ERR_NOMEM. */
enum brk_err upclient_new(struct event_base *base,
                          const struct upclient_opts *opts,
                          struct upclient **out) BRK_WUR;

/* Every call still running ends with BRK_ERR_SHUTDOWN (its done callback
 * runs from here; a call inside its data callback ends when that
 * returns); connections close. Safe from any callback. NULL ok. */
void upclient_free(struct upclient *c);

/* Nonzero when origin is one upclient can call. */
int upclient_origin_ok(const char *origin);

/*
 * Start a call; the request is copied. *call (may be NULL) names it for
 * upclient_cancel until done runs. Returns BRK_OK (done will run),
 * BRK_ERR_INVAL, BRK_ERR_NOMEM or BRK_ERR_SHUTDOWN (done never runs).
 */
enum brk_err upclient_start(struct upclient *c, const struct upclient_req *r,
                            upclient_data_cb *on_data, upclient_done_cb *done,
                            void *arg, struct upclient_call **call) BRK_WUR;

/* End a call whose done callback has not run; it never runs. Its
 * connection is closed. Safe from any callback, its own data callback
 * included. */
void upclient_cancel(struct upclient_call *call);

/* Connections open (busy or idle) and idle, over every origin. */
unsigned upclient_conns(const struct upclient *c, unsigned *idle);

#endif /* UPCLIENT_H */
