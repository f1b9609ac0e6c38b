/*
 * HTTP/1.1 upstream client on bufferevents (see upclient.h).
 *
 * A call takes an idle connection of its origin (the most recently used),
 * opens one when the origin has fewer than max_conns, or waits in the
 * origin's queue. Its request goes out in one write: on a plain connection
 * straight to the socket when nothing is queued (no write event, no
 * epoll_ctl), else through the bufferevent. A plain connection is read
 * by an event of its own, one recv(2) into the client's buffer per
 * readiness (a bufferevent would first ask the socket's size with an
 * ioctl), and parsed in place; TLS connections are read by their
 * bufferevent. Either stays registered for reading while idle, so a close
 * by the peer is seen and the connection dropped; a reused connection
 * that fails before any byte of the response is tried once more on a new
 * one.
 *
 * Host names: one lookup per origin at a time; the connections opened
 * meanwhile wait for it (as their connect timeout runs) and hear of its end
 * from the loop, never from inside conn_open. A connection not yet
 * connected moves to the next address on any failure, with a new socket
 * (and TLS session) and its request written again.
 *
 * Re-entrancy: user callbacks may cancel calls or free the client from
 * anywhere. Every entry from the loop or the API counts itself in
 * c->depth; calls and connections that end are unlinked at once but freed
 * only when the outermost frame leaves, so a frame below may still look
 * at their flags. bufferevent_free from inside a bufferevent's own
 * callback is safe in libevent (it holds a reference for the callback).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "http1.h"
#include "upclient.h"

#define MAX_CONNS_DEF    256
#define MAX_IDLE_DEF     64
#define IDLE_TIMEOUT_DEF 30000L
#define DNS_TTL_DEF      60000L
#define READ_MAX         65536 /* one read of a large body */
#define PEEK_IOV         8
#define HOST_MAX         256
#define ORIGIN_MAX       300
#define HEAD_FIXED       512 /* request line and Host, beside the target */
/* A call whose request fits in a block of CALL_BLOCK bytes (a GET, most
 * POSTs) gets one, and gives it back for the next call when it ends: up
 * to CALLS_SPARE are kept, wiped (requests carry the corp token). */
#define CALL_BLOCK  2048
#define CALLS_SPARE 32

struct origin;
struct conn;

struct upclient_call {
    struct upclient *c;
    struct origin *o;
    struct upclient_call *prev, *next; /* live calls, or the dead list */
    struct upclient_call *wnext;       /* the origin's queue */
    struct conn *conn;
    struct event timer; /* the deadline, or a deferred failure */
    upclient_data_cb *on_data;
    upclient_done_cb *done;
    void *arg;
    long want_status;
    size_t received;      /* body bytes handed out */
    enum brk_err pending; /* end with this once the data callback returns */
    const char *pending_why;
    int queued;
    int retried;
    int in_data;
    int finished; /* done ran, or cancelled */
    int reused;
    int block;      /* its memory is a CALL_BLOCK, reusable */
    size_t req_len; /* the request follows, wiped on free */
    char req[];
};

struct conn {
    struct origin *o;
    struct conn *prev, *next; /* the origin's idle or busy list */
    struct conn *dnext;       /* the dead list */
    struct bufferevent *bev;
    struct upclient_call *call;
    unsigned calls; /* calls it has carried, this one included */
    int connected;
    int idle;
    int dead;
    int got_bytes;  /* a byte of the current call's response arrived */
    int sess_kept;  /* its TLS session was offered to the origin */
    int waiting;    /* for its origin's addresses */
    int wake;       /* the lookup it waited for has ended */
    int dns_err;    /* its origin's name did not resolve */
    unsigned tried; /* addresses tried, the current one included */
    int rev_on;     /* rev added: a plain connection, once connected */
    struct event rev;
    double idle_since;
    struct http1 parser; /* the current call's response */
};

struct origin {
    struct upclient *c;
    struct origin *next;
    char key[ORIGIN_MAX]; /* the origin as given */
    char host[HOST_MAX];  /* without brackets */
    char authority[ORIGIN_MAX];
    int port;
    int tls;
    int numeric;
    struct sockaddr_storage sa;
    int salen;
    struct evutil_addrinfo *addrs; /* a host name's; NULL: none known */
    double addrs_until;            /* brk_mono_s() they are used until */
    struct lookup *lk;             /* the lookup under way; NULL: none */
    struct event resolved;         /* wakes the connections waiting */
    SSL_SESSION *tls_sess; /* offered to resume; NULL: a full handshake */
    struct conn *idle, *busy;
    unsigned nconns, nidle;
    struct upclient_call *qhead, *qtail;
};

struct upclient {
    struct event_base *base;
    struct upclient_opts opts;
    char *ca_file;
    const struct timeval *call_tv; /* a common timeout: O(1) add and del */
    struct event *sweep;
    struct evdns_base *dns; /* given, or made on the first host name */
    int own_dns;            /* dns is the client's to free */
    SSL_CTX *ssl_ctx;       /* made on the first https origin */
    struct origin *origins;
    struct upclient_call *calls;
    struct upclient_call *dead_calls;
    struct upclient_call *spare_calls; /* CALL_BLOCKs, wiped, for calls */
    unsigned nspare;
    struct conn *dead_conns;
    char *rbuf; /* READ_MAX bytes: what one recv on a plain connection got */
    unsigned depth;
    int freeing;
};

static void
ms_tv(struct timeval *tv, long ms)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

/*---- Lifetime ----*/

static void destroy(struct upclient *c);

static void
enter(struct upclient *c)
{
    c->depth++;
}

