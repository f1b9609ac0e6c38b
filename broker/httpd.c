/*
 * evhttp listeners (see httpd.h). Every reply goes through httpd_reply,
 * which also counts the metric and the in-flight gauge. A listener may
 * speak TLS through libevent_openssl bufferevents.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "cache.h"
#include "codec.h"
#include "config.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"

#define MAX_LISTENERS  4
#define HEADERS_MAX    (64 * 1024)
#define READ_TIMEOUT_S 30
/* accept() out of descriptors: pause the listener this long */
#define ACCEPT_PAUSE_MS 200
/* How often connections that never completed a request are checked. */
#define SWEEP_MS 1000
/* Warn when the certificate has fewer days left than this. */
#define TLS_EXPIRY_WARN_DAYS 14
/* TLS 1.2 suites with forward secrecy and AEAD; 1.3 keeps its defaults. */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"

struct httpd_tls {
    SSL_CTX *ctx;
};

/*
 * A connection we track, from accept until it closes. Its bufferevent is
 * ours (made in conn_bevcb) but owned by evhttp; we learn the socket once
 * evhttp has set it, and the connection (to hear of its close) once a
 * request on it is complete. A connection that closes before that is
 * noticed by the sweep, or when its descriptor is accepted again: the
 * socket's inode tells a reused descriptor from the one we admitted.
 */
struct conn {
    struct httpd_listener *l;
    struct bufferevent *bev; /* a reference while pending, then identity */
    evutil_socket_t fd;
    ino_t ino;
    char addr[NETADDR_KEY_MAX];      /* "" when not counted per address */
    struct evhttp_connection *evcon; /* once a request is complete */
    struct event *deadline;          /* for the request being read */
    int pending;                     /* accepted, not yet admitted */
    int closing;                     /* counted in h->closing */
    struct conn *prev, *next;        /* every connection of the listener */
    struct conn *pnext;              /* the pending ones */
};

struct httpd_listener {
    struct httpd *h;
    char name[16];
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    httpd_handler *handler;
    void *arg;
    unsigned inflight;
    struct httpd_tls *tls; /* NULL: plain HTTP */
    struct event *resume;  /* re-enables accepting after a pause */
    unsigned long paused;  /* accept pauses so far */
    struct event *admit;   /* admits the connections just accepted */
    struct conn *conns;    /* every tracked connection */
    struct conn *pending;  /* accepted, not yet admitted */
    size_t nconns, max_conns;
    size_t per_addr_max;    /* 0: no cap per client address */
    struct cache *per_addr; /* address key -> size_t count */
    int full;               /* not accepting: at max_conns */
    unsigned long refused;  /* connections closed by a cap or deadline */
};

struct httpd {
    struct event_base *base;
    struct httpd_listener listeners[MAX_LISTENERS];
    size_t nlisteners;
    unsigned inflight;
    unsigned closing; /* connections told to close, not yet closed */
    int draining;
    struct event *drain_timer;
    void (*drain_done)(void *);
    void *drain_arg;
    struct conn **by_fd; /* tracked connections by descriptor */
    size_t nby_fd;
    struct event *sweep;
    /* random bytes for request ids, drawn a block at a time: one
     * RAND_bytes (and its fork check, a getpid) per 64 requests */
    unsigned char rnd[512];
    size_t rnd_left;
};

/* The trusted proxies, process-wide (see httpd.h); borrowed. */
static const struct netaddr_list *httpd_trusted;

static void accept_owner_set(struct httpd_listener *l, int on);
static void conn_forget(struct conn *c);
static void conns_free(struct httpd_listener *l);

enum brk_err
httpd_new(struct event_base *base, struct httpd **out)
{
    struct httpd *h = brk_calloc(1, sizeof(*h));

    if (h == NULL)
        return BRK_ERR_NOMEM;
    h->base = base;
    *out = h;
    return BRK_OK;
}

void
httpd_free(struct httpd *h)
{
    size_t i;

    if (h == NULL)
        return;
    for (i = 0; i < h->nlisteners; i++) {
        struct httpd_listener *l = &h->listeners[i];

        accept_owner_set(l, 0);
        if (l->resume != NULL)
            event_free(l->resume);
        if (l->admit != NULL)
            event_free(l->admit);
        /* evhttp closes its connections and tells us of each; its
         * listening socket goes with it */
        l->sock = NULL;
        evhttp_free(l->http);
        conns_free(l);
        cache_free(l->per_addr);
        httpd_tls_free(l->tls);
    }
    if (h->drain_timer != NULL)
        event_free(h->drain_timer);
    if (h->sweep != NULL)
        event_free(h->sweep);
    brk_free(h->by_fd);
    brk_free(h);
}

