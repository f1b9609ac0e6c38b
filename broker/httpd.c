/*
 * The broker's HTTP/1.1 server (see httpd.h). Connections are read and
 * written here, not by a library: a plain connection keeps one persistent
 * read event for its whole life and answers with one sendmsg, so a
 * request on a kept-alive connection costs a recv and a send and no
 * change of the epoll set; a TLS connection goes through a
 * libevent_openssl bufferevent. Requests are parsed by http1.c; one is
 * served at a time per connection, later (pipelined) bytes wait in its
 * buffer. Every reply goes through reply_send, which also counts the
 * metric and the in-flight gauge. After a final reply both kinds linger:
 * the server stops sending (FIN; over TLS close_notify first) and throws
 * away what the client still sends, for a bounded time and size, so the
 * client reads the reply instead of a reset.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "cache.h"
#include "codec.h"
#include "config.h"
#include "http1.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"

#define MAX_LISTENERS 4
/* A request's head (request line and fields) at most. */
#define HEAD_MAX (64 * 1024)
/* A request line or a field line at most. */
#define LINE_MAX_REQ HTTP1_LINE_MAX
/* A connection's input buffer to begin with, and what it shrinks back to
 * once a large request is done. */
#define IN_INITIAL (16 * 1024)
/* accept() out of descriptors: pause the listener this long */
#define ACCEPT_PAUSE_MS 200
/* Warn when the certificate has fewer days left than this. */
#define TLS_EXPIRY_WARN_DAYS 14
/* TLS 1.2 suites with forward secrecy and AEAD; 1.3 keeps its defaults. */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"
/* A connection's reply buffer kept between replies at most. */
#define OUT_KEEP (16 * 1024)
/* The head of a reply beyond the handler's extra lines. */
#define REPLY_HEAD_BASE 512

struct httpd_tls {
    SSL_CTX *ctx;
};

/* Where a connection is with its current request. */
enum conn_state {
    CS_HEAD,   /* reading a request's head */
    CS_BODY,   /* reading its body */
    CS_SERVE,  /* the handler has it */
    CS_WRITE,  /* its reply is being written */
    CS_LINGER, /* the last reply sent: reading until the client closes */
};

/*
 * One accepted connection, owned by its listener from accept to close.
 * While a request is served (CS_SERVE) its buffer is never moved: the
 * request's path, headers and body point into it.
 */
struct httpd_conn {
    struct httpd_listener *l;
    evutil_socket_t fd;
    struct event *rev;       /* plain: persistent read event */
    struct event *wev;       /* plain: added only while a reply waits;
                              * TLS: once, while close_notify waits */
    struct bufferevent *bev; /* TLS: owns fd */
    struct event *deadline;  /* request or write deadline */
    struct sockaddr_storage peer;
    socklen_t peerlen;
    char addr[NETADDR_KEY_MAX]; /* "" when not counted per address */
    enum conn_state state;

    /* input: in[0..in_len), the current request first */
    char *in;
    size_t in_len, in_cap;
    size_t req_len; /* bytes of the current request once whole */
    struct http1_req q;
    struct http1_dechunk dc;
    int continued;   /* 100 Continue sent for this request */
    size_t lingered; /* bytes thrown away in CS_LINGER */

    /* output: head then body; body owned when body_owned */
    char *out;
    size_t out_len, out_off, out_cap;
    const char *body;
    char *body_owned;
    size_t body_len, body_off;

    struct httpd_req r; /* the request being served */
    int reading;        /* rev added (plain) or EV_READ enabled (TLS) */
    int writing;        /* wev added (plain) */
    int eof;            /* the client closed its side */
    int close_after;    /* close once the reply is written */
    int dead;           /* to be freed once no handler holds r */
    int busy;           /* inside conn_run: do not recurse */
    int again;          /* conn_run: something changed, step again */
    struct httpd_conn *prev, *next;
};

struct httpd_listener {
    struct httpd *h;
    char name[16];
    struct evconnlistener *lev;
    httpd_handler *handler;
    void *arg;
    size_t max_body; /* what the server itself reads at most */
    unsigned inflight;
    struct httpd_tls *tls; /* NULL: plain HTTP */
    struct event *resume;  /* re-enables accepting after a pause */
    unsigned long paused;  /* accept pauses so far */
    struct httpd_conn *conns;
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
    size_t nconns; /* across listeners */
    int draining;
    struct event *drain_timer;
    void (*drain_done)(void *);
    void *drain_arg;
    /* random bytes for request ids, drawn a block at a time: one
     * RAND_bytes (and its fork check, a getpid) per 64 requests */
    unsigned char rnd[512];
    size_t rnd_left;
    long request_ms, write_ms, linger_ms; /* see httpd_set_deadlines */
    /* the Date header's value, for the second it was made */
    time_t date_sec;
    char date[40];
};

static const struct http1_limits req_limits = {
    .line_max = LINE_MAX_REQ,
    .fields = HTTP1_REQ_FIELDS_MAX,
    .head_max = HEAD_MAX,
};

/* The trusted proxies, process-wide (see httpd.h); borrowed. */
static const struct netaddr_list *httpd_trusted;

static void conn_run(struct httpd_conn *c);
static void conn_kill(struct httpd_conn *c);

enum brk_err
httpd_new(struct event_base *base, struct httpd **out)
{
    struct httpd *h = brk_calloc(1, sizeof(*h));

    if (h == NULL)
        return BRK_ERR_NOMEM;
    h->base = base;
    h->request_ms = HTTPD_REQUEST_DEADLINE_S * 1000L;
    h->write_ms = HTTPD_WRITE_DEADLINE_S * 1000L;
    h->linger_ms = HTTPD_LINGER_MS;
    *out = h;
    return BRK_OK;
}