/* A call's memory for a request of n bytes: a CALL_BLOCK (spare or new)
 * when it fits, else its own; NULL when out of memory. */
static struct upclient_call *
call_alloc(struct upclient *c, size_t n)
{
    struct upclient_call *k;

    if (n > CALL_BLOCK - sizeof(*k))
        k = brk_malloc(sizeof(*k) + n);
    else if ((k = c->spare_calls) != NULL) {
        c->spare_calls = k->next;
        c->nspare--;
    } else {
        k = brk_malloc(CALL_BLOCK);
    }
    if (k == NULL)
        return NULL;
    memset(k, 0, sizeof(*k));
    k->block = n <= CALL_BLOCK - sizeof(*k);
    return k;
}

/* The end of k's memory: wiped (the request holds the corp token), then
 * kept spare or freed. */
static void
call_release(struct upclient *c, struct upclient_call *k)
{
    int keep = k->block && c->nspare < CALLS_SPARE && !c->freeing;

    brk_wipe(k, sizeof(*k) + k->req_len);
    if (keep) {
        k->next = c->spare_calls;
        c->spare_calls = k;
        c->nspare++;
        return;
    }
    brk_free(k);
}

/* The outermost frame frees what ended beneath it; c may be gone after. */
static void
leave(struct upclient *c)
{
    struct upclient_call *k;
    struct conn *n;

    if (--c->depth > 0)
        return;
    while ((k = c->dead_calls) != NULL) {
        c->dead_calls = k->next;
        call_release(c, k);
    }
    while ((n = c->dead_conns) != NULL) {
        c->dead_conns = n->dnext;
        brk_free(n);
    }
    if (c->freeing)
        destroy(c);
}

/*---- Origins ----*/

/* Split "scheme://authority" into o; 0 when it is not one we call. */
static int
origin_parse(const char *s, struct origin *o)
{
    const char *a, *end, *colon, *h;
    size_t hl, i;
    long port;
    char *pe;

    if (strncasecmp(s, "https://", 8) == 0) {
        o->tls = 1;
        a = s + 8;
    } else if (strncasecmp(s, "http://", 7) == 0) {
        o->tls = 0;
        a = s + 7;
    } else {
        return 0;
    }
    end = a + strlen(a);
    if (end == a || (size_t)(end - s) >= ORIGIN_MAX)
        return 0;
    if (*a == '[') {
        h = a + 1;
        colon = memchr(a, ']', (size_t)(end - a));
        if (colon == NULL)
            return 0;
        hl = (size_t)(colon - h);
        colon++;
        if (colon != end && *colon != ':')
            return 0;
    } else {
        h = a;
        colon = memchr(a, ':', (size_t)(end - a));
        hl = colon != NULL ? (size_t)(colon - a) : (size_t)(end - a);
        if (colon == NULL)
            colon = end;
    }
    if (hl == 0 || hl >= HOST_MAX)
        return 0;
    for (i = 0; i < hl; i++) {
        unsigned char ch = (unsigned char)h[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
              (ch == ':' && *a == '[')))
            return 0;
    }
    memcpy(o->host, h, hl);
    o->host[hl] = '\0';
    port = o->tls ? 443 : 80;
    if (colon != end) {
        errno = 0;
        port = strtol(colon + 1, &pe, 10);
        if (pe != end || colon[1] < '0' || colon[1] > '9' || errno != 0 ||
            port < 1 || port > 65535)
            return 0;
    }
    o->port = (int)port;
    memcpy(o->authority, a, (size_t)(end - a) + 1);
    snprintf(o->key, sizeof(o->key), "%s", s);
    o->salen = (int)sizeof(o->sa);
    {
        char hp[HOST_MAX + 16];

        snprintf(hp, sizeof(hp), *a == '[' ? "[%s]:%d" : "%s:%d", o->host,
                 o->port);
        o->numeric = evutil_parse_sockaddr_port(hp, (struct sockaddr *)&o->sa,
                                                &o->salen) == 0;
    }
    if (*a == '[' && !o->numeric)
        return 0;
    return 1;
}

int
upclient_origin_ok(const char *origin)
{
    struct origin o;

    return origin != NULL && origin_parse(origin, &o);
}

static void on_resolved(evutil_socket_t fd, short what, void *arg);

static struct origin *
origin_get(struct upclient *c, const char *s)
{
    struct origin *o;

    for (o = c->origins; o != NULL; o = o->next)
        if (strcmp(o->key, s) == 0)
            return o;
    o = brk_calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    if (!origin_parse(s, o)) {
        brk_free(o);
        return NULL;
    }
    o->c = c;
    event_assign(&o->resolved, c->base, -1, 0, on_resolved, o);
    o->next = c->origins;
    c->origins = o;
    return o;
}

/*---- Connections ----*/

static void conn_readcb(struct bufferevent *bev, void *arg);
static void conn_eventcb(struct bufferevent *bev, short what, void *arg);
static void call_send(struct upclient_call *k, struct conn *n);
static void call_assign(struct upclient_call *k, int fresh);