/* Process-wide trusted proxies (see httpd.h). Cannot fail. */
void
httpd_set_trusted_proxies(const struct netaddr_list *l)
{
    httpd_trusted = l;
}

/* By steps, not by value: the loops of a process (workers = N) each
 * serve a share of one listener and add into the same series. */
static void
update_gauge(struct httpd_listener *l, int delta)
{
    char labels[64];

    metrics_add(
        METRICS_INFLIGHT,
        metrics_labels(labels, sizeof(labels), "listener", l->name, NULL),
        (double)delta);
}

static void
maybe_drained(struct httpd *h)
{
    void (*done)(void *) = h->drain_done;

    if (!h->draining || h->inflight > 0 || h->closing > 0 || done == NULL)
        return;
    h->drain_done = NULL;
    event_del(h->drain_timer);
    done(h->drain_arg);
}

/*---- Connections: caps, deadlines ----*/

static struct conn *
conn_of_fd(struct httpd *h, evutil_socket_t fd)
{
    if (fd < 0 || (size_t)fd >= h->nby_fd)
        return NULL;
    return h->by_fd[fd];
}

/* The inode of the socket fd, or 0 when fd is not open. */
static ino_t
fd_inode(evutil_socket_t fd)
{
    struct stat st;

    return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

/* Nonzero when c's descriptor is still the socket we admitted. */
static int
conn_alive(const struct conn *c)
{
    return c->fd >= 0 && c->ino != 0 && fd_inode(c->fd) == c->ino;
}

/* Accept again once below the cap (unless paused or draining). */
static void
listener_refill(struct httpd_listener *l)
{
    if (!l->full || l->nconns >= l->max_conns || l->sock == NULL)
        return;
    l->full = 0;
    if (!evtimer_pending(l->resume, NULL))
        evconnlistener_enable(evhttp_bound_socket_get_listener(l->sock));
}

/* Stop counting c and free it. */
static void
conn_forget(struct conn *c)
{
    struct httpd_listener *l = c->l;
    struct httpd *h = l->h;
    size_t *n;
    struct conn **pp;

    if (c->pending) {
        for (pp = &l->pending; *pp != c; pp = &(*pp)->pnext)
            ;
        *pp = c->pnext;
        bufferevent_decref(c->bev);
    }
    if (c->addr[0] != '\0') {
        n = cache_get(l->per_addr, c->addr, 0);
        if (n != NULL && --*n == 0)
            cache_remove(l->per_addr, c->addr);
    }
    if (conn_of_fd(h, c->fd) == c)
        h->by_fd[c->fd] = NULL;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    l->nconns--;
    if (c->closing) {
        h->closing--;
        maybe_drained(h);
    }
    if (c->deadline != NULL)
        event_free(c->deadline);
    brk_free(c);
    listener_refill(l);
}

static void
on_conn_closed_tracked(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    conn_forget(arg);
}

/* One warning per 100 refusals, with the reason. */
static void
conn_refused(struct httpd_listener *l, const char *reason)
{
    char labels[128];

    if (l->refused++ % 100 == 0)
        log_warn("%s listener: closing a connection: %s (%lu so far)", l->name,
                 reason, l->refused);
    if (l->per_addr_max > 0)
        metrics_inc(METRICS_CALLBACK_REJECTIONS,
                    metrics_labels(labels, sizeof(labels), "suite", "",
                                   "reason", reason, NULL));
}

/* The request being read on c passed its deadline: close the socket's
 * both ways, so evhttp sees the end of it and frees the connection. */
static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;

    (void)fd;
    (void)what;
    if (!conn_alive(c)) {
        conn_forget(c);
        return;
    }
    conn_refused(c->l, "request_deadline");
    shutdown(c->fd, SHUT_RDWR);
}

static void
deadline_arm(struct conn *c)
{
    struct timeval tv = {HTTPD_REQUEST_DEADLINE_S, 0};

    if (c->deadline != NULL)
        evtimer_add(c->deadline, &tv);
}

/* The connection of a complete request: no deadline while it is served,
 * and its close is heard from now on. */
static void
conn_dispatched(struct httpd_listener *l, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct conn *c;

    if (evcon == NULL)
        return;
    c = conn_of_fd(l->h,
                   bufferevent_getfd(evhttp_connection_get_bufferevent(evcon)));
    if (c == NULL || c->l != l)
        return;
    if (c->deadline != NULL)
        evtimer_del(c->deadline);
    if (c->evcon == NULL) {
        c->evcon = evcon;
        evhttp_connection_set_closecb(evcon, on_conn_closed_tracked, c);
    }
}

/* A reply has been queued on req: the next request on its connection
 * gets a deadline of its own. Returns the tracked connection or NULL. */