/* Other deadlines for connections accepted from now on (see httpd.h). */
void
httpd_set_deadlines(struct httpd *h, long request_ms, long write_ms,
                    long linger_ms)
{
    if (request_ms > 0)
        h->request_ms = request_ms;
    if (write_ms > 0)
        h->write_ms = write_ms;
    if (linger_ms > 0)
        h->linger_ms = linger_ms;
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

    if (!h->draining || h->inflight > 0 || h->nconns > 0 || done == NULL)
        return;
    h->drain_done = NULL;
    if (h->drain_timer != NULL)
        event_del(h->drain_timer);
    done(h->drain_arg);
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

/*---- Connections: accept, caps, close ----*/

/* Accept again once below the cap (unless paused or draining). */
static void
listener_refill(struct httpd_listener *l)
{
    if (!l->full || l->nconns >= l->max_conns || l->lev == NULL)
        return;
    l->full = 0;
    if (!evtimer_pending(l->resume, NULL))
        evconnlistener_enable(l->lev);
}

/* Take c off its listener's books and close its socket. */
static void
conn_unlink(struct httpd_conn *c)
{
    struct httpd_listener *l = c->l;
    size_t *n;

    if (c->addr[0] != '\0') {
        n = cache_get(l->per_addr, c->addr, 0);
        if (n != NULL && --*n == 0)
            cache_remove(l->per_addr, c->addr);
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    l->nconns--;
    l->h->nconns--;
    if (c->rev != NULL)
        event_free(c->rev);
    if (c->wev != NULL)
        event_free(c->wev);
    if (c->deadline != NULL)
        event_free(c->deadline);
    c->rev = c->wev = c->deadline = NULL;
    if (c->bev != NULL)
        bufferevent_free(c->bev); /* closes fd */
    else if (c->fd >= 0)
        close(c->fd);
    c->bev = NULL;
    c->fd = -1;
}

static void
conn_release(struct httpd_conn *c)
{
    brk_free(c->in);
    brk_free(c->out);
    brk_free(c->body_owned);
    brk_free(c);
}

/* Free c now: no handler holds its request. */
static void
conn_free(struct httpd_conn *c)
{
    struct httpd_listener *l = c->l;

    conn_unlink(c);
    conn_release(c);
    listener_refill(l);
    maybe_drained(l->h);
}

/* Close c: at once, or once the handler holding its request replies. */
static void
conn_kill(struct httpd_conn *c)
{
    c->dead = 1;
    if (c->busy || c->state == CS_SERVE) {
        /* stop hearing from the socket meanwhile */
        if (c->rev != NULL)
            event_del(c->rev);
        if (c->wev != NULL)
            event_del(c->wev);
        if (c->bev != NULL)
            bufferevent_disable(c->bev, EV_READ | EV_WRITE);
        c->reading = c->writing = 0;
        if (c->deadline != NULL)
            evtimer_del(c->deadline);
        return;
    }
    conn_free(c);
}

static void
on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct httpd_conn *c = arg;

    (void)fd;
    (void)what;
    /* an idle kept-alive connection closing is routine; a request that
     * did not arrive whole, or a reply not read, is counted */
    if (c->state == CS_LINGER)
        ;
    else if (c->state == CS_WRITE)
        conn_refused(c->l, "write_deadline");
    else if (c->in_len > 0)
        conn_refused(c->l, "request_deadline");
    conn_kill(c);
}

static void
deadline_arm(struct httpd_conn *c, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    evtimer_add(c->deadline, &tv);
}

/* Count c against its client address on a capped listener; 0, or -1
 * when the address already holds its share (or cannot be counted). */
static int
conn_count_addr(struct httpd_conn *c)
{
    struct httpd_listener *l = c->l;
    struct netaddr peer;
    size_t *n;

    if (l->per_addr_max == 0 ||
        netaddr_from_sockaddr((struct sockaddr *)&c->peer, c->peerlen, &peer) !=
            BRK_OK ||
        netaddr_list_has(httpd_trusted, &peer))
        return 0;
    netaddr_key(&peer, c->addr);
    n = cache_get(l->per_addr, c->addr, 0);
    if (n != NULL && *n >= l->per_addr_max) {
        c->addr[0] = '\0';
        conn_refused(l, "too_many_connections");
        return -1;
    }
    if (n == NULL) {
        n = brk_calloc(1, sizeof(*n));
        if (n == NULL || cache_put(l->per_addr, c->addr, n, 0) != BRK_OK) {
            /* not counted: refused rather than let through */
            c->addr[0] = '\0';
            return -1;
        }
    }
    ++*n;
    return 0;
}

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void on_tls_read(struct bufferevent *bev, void *arg);
static void on_tls_write(struct bufferevent *bev, void *arg);
static void on_tls_event(struct bufferevent *bev, short what, void *arg);

/* Set up c's transport on fd (consumed on every path); 0 or -1. */
static int
conn_transport(struct httpd_conn *c, evutil_socket_t fd)
{
    struct event_base *base = c->l->h->base;
    SSL *ssl;

    if (c->l->tls == NULL) {
        c->fd = fd;
        c->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_read, c);
        c->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, on_write, c);
        if (c->rev == NULL || c->wev == NULL || event_add(c->rev, NULL) != 0)
            return -1;
        c->reading = 1;
        return 0;
    }
    ssl = SSL_new(c->l->tls->ctx);
    if (ssl == NULL) {
        ERR_clear_error();
        close(fd);
        return -1;
    }
    /* on failure libevent may already have freed ssl with the half-built
     * bufferevent: freeing it here could be a double free */
    c->bev = bufferevent_openssl_socket_new(
        base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        close(fd);
        return -1;
    }
    /* clients that close without close_notify are routine */
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    bufferevent_setcb(c->bev, on_tls_read, on_tls_write, on_tls_event, c);
    if (bufferevent_enable(c->bev, EV_READ) != 0)
        return -1;
    c->reading = 1;
    return 0;
}