static void
list_del(struct conn **head, struct conn *n)
{
    if (n->prev != NULL)
        n->prev->next = n->next;
    else
        *head = n->next;
    if (n->next != NULL)
        n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

static void
list_add(struct conn **head, struct conn *n)
{
    n->prev = NULL;
    n->next = *head;
    if (*head != NULL)
        (*head)->prev = n;
    *head = n;
}

/* Close n; its call, if any, must already be detached or ending. */
static void
conn_close(struct conn *n)
{
    struct origin *o = n->o;
    struct upclient *c = o->c;

    if (n->dead)
        return;
    n->dead = 1;
    if (n->idle) {
        list_del(&o->idle, n);
        o->nidle--;
    } else {
        list_del(&o->busy, n);
    }
    o->nconns--;
    if (n->rev_on) {
        event_del(&n->rev);
        n->rev_on = 0;
    }
    if (n->call != NULL && n->call->conn == n)
        n->call->conn = NULL;
    n->call = NULL;
    bufferevent_free(n->bev);
    n->bev = NULL;
    n->dnext = c->dead_conns;
    c->dead_conns = n;
}

/*
 * Close n, which is in step (no call, or its response read whole): over
 * TLS with a close_notify first, without which OpenSSL would take the
 * session as cut short and never offer it again.
 */
static void
conn_close_clean(struct conn *n)
{
    SSL *ssl;

    if (!n->dead && n->o->tls && n->connected &&
        (ssl = bufferevent_openssl_get_ssl(n->bev)) != NULL) {
        SSL_shutdown(ssl);
        ERR_clear_error();
    }
    conn_close(n);
}

static SSL_CTX *
tls_ctx(struct upclient *c)
{
    SSL_CTX *ctx;

    if (c->ssl_ctx != NULL)
        return c->ssl_ctx;
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if ((c->ca_file != NULL
             ? SSL_CTX_load_verify_locations(ctx, c->ca_file, NULL)
             : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return NULL;
    }
    c->ssl_ctx = ctx;
    return ctx;
}

/* A TLS session for o: SNI and the certificate's name (or address). */
static SSL *
tls_new(struct upclient *c, struct origin *o)
{
    SSL_CTX *ctx = tls_ctx(c);
    SSL *ssl;

    if (ctx == NULL || (ssl = SSL_new(ctx)) == NULL)
        return NULL;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    /* resumed only with a session this origin's name was verified for;
     * a session refused falls back to a full handshake */
    if (o->tls_sess != NULL && SSL_set_session(ssl, o->tls_sess) != 1)
        ERR_clear_error();
    if (o->numeric
            ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), o->host) != 1
            : (SSL_set_tlsext_host_name(ssl, o->host) != 1 ||
               SSL_set1_host(ssl, o->host) != 1)) {
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

/*
 * A new bufferevent for n (a fresh socket, and TLS session, for each
 * address tried), replacing the one it had. BRK_OK, or an error with *why
 * (n unchanged).
 */
static enum brk_err
conn_bev(struct upclient *c, struct conn *n, const char **why)
{
    struct origin *o = n->o;
    struct bufferevent *bev;
    struct timeval tv;
    SSL *ssl = NULL;

    if (o->tls) {
        ssl = tls_new(c, o);
        if (ssl == NULL) {
            *why = "TLS set-up failed";
            return BRK_ERR_IO;
        }
        bev = bufferevent_openssl_socket_new(c->base, -1, ssl,
                                             BUFFEREVENT_SSL_CONNECTING,
                                             BEV_OPT_CLOSE_ON_FREE);
        if (bev == NULL)
            SSL_free(ssl);
    } else {
        bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (bev == NULL) {
        *why = "out of memory";
        return BRK_ERR_NOMEM;
    }
    bufferevent_setcb(bev, conn_readcb, NULL, conn_eventcb, n);
    bufferevent_set_max_single_read(bev, READ_MAX);
    /* one connect timeout per address; a lookup waits under the first */
    ms_tv(&tv, c->opts.connect_timeout_ms);
    bufferevent_set_timeouts(bev, &tv, &tv);
    /* a plain connection is read by its own event once connected */
    if (bufferevent_enable(bev, o->tls ? EV_READ | EV_WRITE : EV_WRITE) != 0) {
        bufferevent_free(bev);
        *why = "cannot watch a socket";
        return BRK_ERR_IO;
    }
    if (n->bev != NULL)
        bufferevent_free(n->bev);
    n->bev = bev;
    return BRK_OK;
}

/*---- Host names ----*/

struct lookup {
    struct origin *o; /* NULL once the origin is gone: the answer is dropped */
    struct evdns_getaddrinfo_request *req;
    int starting; /* inside evdns_getaddrinfo */
    int answered; /* its answer came from inside evdns_getaddrinfo */
};

static const struct evutil_addrinfo *
addr_nth(const struct evutil_addrinfo *ai, unsigned i)
{
    while (ai != NULL && i-- > 0)
        ai = ai->ai_next;
    return ai;
}

static void
origin_forget(struct origin *o)
{
    if (o->addrs != NULL)
        evutil_freeaddrinfo(o->addrs);
    o->addrs = NULL;
}

/*
 * A lookup's answer (res owned): once per lookup, from the loop or from
 * inside evdns_getaddrinfo. The connections waiting hear of it from the
 * loop (on_resolved), never from inside conn_open.
 */
static void
on_addrs(int err, struct evutil_addrinfo *res, void *arg)
{
    struct lookup *lk = arg;
    struct origin *o = lk->o;

    if (o != NULL) {
        o->lk = NULL;
        if (err == 0 && res != NULL) {
            origin_forget(o);
            o->addrs = res;
            res = NULL;
        }
        /* a failed lookup keeps the addresses it was to replace: they
         * are forgotten only when none of them connects */
        if (o->addrs != NULL)
            o->addrs_until =
                brk_mono_s() + (double)o->c->opts.dns_ttl_ms / 1000.0;
        event_active(&o->resolved, EV_TIMEOUT, 1);
    }
    if (res != NULL)
        evutil_freeaddrinfo(res);
    if (lk->starting)
        lk->answered = 1;
    else
        brk_free(lk);
}

/* Look o's host name up, unless a lookup is under way. */
static enum brk_err
origin_lookup(struct upclient *c, struct origin *o, const char **why)
{
    struct evdns_getaddrinfo_request *req;
    struct evutil_addrinfo hints;
    struct lookup *lk;
    char port[8];

    if (o->lk != NULL)
        return BRK_OK;
    if (c->dns == NULL) {
        c->dns = evdns_base_new(c->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (c->dns == NULL) {
            *why = "no resolver";
            return BRK_ERR_IO;
        }
        c->own_dns = 1;
    }
    lk = brk_calloc(1, sizeof(*lk));
    if (lk == NULL) {
        *why = "out of memory";
        return BRK_ERR_NOMEM;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    snprintf(port, sizeof(port), "%d", o->port);
    lk->o = o;
    lk->starting = 1;
    o->lk = lk;
    req = evdns_getaddrinfo(c->dns, o->host, port, &hints, on_addrs, lk);
    lk->starting = 0;
    if (lk->answered) {
        brk_free(lk);
        return BRK_OK;
    }
    if (req == NULL) {
        o->lk = NULL;
        brk_free(lk);
        *why = "no resolver";
        return BRK_ERR_IO;
    }
    lk->req = req;
    return BRK_OK;
}

/*
 * Connect n to the next of its origin's addresses: 1 when a connect is
 * under way, 0 when none is left (the origin's addresses are then
 * forgotten: the next connection looks the name up again).
 */
static int
conn_next(struct conn *n)
{
    struct origin *o = n->o;
    const struct evutil_addrinfo *ai;
    const char *why;

    while ((ai = addr_nth(o->addrs, n->tried)) != NULL) {
        n->tried++;
        /* the request waits unsent in the bufferevent it replaces */
        if (n->tried > 1 &&
            (conn_bev(o->c, n, &why) != BRK_OK ||
             (n->call != NULL &&
              bufferevent_write(n->bev, n->call->req, n->call->req_len) != 0)))
            break;
        if (bufferevent_socket_connect(n->bev, ai->ai_addr,
                                       (int)ai->ai_addrlen) == 0)
            return 1;
    }
    origin_forget(o);
    return 0;
}

/*
 * Open a connection to o; NULL with *why when that fails at once (later
 * failures arrive as events).
 */
static struct conn *
conn_open(struct upclient *c, struct origin *o, const char **why)
{
    struct conn *n;

    n = brk_calloc(1, sizeof(*n));
    if (n == NULL) {
        *why = "out of memory";
        return NULL;
    }
    n->o = o;
    if (conn_bev(c, n, why) != BRK_OK)
        goto fail;
    if (o->numeric) {
        if (bufferevent_socket_connect(n->bev, (struct sockaddr *)&o->sa,
                                       o->salen) != 0) {
            *why = "connect failed";
            goto fail;
        }
    } else if (o->addrs != NULL && brk_mono_s() < o->addrs_until) {
        if (!conn_next(n)) {
            *why = "connect failed";
            goto fail;
        }
    } else {
        if (origin_lookup(c, o, why) != BRK_OK)
            goto fail;
        n->waiting = 1;
    }
    list_add(&o->busy, n);
    o->nconns++;
    return n;
fail:
    if (n->bev != NULL)
        bufferevent_free(n->bev);
    brk_free(n);
    return NULL;
}

/*---- Calls ----*/

static void
queue_del(struct upclient_call *k)
{
    struct origin *o = k->o;
    struct upclient_call **pp, *prev = NULL;

    if (!k->queued)
        return;
    for (pp = &o->qhead; *pp != NULL; pp = &(*pp)->wnext) {
        if (*pp == k) {
            *pp = k->wnext;
            if (o->qtail == k)
                o->qtail = prev;
            break;
        }
        prev = *pp;
    }
    k->wnext = NULL;
    k->queued = 0;
}

/* Unlink k for good: no callback runs after this. */
static void
call_unlink(struct upclient_call *k)
{
    struct upclient *c = k->c;

    k->finished = 1;
    queue_del(k);
    event_del(&k->timer);
    if (k->conn != NULL) {
        k->conn->call = NULL;
        k->conn = NULL;
    }
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        c->calls = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    k->prev = NULL;
    k->next = c->dead_calls;
    c->dead_calls = k;
}

/* End k: its connection (if any) closed unless the caller released it
 * first, then the callback. */
static void
call_end(struct upclient_call *k, enum brk_err err, long status,
         const char *why)
{
    struct upclient_result res;

    if (k->finished)
        return;
    if (k->conn != NULL)
        conn_close(k->conn);
    res.err = err;
    res.status = status;
    res.why = why != NULL ? why : "-";
    res.reused = k->reused;
    call_unlink(k);
    k->done(&res, k->arg);
}

/* End k from the loop soon: the done callback never runs from
 * upclient_start or while another frame of k is on the stack. */
static void
call_fail_soon(struct upclient_call *k, enum brk_err err, const char *why)
{
    struct timeval tv = {0, 0};

    k->pending = err;
    k->pending_why = why;
    if (k->conn != NULL)
        conn_close(k->conn);
    queue_del(k);
    event_del(&k->timer);
    if (event_add(&k->timer, &tv) != 0)
        call_end(k, err, 0, why);
}

/* A connection free for the next call: to a waiting call, the idle pool,
 * or closed. */
static void
conn_release(struct conn *n)
{
    struct origin *o = n->o;
    struct upclient *c = o->c;
    struct upclient_call *k;
    struct timeval tv;

    n->call = NULL;
    if (c->freeing) {
        conn_close_clean(n);
        return;
    }
    if ((k = o->qhead) != NULL) {
        queue_del(k);
        call_send(k, n);
        return;
    }
    if (o->nidle >= c->opts.max_idle) {
        conn_close_clean(n);
        return;
    }
    list_del(&o->busy, n);
    list_add(&o->idle, n);
    n->idle = 1;
    o->nidle++;
    n->idle_since = brk_mono_s();
    if (!evtimer_pending(c->sweep, NULL)) {
        ms_tv(&tv, c->opts.idle_timeout_ms / 2 + 1);
        evtimer_add(c->sweep, &tv);
    }
}

/* After a connection closed: a waiting call may open one now. */
static void
origin_kick(struct origin *o)
{
    struct upclient_call *k;

    while ((k = o->qhead) != NULL && o->nconns < o->c->opts.max_conns) {
        queue_del(k);
        call_assign(k, 1);
    }
}

/* Put k's request on n. */
static void
call_send(struct upclient_call *k, struct conn *n)
{
    struct evbuffer *out = bufferevent_get_output(n->bev);
    const char *p = k->req;
    size_t left = k->req_len;
    ssize_t w;

    if (n->idle) {
        list_del(&n->o->idle, n);
        n->o->nidle--;
        list_add(&n->o->busy, n);
        n->idle = 0;
    }
    k->conn = n;
    k->reused = n->calls > 0;
    n->call = k;
    n->calls++;
    n->got_bytes = 0;
    http1_init(&n->parser, NULL);
    /* a plain connection with nothing queued: write now, no write event */
    if (!n->o->tls && n->connected && evbuffer_get_length(out) == 0) {
        w = send(bufferevent_getfd(n->bev), p, left,
                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            w = -2;
        if (w > 0) {
            p += w;
            left -= (size_t)w;
        } else if (w == -2) {
            /* the peer is gone: as if it closed before answering */
            k->conn = NULL;
            n->call = NULL;
            conn_close(n);
            if (k->reused && !k->retried) {
                k->retried = 1;
                call_assign(k, 1);
            } else {
                call_fail_soon(k, BRK_ERR_UPSTREAM, "connection reset");
            }
            return;
        }
    }
    if (left > 0 && bufferevent_write(n->bev, p, left) != 0)
        call_fail_soon(k, BRK_ERR_NOMEM, "out of memory");
}

/* Find k a connection: an idle one (unless fresh), a new one, or a place
 * in the queue. */
static void
call_assign(struct upclient_call *k, int fresh)
{
    struct origin *o = k->o;
    struct upclient *c = k->c;
    const char *why = NULL;
    struct conn *n;

    if (!fresh && o->idle != NULL) {
        call_send(k, o->idle);
        return;
    }
    if (o->nconns >= c->opts.max_conns) {
        k->wnext = NULL;
        if (o->qtail != NULL)
            o->qtail->wnext = k;
        else
            o->qhead = k;
        o->qtail = k;
        k->queued = 1;
        return;
    }
    n = conn_open(c, o, &why);
    if (n == NULL) {
        call_fail_soon(k,
                       strcmp(why, "out of memory") == 0 ? BRK_ERR_NOMEM
                                                         : BRK_ERR_UPSTREAM,
                       why);
        return;
    }
    call_send(k, n);
}

static void
on_call_timer(evutil_socket_t fd, short what, void *arg)
{
    struct upclient_call *k = arg;
    struct upclient *c = k->c;
    struct origin *o = k->o;

    (void)fd;
    (void)what;
    enter(c);
    if (k->pending != BRK_OK)
        call_end(k, k->pending, 0, k->pending_why);
    else
        call_end(k, BRK_ERR_UPSTREAM_TIMEOUT,
                 k->conn != NULL ? k->conn->parser.status : 0, "timed out");
    origin_kick(o);
    leave(c);
}

/*---- Responses ----*/

static enum brk_err
data_err(int rc)
{
    return rc > 0 && rc < BRK_ERR__COUNT ? (enum brk_err)rc
                                         : BRK_ERR_UPSTREAM_BAD;
}

/*
 * Feed one piece of input to k's parser. Returns how much was taken, or
 * (size_t)-1 once k has ended or its connection was closed (stop looking
 * at anything of n). *done set when the response is complete.
 */
static size_t
feed(struct conn *n, struct upclient_call *k, const char *in, size_t len,
     int *done)
{
    struct upclient *c = k->c;
    size_t off = 0, used, dlen;
    const char *data;
    enum http1_ev ev;
    int rc;

    for (;;) {
        ev = http1_parse(&n->parser, in + off, len - off, &used, &data, &dlen);
        off += used;
        switch (ev) {
        case HTTP1_MORE:
            return off;
        case HTTP1_DONE:
            *done = 1;
            return off;
        case HTTP1_ERROR:
            call_end(k, BRK_ERR_UPSTREAM_BAD, n->parser.status,
                     http1_strwhy(n->parser.why));
            return (size_t)-1;
        case HTTP1_HEAD:
            if (k->want_status != 0 && n->parser.status != k->want_status) {
                call_end(k, BRK_ERR_UPSTREAM_BAD, n->parser.status,
                         "unwanted status");
                return (size_t)-1;
            }
            if (n->parser.framing == HTTP1_BODY_LENGTH &&
                n->parser.length > (uint64_t)c->opts.max_body) {
                call_end(k, BRK_ERR_UPSTREAM_TOOBIG, n->parser.status,
                         "body too big");
                return (size_t)-1;
            }
            continue;
        case HTTP1_DATA:
            if (dlen > c->opts.max_body - k->received) {
                call_end(k, BRK_ERR_UPSTREAM_TOOBIG, n->parser.status,
                         "body too big");
                return (size_t)-1;
            }
            k->received += dlen;
            k->in_data = 1;
            rc = k->on_data(data, dlen, k->arg);
            k->in_data = 0;
            if (k->finished) {
                /* cancelled from its own data callback */
                conn_close(n);
                return (size_t)-1;
            }
            if (k->pending != BRK_OK || rc != 0 || n->dead) {
                call_end(k, k->pending != BRK_OK ? k->pending : data_err(rc),
                         n->parser.status,
                         k->pending != BRK_OK ? k->pending_why
                                              : "refused by the reader");
                return (size_t)-1;
            }
            continue;
        }
    }
}

static void
origin_drop_session(struct origin *o)
{
    if (o->tls_sess != NULL)
        SSL_SESSION_free(o->tls_sess);
    o->tls_sess = NULL;
}

/* After its first response (TLS 1.3 tickets come after the handshake):
 * n's session, if resumable, is the one the origin's next connection
 * offers. */
static void
conn_keep_session(struct conn *n)
{
    SSL *ssl = bufferevent_openssl_get_ssl(n->bev);
    SSL_SESSION *s;

    n->sess_kept = 1;
    if (ssl == NULL || (s = SSL_get1_session(ssl)) == NULL)
        return;
    if (!SSL_SESSION_is_resumable(s)) {
        SSL_SESSION_free(s);
        return;
    }
    origin_drop_session(n->o);
    n->o->tls_sess = s;
}

/* The response is complete: keep or close the connection, then end. */
static void
response_done(struct conn *n, struct upclient_call *k, int leftover)
{
    long status = n->parser.status;
    struct origin *o = n->o;

    if (o->tls && !n->sess_kept)
        conn_keep_session(n);
    k->conn = NULL;
    n->call = NULL;
    if (n->parser.keep_alive && !leftover)
        conn_release(n);
    else if (!leftover)
        conn_close_clean(n);
    else
        conn_close(n);
    call_end(k, BRK_OK, status, NULL);
    origin_kick(o);
}

/* Bytes on a connection no call waits on: it is out of step. */
static void
conn_unasked(struct conn *n)
{
    struct origin *o = n->o;

    conn_close(n);
    origin_kick(o);
}

/* TLS: the bufferevent's input, parsed where it lies. */
static void
conn_readcb(struct bufferevent *bev, void *arg)
{
    struct conn *n = arg;
    struct origin *o = n->o;
    struct upclient *c = o->c;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_iovec v[PEEK_IOV];
    struct upclient_call *k = n->call;
    size_t took, total;
    int i, nv, done = 0;

    enter(c);
    if (k == NULL) {
        conn_unasked(n);
        goto out;
    }
    n->got_bytes = 1;
    while (!done && evbuffer_get_length(in) > 0) {
        nv = evbuffer_peek(in, -1, NULL, v, PEEK_IOV);
        if (nv > PEEK_IOV)
            nv = PEEK_IOV;
        total = 0;
        for (i = 0; i < nv && !done; i++) {
            took = feed(n, k, v[i].iov_base, v[i].iov_len, &done);
            if (took == (size_t)-1) {
                origin_kick(o);
                goto out;
            }
            total += took;
        }
        evbuffer_drain(in, total);
    }
    if (done)
        response_done(n, k, evbuffer_get_length(in) > 0);
out:
    leave(c);
}

static void on_readable(evutil_socket_t fd, short what, void *arg);

/* The end of input, a reset or a failed set-up (BEV_EVENT_* in what). */
static void
conn_failed(struct conn *n, short what)
{
    struct origin *o = n->o;
    struct upclient_call *k = n->call;
    enum brk_err err = BRK_ERR_UPSTREAM;
    const char *why = "connection closed";

    if (k == NULL) {
        /* an idle connection closed by the peer */
        conn_close(n);
        origin_kick(o);
        return;
    }
    /* not connected yet: the name's next address, if it has one */
    if (!n->connected && !n->waiting && !n->dns_err && !o->numeric &&
        conn_next(n))
        return;
    if ((what & BEV_EVENT_EOF) && n->got_bytes) {
        /* the close ends a close-delimited body; anything else is cut */
        if (http1_eof(&n->parser) == HTTP1_DONE) {
            response_done(n, k, 0);
            return;
        }
        err = BRK_ERR_UPSTREAM_BAD;
        why = http1_strwhy(n->parser.why);
    } else if (!n->got_bytes && k->reused && !k->retried &&
               !(what & BEV_EVENT_TIMEOUT)) {
        /* a kept-alive connection the peer had given up: once more, on
         * a new one */
        k->retried = 1;
        k->conn = NULL;
        n->call = NULL;
        conn_close(n);
        call_assign(k, 1);
        return;
    } else if (what & BEV_EVENT_TIMEOUT) {
        err = BRK_ERR_UPSTREAM_TIMEOUT;
        why = n->waiting ? "lookup timed out" : "connect timed out";
    } else if (!n->connected) {
        /* a handshake that failed offers no session again */
        origin_drop_session(o);
        why = n->dns_err ? "cannot resolve"
              : o->tls   ? "connect or TLS failed"
                         : "connect failed";
    } else if (what & BEV_EVENT_ERROR) {
        why = "connection reset";
    }
    ERR_clear_error();
    call_end(k, err, n->parser.status, why);
    origin_kick(o);
}

static void
conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *n = arg;
    struct upclient *c = n->o->c;

    enter(c);
    if (!(what & BEV_EVENT_CONNECTED)) {
        conn_failed(n, what);
    } else {
        n->connected = 1;
        bufferevent_set_timeouts(bev, NULL, NULL);
        if (!n->o->tls) {
            event_assign(&n->rev, c->base, bufferevent_getfd(bev),
                         EV_READ | EV_PERSIST, on_readable, n);
            if (event_add(&n->rev, NULL) == 0)
                n->rev_on = 1;
            else
                conn_failed(n, BEV_EVENT_ERROR);
        }
    }
    leave(c);
}

/* o's lookup has ended: the connections that waited for it connect or
 * fail. */
static void
on_resolved(evutil_socket_t fd, short what, void *arg)
{
    struct origin *o = arg;
    struct upclient *c = o->c;
    struct conn *n;

    (void)fd;
    (void)what;
    enter(c);
    for (n = o->busy; n != NULL; n = n->next)
        n->wake = n->waiting;
    /* a call that fails may start others: look again each time */
    while (!c->freeing) {
        for (n = o->busy; n != NULL && !n->wake; n = n->next)
            ;
        if (n == NULL)
            break;
        n->wake = 0;
        n->waiting = 0;
        if (o->addrs == NULL)
            n->dns_err = 1;
        else if (conn_next(n))
            continue;
        conn_failed(n, BEV_EVENT_ERROR);
    }
    leave(c);
}

/* A plain connection: one recv, parsed in place. */
static void
on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct conn *n = arg;
    struct origin *o = n->o;
    struct upclient *c = o->c;
    struct upclient_call *k = n->call;
    size_t took;
    ssize_t r;
    int done = 0;

    (void)what;
    enter(c);
    r = recv(fd, c->rbuf, READ_MAX, 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        goto out;
    if (r <= 0) {
        conn_failed(n, r == 0 ? BEV_EVENT_EOF | BEV_EVENT_READING
                              : BEV_EVENT_ERROR | BEV_EVENT_READING);
        goto out;
    }
    if (k == NULL) {
        conn_unasked(n);
        goto out;
    }
    n->got_bytes = 1;
    took = feed(n, k, c->rbuf, (size_t)r, &done);
    if (took == (size_t)-1)
        origin_kick(o);
    else if (done)
        response_done(n, k, took < (size_t)r);
out:
    leave(c);
}

/*---- Idle sweep ----*/

static void
on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct upclient *c = arg;
    double limit = brk_mono_s() - (double)c->opts.idle_timeout_ms / 1000.0;
    struct origin *o;
    struct conn *n, *next;
    struct timeval tv;
    int any = 0;

    (void)fd;
    (void)what;
    enter(c);
    for (o = c->origins; o != NULL; o = o->next) {
        for (n = o->idle; n != NULL; n = next) {
            next = n->next;
            if (n->idle_since <= limit)
                conn_close_clean(n);
        }
        any |= o->idle != NULL;
    }
    if (any) {
        ms_tv(&tv, c->opts.idle_timeout_ms / 2 + 1);
        evtimer_add(c->sweep, &tv);
    }
    leave(c);
}

/*---- API ----*/

enum brk_err
upclient_new(struct event_base *base, const struct upclient_opts *opts,
             struct upclient **out)
{
    struct upclient *c;
    struct timeval tv;

    if (base == NULL || opts == NULL || out == NULL || opts->timeout_ms <= 0 ||
        opts->connect_timeout_ms < 0 || opts->max_body == 0 ||
        opts->idle_timeout_ms < 0 || opts->dns_ttl_ms < 0)
        return BRK_ERR_INVAL;
    c = brk_calloc(1, sizeof(*c));
    if (c == NULL)
        return BRK_ERR_NOMEM;
    c->base = base;
    c->opts = *opts;
    if (c->opts.connect_timeout_ms == 0)
        c->opts.connect_timeout_ms = opts->timeout_ms;
    if (c->opts.max_conns == 0)
        c->opts.max_conns = MAX_CONNS_DEF;
    if (c->opts.max_idle == 0)
        c->opts.max_idle = MAX_IDLE_DEF;
    if (c->opts.idle_timeout_ms == 0)
        c->opts.idle_timeout_ms = IDLE_TIMEOUT_DEF;
    if (c->opts.dns_ttl_ms == 0)
        c->opts.dns_ttl_ms = DNS_TTL_DEF;
    c->dns = opts->dns;
    c->opts.ca_file = NULL;
    if (opts->ca_file != NULL &&
        (c->ca_file = brk_strdup(opts->ca_file)) == NULL)
        goto fail;
    c->rbuf = brk_malloc(READ_MAX);
    c->sweep = evtimer_new(base, on_sweep, c);
    if (c->rbuf == NULL || c->sweep == NULL)
        goto fail;
    ms_tv(&tv, c->opts.timeout_ms);
    c->call_tv = event_base_init_common_timeout(base, &tv);
    if (c->call_tv == NULL)
        goto fail;
    *out = c;
    return BRK_OK;
fail:
    if (c->sweep != NULL)
        event_free(c->sweep);
    brk_free(c->rbuf);
    brk_free(c->ca_file);
    brk_free(c);
    return BRK_ERR_NOMEM;
}

static void
dns_free_later(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    evdns_base_free(arg, 0);
}

static void
destroy(struct upclient *c)
{
    struct timeval now = {0, 0};
    struct origin *o;
    struct upclient_call *k;
    int cancelled = 0;

    while ((k = c->spare_calls) != NULL) {
        c->spare_calls = k->next;
        brk_free(k);
    }
    while ((o = c->origins) != NULL) {
        c->origins = o->next;
        if (o->lk != NULL) {
            /* its answer, still to come, is dropped */
            o->lk->o = NULL;
            evdns_getaddrinfo_cancel(o->lk->req);
            cancelled = 1;
        }
        event_del(&o->resolved);
        origin_forget(o);
        origin_drop_session(o);
        brk_free(o);
    }
    /* a cancelled lookup still calls back from the loop, and needs its
     * resolver then */
    if (c->dns != NULL && c->own_dns &&
        (!cancelled || event_base_once(c->base, -1, EV_TIMEOUT, dns_free_later,
                                       c->dns, &now) != 0))
        evdns_base_free(c->dns, 0);
    if (c->ssl_ctx != NULL)
        SSL_CTX_free(c->ssl_ctx);
    event_free(c->sweep);
    brk_free_secret(c->rbuf, READ_MAX);
    brk_free(c->ca_file);
    brk_free(c);
}

void
upclient_free(struct upclient *c)
{
    struct upclient_call *k, *next;
    struct origin *o;

    if (c == NULL || c->freeing)
        return;
    enter(c);
    c->freeing = 1;
    for (k = c->calls; k != NULL; k = next) {
        next = k->next;
        if (k->in_data) {
            k->pending = BRK_ERR_SHUTDOWN;
            k->pending_why = "shutting down";
        }
    }
    /* a callback may end or cancel other calls: start over each time */
    for (;;) {
        for (k = c->calls; k != NULL && k->in_data; k = k->next)
            ;
        if (k == NULL)
            break;
        call_end(k, BRK_ERR_SHUTDOWN, 0, "shutting down");
    }
    for (o = c->origins; o != NULL; o = o->next) {
        while (o->idle != NULL)
            conn_close_clean(o->idle);
        while (o->busy != NULL && o->busy->call == NULL)
            conn_close(o->busy);
    }
    leave(c);
}

/* Append n bytes to k's request (its room was reckoned beforehand). */
static void
put(struct upclient_call *k, const char *p, size_t n)
{
    if (n > 0)
        memcpy(k->req + k->req_len, p, n);
    k->req_len += n;
}

enum brk_err
upclient_start(struct upclient *c, const struct upclient_req *r,
               upclient_data_cb *on_data, upclient_done_cb *done, void *arg,
               struct upclient_call **call)
{
    struct upclient_call *k;
    struct origin *o;
    size_t tlen, hlen, blen, cap;
    char len_line[48];
    int post, n;
    const char *t;

    if (c == NULL || r == NULL || on_data == NULL || done == NULL ||
        r->origin == NULL || r->method == NULL || r->target == NULL)
        return BRK_ERR_INVAL;
    if (c->freeing)
        return BRK_ERR_SHUTDOWN;
    if (strcmp(r->method, "GET") == 0)
        post = 0;
    else if (strcmp(r->method, "POST") == 0)
        post = 1;
    else
        return BRK_ERR_INVAL;
    if (r->target[0] != '/' || (!post && r->len > 0) ||
        (r->body == NULL && r->len > 0))
        return BRK_ERR_INVAL;
    for (t = r->target; *t != '\0'; t++)
        if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
            return BRK_ERR_INVAL;
    tlen = (size_t)(t - r->target);
    o = origin_get(c, r->origin);
    if (o == NULL)
        return upclient_origin_ok(r->origin) ? BRK_ERR_NOMEM : BRK_ERR_INVAL;
    hlen = r->headers != NULL ? strlen(r->headers) : 0;
    blen = post ? r->len : 0;
    cap = HEAD_FIXED + strlen(o->authority) + tlen + hlen;
    if (blen > SIZE_MAX - cap - sizeof(*k))
        return BRK_ERR_INVAL;
    k = call_alloc(c, cap + blen);
    if (k == NULL)
        return BRK_ERR_NOMEM;
    /* pieces copied, not formatted: this runs for every data call */
    put(k, post ? "POST " : "GET ", post ? 5 : 4);
    put(k, r->target, tlen);
    put(k, " HTTP/1.1\r\nHost: ", 17);
    put(k, o->authority, strlen(o->authority));
    put(k, "\r\n", 2);
    put(k, r->headers, hlen);
    if (post) {
        n = snprintf(len_line, sizeof(len_line), "Content-Length: %zu\r\n",
                     blen);
        put(k, len_line, (size_t)n);
    }
    put(k, "\r\n", 2);
    put(k, r->body, blen);
    k->c = c;
    k->o = o;
    k->on_data = on_data;
    k->done = done;
    k->arg = arg;
    k->want_status = r->want_status;
    event_assign(&k->timer, c->base, -1, 0, on_call_timer, k);
    if (event_add(&k->timer, c->call_tv) != 0) {
        call_release(c, k);
        return BRK_ERR_IO;
    }
    enter(c);
    k->next = c->calls;
    if (c->calls != NULL)
        c->calls->prev = k;
    c->calls = k;
    call_assign(k, 0);
    if (call != NULL)
        *call = k;
    leave(c);
    return BRK_OK;
}

void
upclient_cancel(struct upclient_call *k)
{
    struct upclient *c;
    struct origin *o;

    if (k == NULL || k->finished)
        return;
    c = k->c;
    o = k->o;
    enter(c);
    if (k->conn != NULL)
        conn_close(k->conn);
    call_unlink(k);
    origin_kick(o);
    leave(c);
}

unsigned
upclient_conns(const struct upclient *c, unsigned *idle)
{
    const struct origin *o;
    unsigned all = 0, nidle = 0;

    for (o = c != NULL ? c->origins : NULL; o != NULL; o = o->next) {
        all += o->nconns;
        nidle += o->nidle;
    }
    if (idle != NULL)
        *idle = nidle;
    return all;
}