static struct conn *
conn_replied(struct httpd_listener *l, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct conn *c;

    if (evcon == NULL)
        return NULL;
    c = conn_of_fd(l->h,
                   bufferevent_getfd(evhttp_connection_get_bufferevent(evcon)));
    if (c == NULL || c->evcon != evcon)
        return NULL;
    deadline_arm(c);
    return c;
}

/*
 * Admit the connections evhttp has just set up: learn their socket and
 * client, enforce the caps, start the deadline of their first request.
 * Runs before any of them is read.
 */
static void
on_admit(evutil_socket_t unused, short what, void *arg)
{
    struct httpd_listener *l = arg;
    struct httpd *h = l->h;
    struct conn *c, *old;
    struct sockaddr_storage ss;
    socklen_t sslen;
    struct netaddr peer;
    bufferevent_data_cb readcb = NULL;
    size_t *n;

    (void)unused;
    (void)what;
    while ((c = l->pending) != NULL) {
        l->pending = c->pnext;
        c->pnext = NULL;
        c->pending = 0;
        /* evhttp drops the callbacks of a bufferevent it has freed */
        bufferevent_getcb(c->bev, &readcb, NULL, NULL, NULL);
        c->fd = readcb != NULL ? bufferevent_getfd(c->bev) : -1;
        bufferevent_decref(c->bev);
        c->ino = c->fd >= 0 ? fd_inode(c->fd) : 0;
        if (c->ino == 0 || (size_t)c->fd >= h->nby_fd) {
            c->fd = -1;
            conn_forget(c);
            continue;
        }
        /* a descriptor closed before anything was complete on it, and
         * accepted again */
        old = conn_of_fd(h, c->fd);
        if (old != NULL)
            conn_forget(old);
        h->by_fd[c->fd] = c;
        sslen = sizeof(ss);
        if (l->per_addr_max > 0 &&
            getpeername(c->fd, (struct sockaddr *)&ss, &sslen) == 0 &&
            netaddr_from_sockaddr((struct sockaddr *)&ss, sslen, &peer) ==
                BRK_OK &&
            !netaddr_list_has(httpd_trusted, &peer)) {
            netaddr_key(&peer, c->addr);
            n = cache_get(l->per_addr, c->addr, 0);
            if (n != NULL && *n >= l->per_addr_max) {
                c->addr[0] = '\0';
                conn_refused(l, "too_many_connections");
                shutdown(c->fd, SHUT_RDWR);
                continue;
            }
            if (n == NULL) {
                n = brk_calloc(1, sizeof(*n));
                if (n == NULL ||
                    cache_put(l->per_addr, c->addr, n, 0) != BRK_OK) {
                    /* not counted: refused rather than let through */
                    c->addr[0] = '\0';
                    shutdown(c->fd, SHUT_RDWR);
                    continue;
                }
            }
            ++*n;
        }
        deadline_arm(c);
    }
}

/*
 * evhttp's constructor of each accepted connection's bufferevent: TLS or
 * plain, and tracked. The socket is not set yet; on_admit reads it.
 */
static struct bufferevent *
conn_bevcb(struct event_base *base, void *arg)
{
    struct httpd_listener *l = arg;
    struct bufferevent *bev;
    struct conn *c;
    SSL *ssl;

    if (l->tls != NULL) {
        ssl = SSL_new(l->tls->ctx);
        if (ssl == NULL) {
            /* evhttp falls back to a plain bufferevent, which dispatch
             * refuses */
            ERR_clear_error();
            return NULL;
        }
        /* on failure libevent may already have freed ssl with the
         * half-built bufferevent: freeing it here could be a double
         * free */
        bev = bufferevent_openssl_socket_new(
            base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL)
            return NULL;
        /* clients that close without close_notify are routine */
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    } else {
        bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL)
            return NULL;
    }
    c = brk_calloc(1, sizeof(*c));
    if (c == NULL)
        return bev; /* served, not counted */
    c->l = l;
    c->bev = bev;
    c->fd = -1;
    c->pending = 1;
    c->deadline = evtimer_new(l->h->base, on_deadline, c);
    /* held until on_admit: evhttp frees it if setting it up fails */
    bufferevent_incref(bev);
    c->next = l->conns;
    if (l->conns != NULL)
        l->conns->prev = c;
    l->conns = c;
    c->pnext = l->pending;
    l->pending = c;
    if (++l->nconns >= l->max_conns && l->sock != NULL) {
        /* the rest wait in the kernel's backlog */
        l->full = 1;
        evconnlistener_disable(evhttp_bound_socket_get_listener(l->sock));
    }
    event_active(l->admit, EV_TIMEOUT, 0);
    return bev;
}

/* Forget the connections that closed before a request was complete on
 * them (their close is not heard otherwise). */