static void
on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
          int salen, void *arg)
{
    struct httpd_listener *l = arg;
    struct httpd_conn *c;
    int on = 1;

    (void)lev;
    c = brk_calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    c->l = l;
    c->fd = -1;
    http1_req_init(&c->q, &req_limits);
    if (salen > 0 && (size_t)salen <= sizeof(c->peer)) {
        memcpy(&c->peer, sa, (size_t)salen);
        c->peerlen = (socklen_t)salen;
    }
    c->next = l->conns;
    if (l->conns != NULL)
        l->conns->prev = c;
    l->conns = c;
    l->nconns++;
    l->h->nconns++;
    if (l->nconns >= l->max_conns && l->lev != NULL) {
        /* the rest wait in the kernel's backlog */
        l->full = 1;
        evconnlistener_disable(l->lev);
    }
    if (conn_count_addr(c) != 0) {
        c->fd = fd;
        conn_free(c);
        return;
    }
    /* replies go out in one send; nothing is gained by waiting */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    c->deadline = evtimer_new(l->h->base, on_deadline, c);
    if (c->deadline == NULL || conn_transport(c, fd) != 0) {
        conn_free(c);
        return;
    }
    deadline_arm(c, c->l->h->request_ms);
}

/*---- Transport: reading and writing ----*/

static void
reading_set(struct httpd_conn *c, int on)
{
    if (c->reading == on || c->dead)
        return;
    if (c->bev != NULL) {
        if (on)
            bufferevent_enable(c->bev, EV_READ);
        else
            bufferevent_disable(c->bev, EV_READ);
    } else if (on) {
        event_add(c->rev, NULL);
    } else {
        event_del(c->rev);
    }
    c->reading = on;
}

static void
writing_set(struct httpd_conn *c, int on)
{
    if (c->bev != NULL || c->writing == on || c->dead)
        return;
    if (on)
        event_add(c->wev, NULL);
    else
        event_del(c->wev);
    c->writing = on;
}

/* The most the input buffer may hold in c's state: while a request is
 * served or answered its bytes stay put, later ones wait for room. */
static size_t
in_limit(const struct httpd_conn *c)
{
    const struct httpd_listener *l = c->l;

    switch (c->state) {
    case CS_HEAD:
        /* the parser refuses a head past HEAD_MAX: room to see it */
        return HEAD_MAX + 1;
    case CS_BODY:
        if (c->q.framing == HTTP1_BODY_CHUNKED)
            /* the framing of reasonable chunks on top of the body */
            return c->q.head_len + l->max_body + l->max_body / 8 + 4096;
        return c->q.head_len + (size_t)c->q.length;
    default:
        return c->in_cap;
    }
}

/* Room for at least one more byte in c's input: 0, or -1 when none can
 * be made now (a full buffer at its state's limit, or out of memory). */
static int
in_room(struct httpd_conn *c)
{
    size_t lim = in_limit(c), cap;
    char *p;

    if (c->in_len < c->in_cap)
        return 0;
    if (c->in_cap >= lim)
        return -1;
    cap = c->in_cap == 0 ? IN_INITIAL : c->in_cap * 2;
    if (cap > lim)
        cap = lim;
    p = brk_realloc(c->in, cap);
    if (p == NULL)
        return -1;
    c->in = p;
    c->in_cap = cap;
    return 0;
}

/* Bytes read after a final reply, before the close: thrown away. */
#define LINGER_MAX (1024 * 1024)

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
    struct httpd_conn *c = arg;
    char sink[4096];
    ssize_t n;

    (void)what;
    if (c->state == CS_LINGER) {
        /* after the last reply (see reply_written) */
        n = recv(fd, sink, sizeof(sink), 0);
        if (n > 0 && (c->lingered += (size_t)n) < LINGER_MAX)
            return;
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_kill(c);
        return;
    }
    if (in_room(c) != 0) {
        /* later bytes wait in the kernel until this request is done */
        reading_set(c, 0);
        conn_run(c);
        return;
    }
    n = recv(fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n > 0) {
        c->in_len += (size_t)n;
        conn_run(c);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        conn_kill(c);
        return;
    }
    c->eof = 1;
    reading_set(c, 0);
    conn_run(c);
}

static void
on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_run(arg);
}

/* Move what the TLS layer has decrypted into c's input, as room allows. */
static void
tls_pull(struct httpd_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    int n;

    while (evbuffer_get_length(in) > 0) {
        if (in_room(c) != 0) {
            reading_set(c, 0);
            return;
        }
        n = evbuffer_remove(in, c->in + c->in_len, c->in_cap - c->in_len);
        if (n <= 0)
            return;
        c->in_len += (size_t)n;
    }
}

/* Throw away what the TLS layer has decrypted after the last reply;
 * past LINGER_MAX the connection closes. */
static void
tls_discard(struct httpd_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t n = evbuffer_get_length(in);

    evbuffer_drain(in, n);
    c->lingered += n;
    if (c->lingered >= LINGER_MAX)
        conn_kill(c);
}

static void
on_tls_read(struct bufferevent *bev, void *arg)
{
    struct httpd_conn *c = arg;

    (void)bev;
    if (c->dead)
        return;
    if (c->state == CS_LINGER) {
        /* after the last reply (see tls_linger) */
        tls_discard(c);
        return;
    }
    if (c->state != CS_HEAD && c->state != CS_BODY) {
        /* later bytes wait in the kernel while a request is served */
        reading_set(c, 0);
        return;
    }
    conn_run(c);
}

static void
on_tls_write(struct bufferevent *bev, void *arg)
{
    struct httpd_conn *c = arg;

    (void)bev;
    if (!c->dead)
        conn_run(c);
}

static void
on_tls_event(struct bufferevent *bev, short what, void *arg)
{
    struct httpd_conn *c = arg;

    (void)bev;
    if (c->dead || (what & BEV_EVENT_CONNECTED))
        return; /* the handshake is done: requests come as reads */
    if (c->state == CS_LINGER) {
        /* the client's close_notify, its FIN or an error: the linger is
         * over */
        ERR_clear_error();
        conn_kill(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        c->eof = 1;
        reading_set(c, 0);
        conn_run(c);
        return;
    }
    ERR_clear_error();
    conn_kill(c);
}

/* Write what c has to send: 1 all sent, 0 waiting for the socket, -1 the
 * connection failed. */
static int
conn_flush(struct httpd_conn *c)
{
    struct iovec iov[2];
    struct msghdr m;
    size_t k;
    ssize_t n;

    if (c->bev != NULL)
        return evbuffer_get_length(bufferevent_get_output(c->bev)) == 0;
    for (;;) {
        k = 0;
        if (c->out_off < c->out_len) {
            iov[k].iov_base = c->out + c->out_off;
            iov[k++].iov_len = c->out_len - c->out_off;
        }
        if (c->body_off < c->body_len) {
            iov[k].iov_base = (char *)(uintptr_t)(c->body + c->body_off);
            iov[k++].iov_len = c->body_len - c->body_off;
        }
        if (k == 0)
            return 1;
        memset(&m, 0, sizeof(m));
        m.msg_iov = iov;
        m.msg_iovlen = k;
        n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        }
        k = (size_t)n;
        if (c->out_off < c->out_len) {
            size_t h = c->out_len - c->out_off;

            if (k < h) {
                c->out_off += k;
                continue;
            }
            c->out_off = c->out_len;
            k -= h;
        }
        c->body_off += k;
    }
}

/* evbuffer cleanup of a body handed over by httpd_reply_take */
static void
body_release(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    brk_free((void *)(uintptr_t)data);
}

/* Hand the queued reply to the TLS layer (which owns it from now on);
 * 0 or -1. */
static int
tls_queue(struct httpd_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    int fail = 0;

    fail |= evbuffer_add(out, c->out, c->out_len) != 0;
    if (c->body_owned != NULL && c->body_len > 0) {
        if (evbuffer_add_reference(out, c->body_owned, c->body_len,
                                   body_release, NULL) == 0)
            c->body_owned = NULL;
        else
            fail = 1;
    } else if (c->body_len > 0) {
        fail |= evbuffer_add(out, c->body, c->body_len) != 0;
    }
    c->out_off = c->out_len;
    c->body_off = c->body_len;
    return fail ? -1 : 0;
}

/*---- Requests ----*/

static const char *
reason_of(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "";
    }
}

/* Append n bytes at p; returns the end. The caller sized the buffer. */
static char *
put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, lit) put((p), (lit), sizeof(lit) - 1)

static char *
put_str(char *p, const char *s)
{
    return put(p, s, strlen(s));
}