static void
on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct httpd *h = arg;
    struct conn *c, *next;
    size_t i;

    (void)fd;
    (void)what;
    for (i = 0; i < h->nlisteners; i++)
        for (c = h->listeners[i].conns; c != NULL; c = next) {
            next = c->next;
            if (!c->pending && c->evcon == NULL && !conn_alive(c))
                conn_forget(c);
        }
}

/* At exit, after evhttp_free: whatever it did not report closed. */
static void
conns_free(struct httpd_listener *l)
{
    while (l->conns != NULL)
        conn_forget(l->conns);
}

static void
dispatch(struct evhttp_request *req, void *arg)
{
    struct httpd_listener *l = arg;
    struct httpd_req *r;
    unsigned char rnd[8];
    struct evhttp_connection *evcon;

    if (l->tls != NULL) {
        /* fail closed: a connection that somehow is not TLS (see
         * conn_bevcb) is never served */
        evcon = evhttp_request_get_connection(req);
        if (evcon == NULL ||
            bufferevent_openssl_get_ssl(
                evhttp_connection_get_bufferevent(evcon)) == NULL) {
            evhttp_send_error(req, 400, "TLS required");
            return;
        }
    }
    r = brk_calloc(1, sizeof(*r));
    if (r == NULL) {
        evhttp_send_error(req, 503, "Service Unavailable");
        return;
    }
    conn_dispatched(l, req);
    r->req = req;
    r->listener = l;
    r->route = "other";
    clock_gettime(CLOCK_MONOTONIC, &r->start);
    if (l->h->rnd_left < sizeof(rnd)) {
        if (RAND_bytes(l->h->rnd, sizeof(l->h->rnd)) != 1)
            memset(l->h->rnd, 0, sizeof(l->h->rnd));
        l->h->rnd_left = sizeof(l->h->rnd);
    }
    l->h->rnd_left -= sizeof(rnd);
    memcpy(rnd, l->h->rnd + l->h->rnd_left, sizeof(rnd));
    codec_hex_encode(rnd, sizeof(rnd), r->id);
    l->inflight++;
    l->h->inflight++;
    update_gauge(l, 1);
    l->handler(r, l->arg);
}

static void
on_conn_closed(struct evhttp_connection *evcon, void *arg)
{
    struct httpd *h = arg;

    (void)evcon;
    h->closing--;
    maybe_drained(h);
}

/* evbuffer cleanup of a body handed over by httpd_reply_take */
static void
body_release(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    brk_free((void *)(uintptr_t)data);
}

/* The reply, with body copied, or taken when owned is set (sent from
 * where it lies and freed once written). */
static void
reply_send(struct httpd_req *r, int status, const char *content_type,
           const char *body, size_t len, char *owned)
{
    struct httpd_listener *l = r->listener;
    struct evkeyvalq *hdr = evhttp_request_get_output_headers(r->req);
    struct evbuffer *buf = evhttp_request_get_output_buffer(r->req);
    struct timespec now;
    char labels[128], code[8];
    double secs;
    struct conn *c;

    evhttp_add_header(hdr, "Content-Type", content_type);
    evhttp_add_header(hdr, "X-Request-Id", r->id);
    evhttp_add_header(hdr, "Cache-Control", "no-store");
    c = conn_replied(l, r->req);
    if (l->h->draining) {
        /* finish only once the reply has left: libevent closes the
         * connection after writing it */
        struct evhttp_connection *evcon = evhttp_request_get_connection(r->req);

        evhttp_add_header(hdr, "Connection", "close");
        if (c != NULL && !c->closing) {
            c->closing = 1;
            l->h->closing++;
        } else if (c == NULL && evcon != NULL) {
            evhttp_connection_set_closecb(evcon, on_conn_closed, l->h);
            l->h->closing++;
        }
    }
    if (owned != NULL) {
        if (len == 0 ||
            evbuffer_add_reference(buf, owned, len, body_release, NULL) != 0) {
            if (len > 0)
                evbuffer_add(buf, owned, len);
            brk_free(owned);
        }
    } else if (len > 0) {
        evbuffer_add(buf, body, len);
    }
    /* libevent answers HEAD itself without the body */
    evhttp_send_reply(r->req, status, NULL, NULL);

    clock_gettime(CLOCK_MONOTONIC, &now);
    secs = (double)(now.tv_sec - r->start.tv_sec) +
           (double)(now.tv_nsec - r->start.tv_nsec) / 1e9;
    snprintf(code, sizeof(code), "%d", status);
    metrics_inc(METRICS_HTTP_REQUESTS,
                metrics_labels(labels, sizeof(labels), "listener", l->name,
                               "route", r->route, "status", code, NULL));
    metrics_observe(METRICS_HTTP_SECONDS,
                    metrics_labels(labels, sizeof(labels), "listener", l->name,
                                   "route", r->route, NULL),
                    secs);
    l->inflight--;
    l->h->inflight--;
    update_gauge(l, -1);
    brk_free(r);
    maybe_drained(l->h);
}

void
httpd_reply(struct httpd_req *r, int status, const char *content_type,
            const char *body, size_t len)
{
    reply_send(r, status, content_type, body, len, NULL);
}

/* httpd_reply without a copy: body (owned, brk_malloc'd) is consumed on
 * every path. */
void
httpd_reply_take(struct httpd_req *r, int status, const char *content_type,
                 char *body, size_t len)
{
    reply_send(r, status, content_type, body, len, body);
}

void
httpd_reply_text(struct httpd_req *r, int status, const char *body)
{
    httpd_reply(r, status, "text/plain; charset=utf-8", body, strlen(body));
}

const char *
httpd_path(const struct httpd_req *r)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(r->req);
    const char *p = u ? evhttp_uri_get_path(u) : NULL;

    return p ? p : "";
}

const char *
httpd_raw_query(const struct httpd_req *r)
{
    const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(r->req);

    return u ? evhttp_uri_get_query(u) : NULL;
}

const char *
httpd_method(const struct httpd_req *r)
{
    switch (evhttp_request_get_command(r->req)) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    default:
        return "OTHER";
    }
}

size_t
httpd_body_len(const struct httpd_req *r)
{
    return evbuffer_get_length(evhttp_request_get_input_buffer(r->req));
}

const char *
httpd_body(struct httpd_req *r)
{
    struct evbuffer *b = evhttp_request_get_input_buffer(r->req);

    if (evbuffer_get_length(b) == 0)
        return NULL;
    return (const char *)evbuffer_pullup(b, -1);
}

/*---- Accept errors ----*/

/* libevent gives the error callback the evhttp as its argument, not our
 * listener: this maps one to the other (a process has a few listeners). */
#define ACCEPT_OWNERS_MAX 16
static struct httpd_listener *accept_owners[ACCEPT_OWNERS_MAX];

static void
accept_owner_set(struct httpd_listener *l, int on)
{
    size_t i;

    for (i = 0; i < ACCEPT_OWNERS_MAX; i++) {
        if (on && accept_owners[i] == NULL) {
            accept_owners[i] = l;
            return;
        }
        if (!on && accept_owners[i] == l)
            accept_owners[i] = NULL;
    }
}

static void
on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct httpd_listener *l = arg;

    (void)fd;
    (void)what;
    if (l->sock != NULL && !l->full)
        evconnlistener_enable(evhttp_bound_socket_get_listener(l->sock));
}

/*
 * Out of descriptors (or kernel memory), accept() fails at once while the
 * connection waits in the backlog, and libevent would call it again at
 * once: a busy loop writing one warning per call. Pause accepting instead,
 * with one warning per 100 pauses.
 */
static void
on_accept_error(struct evconnlistener *lev, void *arg)
{
    struct httpd_listener *l = NULL;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    size_t i;

    for (i = 0; i < ACCEPT_OWNERS_MAX && l == NULL; i++)
        if (accept_owners[i] != NULL && accept_owners[i]->http == arg)
            l = accept_owners[i];
    if (l == NULL)
        return;
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) {
        log_warn("%s listener: accept: %s", l->name,
                 evutil_socket_error_to_string(err));
        return;
    }
    if (l->paused++ % 100 == 0)
        log_warn("%s listener: accept: %s; not accepting for %d ms "
                 "(%lu pause(s))",
                 l->name, evutil_socket_error_to_string(err), ACCEPT_PAUSE_MS,
                 l->paused);
    evconnlistener_disable(lev);
    if (l->resume == NULL || evtimer_add(l->resume, &tv) != 0)
        evconnlistener_enable(lev);
}

/*
 * The connection caps of a new listener from the descriptor limit: the
 * public listener may hold half of the descriptors, the internal one a
 * quarter, so a flood of either leaves a quarter to the other listener,
 * Redis, WeCom calls and files. The public one also caps each client
 * address. Also sizes the table of connections by descriptor.
 */