static char *
put_uint(char *p, size_t v)
{
    char d[24];
    size_t n = sizeof(d);

    do {
        d[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    return put(p, d + n, sizeof(d) - n);
}

/* The Date header's value for now, made once a second. */
static const char *
date_now(struct httpd *h)
{
    struct timeval tv;
    struct tm tm;

    if (event_base_gettimeofday_cached(h->base, &tv) != 0)
        gettimeofday(&tv, NULL);
    if (tv.tv_sec != h->date_sec || h->date[0] == '\0') {
        h->date_sec = tv.tv_sec;
        if (gmtime_r(&h->date_sec, &tm) == NULL ||
            strftime(h->date, sizeof(h->date), "%a, %d %b %Y %H:%M:%S GMT",
                     &tm) == 0)
            h->date[0] = '\0';
    }
    return h->date;
}

/* Room for n bytes of reply head (and body) in c->out. */
static int
out_reserve(struct httpd_conn *c, size_t n)
{
    char *p;

    if (c->out_cap >= n)
        return 0;
    p = brk_realloc(c->out, n);
    if (p == NULL)
        return -1;
    c->out = p;
    c->out_cap = n;
    return 0;
}

/*
 * Queue c's reply: the status line, the fixed fields, extra (n bytes of
 * "Name: value\r\n" lines), then the body: owned (sent from where it lies,
 * then freed) or copied after the head. No body for HEAD. -1 when out of
 * memory (owned is then freed).
 */
static int
reply_queue(struct httpd_conn *c, int status, const char *ctype, const char *id,
            const char *extra, size_t nextra, const char *body, size_t len,
            char *owned, int no_body)
{
    struct httpd *h = c->l->h;
    size_t need = REPLY_HEAD_BASE + strlen(ctype) + nextra;
    char *p;

    if (status < 100 || status > 599)
        status = 500;
    if (owned == NULL && !no_body)
        need += len;
    if (out_reserve(c, need) != 0) {
        brk_free(owned);
        return -1;
    }
    p = PUT_LIT(c->out, "HTTP/1.1 ");
    p = put_uint(p, (size_t)status);
    *p++ = ' ';
    p = put_str(p, reason_of(status));
    p = PUT_LIT(p, "\r\nContent-Type: ");
    p = put_str(p, ctype);
    if (status == 204 || status == 304) {
        /* neither has a body, nor (204) a length to speak of */
        no_body = 1;
    } else {
        p = PUT_LIT(p, "\r\nContent-Length: ");
        p = put_uint(p, len);
    }
    if (id != NULL) {
        p = PUT_LIT(p, "\r\nX-Request-Id: ");
        p = put_str(p, id);
    }
    p = PUT_LIT(p, "\r\nCache-Control: no-store\r\nDate: ");
    p = put_str(p, date_now(h));
    p = PUT_LIT(p, "\r\n");
    p = put(p, extra, nextra);
    if (c->close_after)
        p = PUT_LIT(p, "Connection: close\r\n");
    else if (c->q.minor == 0)
        p = PUT_LIT(p, "Connection: keep-alive\r\n");
    p = PUT_LIT(p, "\r\n");
    c->body = NULL;
    c->body_len = c->body_off = 0;
    if (no_body) {
        brk_free(owned);
    } else if (owned != NULL) {
        c->body = c->body_owned = owned;
        c->body_len = len;
    } else if (len > 0) {
        p = put(p, body, len);
    }
    c->out_len = (size_t)(p - c->out);
    c->out_off = 0;
    c->state = CS_WRITE;
    return c->bev != NULL ? tls_queue(c) : 0;
}

/* Refuse what c is reading with status and close after the answer. */
static void
refuse(struct httpd_conn *c, int status, const char *why)
{
    const char *text = reason_of(status);
    char body[128];
    int n;

    if (c->l->per_addr_max > 0)
        conn_refused(c->l, "bad_request");
    log_debug("%s listener: request refused with %d: %s", c->l->name, status,
              why);
    n = snprintf(body, sizeof(body), "%s\n", text[0] ? text : "Refused");
    c->close_after = 1;
    reading_set(c, 0);
    if (reply_queue(c, status, "text/plain; charset=utf-8", NULL, "", 0, body,
                    (size_t)n, NULL, 0) != 0) {
        conn_kill(c);
        return;
    }
    c->again = 1;
}

/* The request whole in c's buffer: hand it to the listener's handler. */
static void
dispatch(struct httpd_conn *c, const char *body, size_t body_len)
{
    struct httpd_listener *l = c->l;
    struct httpd *h = l->h;
    struct httpd_req *r = &c->r;
    char *t = c->in + c->q.target.off, *qm;
    unsigned char rnd[8];
    unsigned i;

    /* the request line's SP after the target, each field's CR (or OWS)
     * after its value: the parser is done with them */
    t[c->q.target.len] = '\0';
    qm = memchr(t, '?', c->q.target.len);
    if (qm != NULL)
        *qm = '\0';
    for (i = 0; i < c->q.nfields; i++)
        c->in[c->q.fields[i].value.off + c->q.fields[i].value.len] = '\0';
    r->conn = c;
    r->listener = l;
    r->route = "other";
    r->path = t;
    r->query = qm != NULL ? qm + 1 : NULL;
    r->body = body_len > 0 ? body : NULL;
    r->body_len = body_len;
    r->method = (int)c->q.method;
    r->nextra = 0;
    clock_gettime(CLOCK_MONOTONIC, &r->start);
    if (h->rnd_left < sizeof(rnd)) {
        if (RAND_bytes(h->rnd, sizeof(h->rnd)) != 1)
            memset(h->rnd, 0, sizeof(h->rnd));
        h->rnd_left = sizeof(h->rnd);
    }
    h->rnd_left -= sizeof(rnd);
    memcpy(rnd, h->rnd + h->rnd_left, sizeof(rnd));
    codec_hex_encode(rnd, sizeof(rnd), r->id);
    c->state = CS_SERVE;
    evtimer_del(c->deadline);
    l->inflight++;
    h->inflight++;
    update_gauge(l, 1);
    l->handler(r, l->arg);
}

/* "HTTP/1.1 100 Continue": the client waits for it before the body. */
static void
send_continue(struct httpd_conn *c)
{
    static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";

    c->continued = 1;
    if (c->bev != NULL)
        bufferevent_write(c->bev, line, sizeof(line) - 1);
    else
        /* a full socket buffer this early: the client sends anyway
         * after its own wait */
        (void)send(c->fd, line, sizeof(line) - 1, MSG_NOSIGNAL);
}

/* The head of c's request is whole: check what the server decides
 * itself and get ready for the body. 0, or -1 when refused. */
static int
head_done(struct httpd_conn *c)
{
    struct httpd_listener *l = c->l;

    if (c->q.method == HTTP1_M_OTHER) {
        refuse(c, 501, "method");
        return -1;
    }
    if (c->q.framing == HTTP1_BODY_LENGTH) {
        /* the buffer grows as the body arrives (in_room), not on the
         * client's word */
        if (c->q.length > l->max_body) {
            refuse(c, 413, "declared body over the limit");
            return -1;
        }
    } else if (c->q.framing == HTTP1_BODY_CHUNKED) {
        http1_dechunk_init(&c->dc, l->max_body, &req_limits);
    }
    c->state = CS_BODY;
    return 0;
}

static void on_tls_notify(evutil_socket_t fd, short what, void *arg);

/*
 * Send c's close_notify, then a FIN once it is out: the client's reads
 * end cleanly while the server goes on reading. The first SSL_shutdown
 * sends the alert. Only when the socket had no room for it is it called
 * again, once writable (within the linger deadline), and then it only
 * resends the alert: reads in between send nothing. Called once the
 * alert is out it would read for the client's close_notify and fail on
 * the data before it; that is left to the bufferevent's reads.
 */
static void
tls_notify(struct httpd_conn *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    int rc, e;

    ERR_clear_error();
    rc = SSL_shutdown(ssl);
    e = rc < 0 ? SSL_get_error(ssl, rc) : SSL_ERROR_NONE;
    ERR_clear_error();
    if (e == SSL_ERROR_WANT_WRITE) {
        if (c->wev == NULL)
            c->wev = event_new(c->l->h->base, fd, EV_WRITE, on_tls_notify, c);
        if (c->wev == NULL || event_add(c->wev, NULL) != 0)
            conn_kill(c);
        return;
    }
    if (rc < 0 || fd < 0) {
        conn_kill(c);
        return;
    }
    if (rc == 1) {
        /* the client's close_notify came first: both sides are done */
        conn_kill(c);
        return;
    }
    (void)shutdown(fd, SHUT_WR);
}

static void
on_tls_notify(evutil_socket_t fd, short what, void *arg)
{
    struct httpd_conn *c = arg;

    (void)fd;
    (void)what;
    if (!c->dead && c->state == CS_LINGER)
        tls_notify(c);
}

/*
 * The lingering close of a TLS connection whose final reply the TLS layer
 * has written out: close_notify and FIN (tls_notify), then what the
 * client still sends is decrypted and thrown away (tls_discard) until its
 * close_notify, its FIN, LINGER_MAX or the linger deadline. The input
 * is emptied on every read rather than bounded by a read watermark (one
 * on a bufferevent_openssl has been seen to spin in libevent 2.1).
 */
static void
tls_linger(struct httpd_conn *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

    if (c->eof) {
        /* nothing more can come; answer a clean close in kind */
        if (SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN) {
            ERR_clear_error();
            (void)SSL_shutdown(ssl);
            ERR_clear_error();
        }
        conn_kill(c);
        return;
    }
    c->state = CS_LINGER;
    c->lingered = 0;
    deadline_arm(c, c->l->h->linger_ms);
    reading_set(c, 1);
    /* what was decrypted before the reply left counts as lingered */
    tls_discard(c);
    if (!c->dead)
        tls_notify(c);
}

/* c's reply has left: close (after a linger), or get ready for the next
 * request, whose first bytes may be read already. */
static void
reply_written(struct httpd_conn *c)
{
    char *p;

    brk_free(c->body_owned);
    c->body_owned = NULL;
    c->body = NULL;
    c->body_len = c->body_off = 0;
    c->out_len = c->out_off = 0;
    if (c->out_cap > OUT_KEEP) {
        /* a large copied reply's room is not kept for an idle connection */
        brk_free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    if (c->close_after) {
        /* closing with unread input would reset the connection and could
         * destroy the reply before the client reads it: stop sending,
         * read until the client closes, for a bounded time and size */
        if (c->bev != NULL) {
            tls_linger(c);
            return;
        }
        if (c->eof || shutdown(c->fd, SHUT_WR) != 0) {
            conn_kill(c);
            return;
        }
        c->state = CS_LINGER;
        c->lingered = 0;
        reading_set(c, 1);
        deadline_arm(c, c->l->h->linger_ms);
        return;
    }
    if (c->req_len < c->in_len)
        memmove(c->in, c->in + c->req_len, c->in_len - c->req_len);
    c->in_len -= c->req_len;
    c->req_len = 0;
    if (c->in_cap > IN_INITIAL && c->in_len <= IN_INITIAL) {
        /* a large request's buffer is not kept for an idle connection */
        p = brk_realloc(c->in, IN_INITIAL);
        if (p != NULL) {
            c->in = p;
            c->in_cap = IN_INITIAL;
        }
    }
    c->state = CS_HEAD;
    http1_req_init(&c->q, &req_limits);
    c->continued = 0;
    if (c->in_len == 0 && c->eof) {
        conn_kill(c);
        return;
    }
    deadline_arm(c, c->l->h->request_ms);
    c->again = 1;
}

/* One step of c's state machine; sets c->again when it should be called
 * once more. */
static void
conn_step(struct httpd_conn *c)
{
    const char *body;
    enum http1_ev ev;
    int k;

    if (c->dead)
        return;
    if (c->bev != NULL && (c->state == CS_HEAD || c->state == CS_BODY))
        tls_pull(c);
    switch (c->state) {
    case CS_SERVE:
    case CS_LINGER:
        return;
    case CS_WRITE:
        k = conn_flush(c);
        if (k < 0) {
            conn_kill(c);
        } else if (k == 0) {
            writing_set(c, 1);
            deadline_arm(c, c->l->h->write_ms);
        } else {
            writing_set(c, 0);
            reply_written(c);
        }
        return;
    case CS_HEAD:
        ev = http1_req_head(&c->q, c->in, c->in_len);
        if (ev == HTTP1_ERROR) {
            refuse(c, http1_req_status(c->q.why), http1_strwhy(c->q.why));
            return;
        }
        if (ev != HTTP1_HEAD) {
            if (c->eof)
                conn_kill(c);
            else if (c->in_len == c->in_cap && in_room(c) != 0)
                refuse(c, 431, "head over the limit");
            else
                reading_set(c, 1);
            return;
        }
        /* RFC 9112 3.2: an HTTP/1.1 request names its Host */
        if (c->q.minor == 1 && !c->q.has_host) {
            refuse(c, 400, "no Host");
            return;
        }
        if (head_done(c) != 0)
            return;
        break;
    case CS_BODY:
        break;
    }
    /* CS_BODY */
    body = c->in + c->q.head_len;
    switch (c->q.framing) {
    case HTTP1_BODY_LENGTH:
        if (c->in_len - c->q.head_len < c->q.length)
            goto more;
        c->req_len = c->q.head_len + (size_t)c->q.length;
        dispatch(c, body, (size_t)c->q.length);
        return;
    case HTTP1_BODY_CHUNKED:
        ev = http1_dechunk(&c->dc, c->in + c->q.head_len,
                           c->in_len - c->q.head_len);
        if (ev == HTTP1_ERROR) {
            refuse(c, http1_req_status(c->dc.why), http1_strwhy(c->dc.why));
            return;
        }
        if (ev != HTTP1_DONE) {
            if (c->in_len == c->in_cap && in_room(c) != 0) {
                refuse(c, 413, "chunked body over the limit");
                return;
            }
            goto more;
        }
        c->req_len = c->q.head_len + c->dc.in;
        dispatch(c, body, (size_t)c->dc.out);
        return;
    default:
        c->req_len = c->q.head_len;
        dispatch(c, NULL, 0);
        return;
    }
more:
    if (c->eof) {
        conn_kill(c);
        return;
    }
    if (c->q.expect_continue && !c->continued && c->q.minor == 1)
        send_continue(c);
    reading_set(c, 1);
}

/* Run c's state machine until it waits; free c if it died meanwhile and
 * no handler holds its request. Handlers replying at once re-enter here:
 * they only mark the machine to step again. */
static void
conn_run(struct httpd_conn *c)
{
    if (c->busy) {
        c->again = 1;
        return;
    }
    c->busy = 1;
    do {
        c->again = 0;
        conn_step(c);
    } while (c->again && !c->dead);
    c->busy = 0;
    if (c->dead && c->state != CS_SERVE)
        conn_free(c);
}

/*---- Replies and the request's parts ----*/

/* The reply, with body copied, or taken when owned is set (sent from
 * where it lies and freed once written). */
static void
reply_send(struct httpd_req *r, int status, const char *content_type,
           const char *body, size_t len, char *owned)
{
    struct httpd_conn *c = r->conn;
    struct httpd_listener *l = c->l;
    struct httpd *h;
    struct timespec now;
    char labels[128], code[BRK_DEC_MAX];
    double secs;

    if (l == NULL) {
        /* the server was freed while this request was held */
        brk_free(owned);
        conn_release(c);
        return;
    }
    h = l->h;
    if (c->state != CS_SERVE) {
        log_error("%s listener: a second reply to request %s ignored", l->name,
                  r->id);
        brk_free(owned);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    secs = (double)(now.tv_sec - r->start.tv_sec) +
           (double)(now.tv_nsec - r->start.tv_nsec) / 1e9;
    brk_dec(code, status);
    metrics_inc(METRICS_HTTP_REQUESTS,
                metrics_labels(labels, sizeof(labels), "listener", l->name,
                               "route", r->route, "status", code, NULL));
    metrics_observe(METRICS_HTTP_SECONDS,
                    metrics_labels(labels, sizeof(labels), "listener", l->name,
                                   "route", r->route, NULL),
                    secs);
    l->inflight--;
    h->inflight--;
    update_gauge(l, -1);
    if (!c->q.keep_alive || h->draining)
        c->close_after = 1;
    if (c->dead) {
        /* the client is gone */
        brk_free(owned);
    } else if (reply_queue(c, status, content_type, r->id, r->extra, r->nextra,
                           body, len, owned,
                           c->q.method == HTTP1_M_HEAD) != 0) {
        c->dead = 1;
    }
    if (c->dead)
        c->state = CS_HEAD; /* no handler holds it: conn_run frees it */
    conn_run(c);
    maybe_drained(h);
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
    return r->path;
}

const char *
httpd_raw_query(const struct httpd_req *r)
{
    return r->query;
}

const char *
httpd_method(const struct httpd_req *r)
{
    switch (r->method) {
    case HTTP1_M_GET:
        return "GET";
    case HTTP1_M_POST:
        return "POST";
    case HTTP1_M_HEAD:
        return "HEAD";
    case HTTP1_M_PUT:
        return "PUT";
    case HTTP1_M_DELETE:
        return "DELETE";
    default:
        return "OTHER";
    }
}

size_t
httpd_body_len(const struct httpd_req *r)
{
    return r->body_len;
}

const char *
httpd_body(struct httpd_req *r)
{
    return r->body;
}

const char *
httpd_header_next(const struct httpd_req *r, const char *name, size_t *pos)
{
    const struct httpd_conn *c = r->conn;
    const struct http1_field *f;
    size_t n = strlen(name);

    while (*pos < c->q.nfields) {
        f = &c->q.fields[(*pos)++];
        if (f->name.len == n && strncasecmp(c->in + f->name.off, name, n) == 0)
            return c->in + f->value.off;
    }
    return NULL;
}

const char *
httpd_header(const struct httpd_req *r, const char *name)
{
    size_t pos = 0;

    return httpd_header_next(r, name, &pos);
}

enum brk_err
httpd_add_header(struct httpd_req *r, const char *name, const char *value)
{
    size_t nn = strlen(name), nv = strlen(value), i;
    char *p;

    if (nn == 0)
        return BRK_ERR_INVAL;
    for (i = 0; i < nn; i++)
        if (!http1_is_tchar((unsigned char)name[i]))
            return BRK_ERR_INVAL;
    for (i = 0; i < nv; i++)
        if (((unsigned char)value[i] < 0x20 && value[i] != '\t') ||
            value[i] == 0x7f)
            return BRK_ERR_INVAL;
    if (nn + nv + 4 > sizeof(r->extra) - r->nextra)
        return BRK_ERR_TOOBIG;
    p = r->extra + r->nextra;
    p = put(p, name, nn);
    p = PUT_LIT(p, ": ");
    p = put(p, value, nv);
    p = PUT_LIT(p, "\r\n");
    r->nextra = (size_t)(p - r->extra);
    return BRK_OK;
}

const struct sockaddr *
httpd_peer(const struct httpd_req *r, size_t *len)
{
    const struct httpd_conn *c = r->conn;

    if (c->peerlen == 0 ||
        (c->peer.ss_family != AF_INET && c->peer.ss_family != AF_INET6))
        return NULL;
    *len = c->peerlen;
    return (const struct sockaddr *)&c->peer;
}

/*---- Listeners ----*/

static void
on_resume(evutil_socket_t fd, short what, void *arg)
{
    struct httpd_listener *l = arg;

    (void)fd;
    (void)what;
    if (l->lev != NULL && !l->full)
        evconnlistener_enable(l->lev);
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
    struct httpd_listener *l = arg;
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};

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
 * address.
 */
static enum brk_err
listener_limits(struct httpd_listener *l, const char *name, size_t group)
{
    struct rlimit rl;
    size_t nofile = 1024;

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
    return BRK_OK;
}

/* Serve the listening socket fd (consumed on every path) as listener
 * name on h. BRK_ERR_TOOBIG past the table, BRK_ERR_NOMEM. */
static enum brk_err
listener_start(struct httpd *h, const char *name, int fd, size_t group,
               size_t max_body, httpd_handler *handler, void *arg,
               const char *where)
{
    struct httpd_listener *l;

    if (h->nlisteners == MAX_LISTENERS) {
        close(fd);
        return BRK_ERR_TOOBIG;
    }
    l = &h->listeners[h->nlisteners];
    memset(l, 0, sizeof(*l));
    l->h = h;
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->handler = handler;
    l->arg = arg;
    /* above our own limits, so the handler sees, logs and counts */
    l->max_body = max_body * 4 + 4096;
    l->resume = evtimer_new(h->base, on_resume, l);
    l->lev = evconnlistener_new(h->base, on_accept, l, LEV_OPT_CLOSE_ON_FREE,
                                -1, fd);
    if (l->lev == NULL)
        close(fd);
    if (l->resume == NULL || l->lev == NULL ||
        listener_limits(l, name, group) != BRK_OK) {
        if (l->resume != NULL)
            event_free(l->resume);
        if (l->lev != NULL)
            evconnlistener_free(l->lev);
        cache_free(l->per_addr);
        memset(l, 0, sizeof(*l));
        return BRK_ERR_NOMEM;
    }
    evconnlistener_set_error_cb(l->lev, on_accept_error);
    h->nlisteners++;
    if (l->per_addr_max > 0)
        log_info("%s listener on %s:%d (at most %zu connections, %zu per "
                 "client address)",
                 name, where, httpd_listener_port(h, name), l->max_conns,
                 l->per_addr_max);
    else
        log_info("%s listener on %s:%d (at most %zu connections)", name, where,
                 httpd_listener_port(h, name), l->max_conns);
    return BRK_OK;
}

/* One socket bound to ai with port, listening; in a SO_REUSEPORT group
 * when group is set. */
static int
bind_socket(const struct evutil_addrinfo *ai, int port, int group)
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
        (group &&
         setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0) ||
        bind(fd, (struct sockaddr *)&ss, (socklen_t)ai->ai_addrlen) != 0 ||
        listen(fd, SOMAXCONN) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/*
 * n listening sockets on hostport, in one SO_REUSEPORT group when group
 * is set; port 0 picks one port for all. Returns BRK_OK with fds[0..n)
 * (owned), BRK_ERR_CONFIG, BRK_ERR_IO with errno set by the failing call.
 */
static enum brk_err
bind_sockets(const char *hostport, size_t n, int group, int *fds)
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
        fds[i] = bind_socket(ai, port, group);
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

/* A SO_REUSEPORT group (see httpd.h). */
enum brk_err
httpd_bind_group(const char *hostport, size_t n, int *fds)
{
    return bind_sockets(hostport, n, 1, fds);
}

/*
 * Bind a listener (see httpd.h). Returns BRK_OK, BRK_ERR_CONFIG for a bad
 * address, BRK_ERR_IO when binding fails, BRK_ERR_TOOBIG past the table.
 */
enum brk_err
httpd_listen(struct httpd *h, const char *name, const char *hostport,
             size_t max_body, httpd_handler *handler, void *arg)
{
    char host[256];
    int port, fd;
    enum brk_err err;

    if (h->nlisteners == MAX_LISTENERS)
        return BRK_ERR_TOOBIG;
    if (config_parse_listen(hostport, host, sizeof(host), &port, 1))
        return BRK_ERR_CONFIG;
    err = bind_sockets(hostport, 1, 0, &fd);
    if (err)
        return err;
    return listener_start(h, name, fd, 1, max_body, handler, arg, host);
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
    return listener_start(h, name, fd, group, max_body, handler, arg,
                          "a shared socket, port");
}

int
httpd_listener_port(const struct httpd *h, const char *name)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    size_t i;

    for (i = 0; i < h->nlisteners; i++) {
        if (strcmp(h->listeners[i].name, name) != 0 ||
            h->listeners[i].lev == NULL)
            continue;
        if (getsockname(evconnlistener_get_fd(h->listeners[i].lev),
                        (struct sockaddr *)&ss, &len) != 0)
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

/* Stop accepting; close the connections waiting for a request; the others
 * close after their reply (see reply_send). */
void
httpd_drain(struct httpd *h, long timeout_ms, void (*done)(void *), void *arg)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    struct httpd_conn *c, *next;
    size_t i;

    if (h->draining)
        return;
    h->draining = 1;
    h->drain_done = done;
    h->drain_arg = arg;
    /* before any connection is closed: the last one may end the drain */
    h->drain_timer = evtimer_new(h->base, on_drain_timeout, h);
    if (h->drain_timer != NULL)
        evtimer_add(h->drain_timer, &tv);
    log_info("stopped accepting; %u request(s) in flight", h->inflight);
    for (i = 0; i < h->nlisteners; i++) {
        struct httpd_listener *l = &h->listeners[i];

        if (l->resume != NULL)
            event_del(l->resume);
        if (l->lev != NULL) {
            evconnlistener_free(l->lev);
            l->lev = NULL;
        }
        for (c = l->conns; c != NULL; c = next) {
            next = c->next;
            if (c->state == CS_HEAD && c->in_len == 0)
                conn_kill(c);
        }
    }
    maybe_drained(h);
}

unsigned
httpd_inflight(const struct httpd *h)
{
    return h->inflight;
}

/* Close everything (see httpd.h); a connection whose request a handler
 * holds is released by that handler's reply. */
void
httpd_free(struct httpd *h)
{
    struct httpd_conn *c;
    size_t i;

    if (h == NULL)
        return;
    h->drain_done = NULL;
    for (i = 0; i < h->nlisteners; i++) {
        struct httpd_listener *l = &h->listeners[i];

        if (l->lev != NULL)
            evconnlistener_free(l->lev);
        l->lev = NULL;
        if (l->resume != NULL)
            event_free(l->resume);
        while ((c = l->conns) != NULL) {
            if (c->state != CS_SERVE) {
                conn_free(c);
                continue;
            }
            /* a handler holds its request and may still answer it (a
             * call cancelled at exit): the connection outlives the
             * server until then, with nothing to send to */
            conn_unlink(c);
            c->l = NULL;
        }
        cache_free(l->per_addr);
        httpd_tls_free(l->tls);
    }
    if (h->drain_timer != NULL)
        event_free(h->drain_timer);
    brk_free(h);
}