static enum brk_err
listener_limits(struct httpd *h, struct httpd_listener *l, const char *name,
                size_t group)
{
    struct rlimit rl;
    size_t nofile = 1024, want;
    void *p;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        nofile = (size_t)rl.rlim_cur;
    if (nofile > HTTPD_FD_TABLE_MAX)
        nofile = HTTPD_FD_TABLE_MAX;
    if (nofile < 64)
        nofile = 64;
    if (strcmp(name, HTTPD_PUBLIC_LISTENER) == 0) {
        l->max_conns = nofile / 2;
        l->per_addr_max = HTTPD_PER_ADDR_MAX < l->max_conns / 4
                              ? HTTPD_PER_ADDR_MAX
                              : l->max_conns / 4;
        if (cache_new(l->max_conns + 1, LLONG_MAX / 2, brk_free,
                      &l->per_addr) != BRK_OK)
            return BRK_ERR_NOMEM;
    } else {
        /* the loops sharing a listener share its quarter */
        l->max_conns = nofile / 4 / (group ? group : 1);
        if (l->max_conns < 16)
            l->max_conns = 16;
    }
    want = nofile;
    if (want > h->nby_fd) {
        p = brk_realloc(h->by_fd, want * sizeof(*h->by_fd));
        if (p == NULL)
            return BRK_ERR_NOMEM;
        h->by_fd = p;
        memset(h->by_fd + h->nby_fd, 0, (want - h->nby_fd) * sizeof(*h->by_fd));
        h->nby_fd = want;
    }
    if (h->sweep == NULL) {
        struct timeval tv = {SWEEP_MS / 1000, (SWEEP_MS % 1000) * 1000};

        h->sweep = event_new(h->base, -1, EV_PERSIST, on_sweep, h);
        if (h->sweep == NULL || event_add(h->sweep, &tv) != 0)
            return BRK_ERR_NOMEM;
    }
    return BRK_OK;
}

/* A listener on h serving through evhttp, not yet bound; NULL when out
 * of memory or of slots. */
static struct httpd_listener *
listener_begin(struct httpd *h, const char *name, size_t max_body,
               httpd_handler *handler, void *arg)
{
    struct httpd_listener *l;

    if (h->nlisteners == MAX_LISTENERS)
        return NULL;
    l = &h->listeners[h->nlisteners];
    memset(l, 0, sizeof(*l));
    l->h = h;
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->handler = handler;
    l->arg = arg;
    l->http = evhttp_new(h->base);
    if (l->http == NULL)
        return NULL;
    /* above our own limits, so the handler sees, logs and counts */
    evhttp_set_max_body_size(l->http, (ev_ssize_t)(max_body * 4 + 4096));
    evhttp_set_max_headers_size(l->http, HEADERS_MAX);
    evhttp_set_timeout(l->http, READ_TIMEOUT_S);
    evhttp_set_allowed_methods(
        l->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                     EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                     EVHTTP_REQ_PATCH);
    evhttp_set_gencb(l->http, dispatch, l);
    return l;
}

/* The bound listener l made ready, or undone (BRK_ERR_NOMEM). */
static enum brk_err
listener_finish(struct httpd *h, struct httpd_listener *l, const char *name,
                const char *host, size_t group)
{
    l->resume = evtimer_new(h->base, on_resume, l);
    l->admit = event_new(h->base, -1, 0, on_admit, l);
    if (l->resume == NULL || l->admit == NULL ||
        listener_limits(h, l, name, group) != BRK_OK) {
        if (l->resume != NULL)
            event_free(l->resume);
        if (l->admit != NULL)
            event_free(l->admit);
        evhttp_free(l->http);
        memset(l, 0, sizeof(*l));
        return BRK_ERR_NOMEM;
    }
    evhttp_set_bevcb(l->http, conn_bevcb, l);
    accept_owner_set(l, 1);
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(l->sock),
                                on_accept_error);
    h->nlisteners++;
    if (l->per_addr_max > 0)
        log_info("%s listener on %s:%d (at most %zu connections, %zu per "
                 "client address)",
                 name, host, httpd_listener_port(h, name), l->max_conns,
                 l->per_addr_max);
    else
        log_info("%s listener on %s:%d (at most %zu connections)", name, host,
                 httpd_listener_port(h, name), l->max_conns);
    return BRK_OK;
}

/*
 * Bind a listener (see httpd.h). Returns BRK_OK, BRK_ERR_CONFIG for a bad
 * address, BRK_ERR_IO when binding fails, BRK_ERR_TOOBIG past the table.
 */
enum brk_err
httpd_listen(struct httpd *h, const char *name, const char *hostport,
             size_t max_body, httpd_handler *handler, void *arg)
{
    struct httpd_listener *l;
    char host[256];
    int port;

    if (h->nlisteners == MAX_LISTENERS)
        return BRK_ERR_TOOBIG;
    if (config_parse_listen(hostport, host, sizeof(host), &port, 1))
        return BRK_ERR_CONFIG;
    l = listener_begin(h, name, max_body, handler, arg);
    if (l == NULL)
        return BRK_ERR_NOMEM;
    l->sock = evhttp_bind_socket_with_handle(l->http, host, (ev_uint16_t)port);
    if (l->sock == NULL) {
        evhttp_free(l->http);
        l->http = NULL;
        return BRK_ERR_IO;
    }
    return listener_finish(h, l, name, host, 1);
}

/*
 * Serve a listening socket of a group (see httpd.h). fd is consumed on
 * every path. Returns BRK_OK, BRK_ERR_TOOBIG past the table,
 * BRK_ERR_NOMEM.
 */
enum brk_err
httpd_listen_fd(struct httpd *h, const char *name, int fd, size_t group,
                size_t max_body, httpd_handler *handler, void *arg)
{
    struct httpd_listener *l;

    if (h->nlisteners == MAX_LISTENERS) {
        close(fd);
        return BRK_ERR_TOOBIG;
    }
    l = listener_begin(h, name, max_body, handler, arg);
    if (l == NULL) {
        close(fd);
        return BRK_ERR_NOMEM;
    }
    l->sock = evhttp_accept_socket_with_handle(l->http, fd);
    if (l->sock == NULL) {
        close(fd);
        evhttp_free(l->http);
        l->http = NULL;
        return BRK_ERR_NOMEM;
    }
    return listener_finish(h, l, name, "a shared socket, port", group);
}

/* One socket of a SO_REUSEPORT group, bound to ai with port, listening. */
static int
group_socket(const struct evutil_addrinfo *ai, int port)
{
    struct sockaddr_storage ss;
    int fd, on = 1;

    if (ai->ai_addrlen > sizeof(ss))
        return -1;
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    else if (ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
    else
        return -1;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        bind(fd, (struct sockaddr *)&ss, (socklen_t)ai->ai_addrlen) != 0 ||
        listen(fd, SOMAXCONN) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/*
 * n listening sockets on hostport in one SO_REUSEPORT group (see
 * httpd.h); port 0 picks one port for all. Returns BRK_OK with fds[0..n)
 * (owned: each goes to httpd_listen_fd or close), BRK_ERR_CONFIG,
 * BRK_ERR_IO with errno set by the failing call.
 */
enum brk_err
httpd_bind_group(const char *hostport, size_t n, int *fds)
{
    struct evutil_addrinfo hints, *ai = NULL;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[256], portstr[8];
    int port, saved;
    size_t i, made = 0;
    enum brk_err err = BRK_ERR_IO;

    if (n == 0 || config_parse_listen(hostport, host, sizeof(host), &port, 1))
        return BRK_ERR_CONFIG;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
    snprintf(portstr, sizeof(portstr), "%d", port);
    if (evutil_getaddrinfo(host, portstr, &hints, &ai) != 0 || ai == NULL)
        return BRK_ERR_IO;
    for (i = 0; i < n; i++) {
        fds[i] = group_socket(ai, port);
        if (fds[i] < 0)
            goto out;
        made++;
        /* the port the first one got is every other one's */
        if (i == 0 && port == 0) {
            if (getsockname(fds[0], (struct sockaddr *)&ss, &len) != 0)
                goto out;
            port = ss.ss_family == AF_INET6
                       ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    err = BRK_OK;
out:
    saved = errno;
    if (err)
        while (made > 0)
            close(fds[--made]);
    evutil_freeaddrinfo(ai);
    errno = saved;
    return err;
}

int
httpd_listener_port(const struct httpd *h, const char *name)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    evutil_socket_t fd;
    size_t i;

    for (i = 0; i < h->nlisteners; i++) {
        if (strcmp(h->listeners[i].name, name) != 0 ||
            h->listeners[i].sock == NULL)
            continue;
        fd = evhttp_bound_socket_get_fd(h->listeners[i].sock);
        if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
            return -1;
        if (ss.ss_family == AF_INET)
            return ntohs(((struct sockaddr_in *)&ss)->sin_port);
        if (ss.ss_family == AF_INET6)
            return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return -1;
}

/*---- TLS ----*/

/* An encrypted key would otherwise make OpenSSL prompt on the terminal. */
static int
tls_no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)arg;
    return 0;
}

/* The first queued OpenSSL error in words; empties the queue. */
static void
tls_reason(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    const char *why = NULL;

    if (e != 0 && ERR_SYSTEM_ERROR(e))
        why = strerror(ERR_GET_REASON(e));
    else if (e != 0)
        why = ERR_reason_error_string(e);
    snprintf(buf, len, "%s", why != NULL ? why : "unknown error");
    ERR_clear_error();
}

static void
tls_check_files(SSL_CTX *ctx, const char *cert_file, const char *key_file)
{
    const X509 *x = SSL_CTX_get0_certificate(ctx);
    int days = 0, secs = 0;
    struct stat st;

    if (x != NULL && X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
        log_warn("tls_cert_file %s: the certificate is not valid yet",
                 cert_file);
    if (x != NULL &&
        ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) == 1) {
        if (days < 0 || secs < 0)
            log_warn("tls_cert_file %s: the certificate has expired",
                     cert_file);
        else if (days == 0)
            log_warn("tls_cert_file %s: the certificate expires within a "
                     "day",
                     cert_file);
        else if (days < TLS_EXPIRY_WARN_DAYS)
            log_warn("tls_cert_file %s: the certificate expires in %d "
                     "day(s)",
                     cert_file, days);
    }
    /* group-readable is the usual ssl-cert group arrangement; world is
     * not */
    if (stat(key_file, &st) == 0 && (st.st_mode & (S_IROTH | S_IWOTH)))
        log_warn("tls_key_file %s is readable by others; chmod o-rw it",
                 key_file);
}

/*
 * Build a server context (see httpd.h). Returns BRK_OK, BRK_ERR_CONFIG
 * naming the file at fault, BRK_ERR_NOMEM. *out owned: httpd_tls_free.
 */
enum brk_err
httpd_tls_load(const char *cert_file, const char *key_file,
               struct httpd_tls **out, struct brk_errinfo *info)
{
    struct httpd_tls *t = NULL;
    SSL_CTX *ctx = NULL;
    enum brk_err err = BRK_ERR_CONFIG;
    char why[120];

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    t = brk_calloc(1, sizeof(*t));
    if (ctx == NULL || t == NULL) {
        brk_errinfo_set(info, 0, -1, "TLS: cannot create a context");
        err = BRK_ERR_NOMEM;
        goto out;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
        SSL_CTX_set_dh_auto(ctx, 1) != 1) {
        tls_reason(why, sizeof(why));
        brk_errinfo_set(info, 0, -1, "TLS: cannot configure: %s", why);
        goto out;
    }
    /* compression leaks secrets (CRIME); renegotiation only costs us */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, tls_no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        tls_reason(why, sizeof(why));
        brk_errinfo_set(info, 0, -1,
                        "tls_cert_file %s: cannot load the certificate: %s",
                        cert_file, why);
        goto out;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        tls_reason(why, sizeof(why));
        brk_errinfo_set(info, 0, -1,
                        "tls_key_file %s: cannot load the private key (PEM, "
                        "unencrypted, matching tls_cert_file): %s",
                        key_file, why);
        goto out;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        tls_reason(why, sizeof(why));
        brk_errinfo_set(info, 0, -1,
                        "tls_key_file %s does not match tls_cert_file %s",
                        key_file, cert_file);
        goto out;
    }
    tls_check_files(ctx, cert_file, key_file);
    t->ctx = ctx;
    ctx = NULL;
    *out = t;
    t = NULL;
    err = BRK_OK;
out:
    SSL_CTX_free(ctx);
    httpd_tls_free(t);
    return err;
}

void
httpd_tls_free(struct httpd_tls *t)
{
    if (t == NULL)
        return;
    /* SSL_CTX is reference-counted: open connections keep theirs */
    SSL_CTX_free(t->ctx);
    brk_free(t);
}

/*
 * Switch a listener to TLS (see httpd.h). Consumes t (not NULL) on every
 * path. Returns BRK_OK or BRK_ERR_NOTFOUND.
 */
enum brk_err
httpd_set_tls(struct httpd *h, const char *name, struct httpd_tls *t)
{
    struct httpd_listener *l = NULL;
    size_t i;

    for (i = 0; i < h->nlisteners; i++)
        if (strcmp(h->listeners[i].name, name) == 0)
            l = &h->listeners[i];
    if (l == NULL) {
        httpd_tls_free(t);
        return BRK_ERR_NOTFOUND;
    }
    httpd_tls_free(l->tls);
    l->tls = t;
    return BRK_OK;
}

/*---- Draining ----*/

static void
on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct httpd *h = arg;
    void (*done)(void *) = h->drain_done;

    (void)fd;
    (void)what;
    if (done == NULL)
        return;
    log_warn("drain timed out with %u request(s) in flight", h->inflight);
    h->drain_done = NULL;
    done(h->drain_arg);
}

void
httpd_drain(struct httpd *h, long timeout_ms, void (*done)(void *), void *arg)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    size_t i;

    if (h->draining)
        return;
    h->draining = 1;
    for (i = 0; i < h->nlisteners; i++) {
        if (h->listeners[i].resume != NULL)
            event_del(h->listeners[i].resume);
        if (h->listeners[i].sock != NULL) {
            evhttp_del_accept_socket(h->listeners[i].http,
                                     h->listeners[i].sock);
            h->listeners[i].sock = NULL;
        }
    }
    h->drain_done = done;
    h->drain_arg = arg;
    h->drain_timer = evtimer_new(h->base, on_drain_timeout, h);
    if (h->drain_timer != NULL)
        evtimer_add(h->drain_timer, &tv);
    log_info("stopped accepting; %u request(s) in flight", h->inflight);
    maybe_drained(h);
}

unsigned
httpd_inflight(const struct httpd *h)
{
    return h->inflight;
}
