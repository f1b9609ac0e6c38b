/*
 * evhttp listeners (see httpd.h). Every reply goes through httpd_reply,
 * which also counts the metric and the in-flight gauge. A listener may
 * speak TLS through libevent_openssl bufferevents.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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

#include "codec.h"
#include "config.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"

#define MAX_LISTENERS  4
#define HEADERS_MAX    (64 * 1024)
#define READ_TIMEOUT_S 30
/* accept() out of descriptors: pause the listener this long */
#define ACCEPT_PAUSE_MS 200
/* Warn when the certificate has fewer days left than this. */
#define TLS_EXPIRY_WARN_DAYS 14
/* TLS 1.2 suites with forward secrecy and AEAD; 1.3 keeps its defaults. */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"

struct httpd_tls {
    SSL_CTX *ctx;
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
};

static void accept_owner_set(struct httpd_listener *l, int on);

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
        accept_owner_set(&h->listeners[i], 0);
        if (h->listeners[i].resume != NULL)
            event_free(h->listeners[i].resume);
        evhttp_free(h->listeners[i].http);
        httpd_tls_free(h->listeners[i].tls);
    }
    if (h->drain_timer != NULL)
        event_free(h->drain_timer);
    brk_free(h);
}

static void
update_gauge(struct httpd_listener *l)
{
    char labels[64];

    metrics_set(
        METRICS_INFLIGHT,
        metrics_labels(labels, sizeof(labels), "listener", l->name, NULL),
        (double)l->inflight);
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

static void
dispatch(struct evhttp_request *req, void *arg)
{
    struct httpd_listener *l = arg;
    struct httpd_req *r;
    unsigned char rnd[8];
    struct evhttp_connection *evcon;

    if (l->tls != NULL) {
        /* fail closed: a connection that somehow is not TLS (see
         * tls_bevcb) is never served */
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
    r->req = req;
    r->listener = l;
    r->route = "other";
    clock_gettime(CLOCK_MONOTONIC, &r->start);
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        memset(rnd, 0, sizeof(rnd));
    codec_hex_encode(rnd, sizeof(rnd), r->id);
    l->inflight++;
    l->h->inflight++;
    update_gauge(l);
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

void
httpd_reply(struct httpd_req *r, int status, const char *content_type,
            const char *body, size_t len)
{
    struct httpd_listener *l = r->listener;
    struct evkeyvalq *hdr = evhttp_request_get_output_headers(r->req);
    struct evbuffer *buf = evhttp_request_get_output_buffer(r->req);
    struct timespec now;
    char labels[128], code[8];
    double secs;

    evhttp_add_header(hdr, "Content-Type", content_type);
    evhttp_add_header(hdr, "X-Request-Id", r->id);
    evhttp_add_header(hdr, "Cache-Control", "no-store");
    if (l->h->draining) {
        /* finish only once the reply has left: libevent closes the
         * connection after writing it */
        struct evhttp_connection *evcon = evhttp_request_get_connection(r->req);

        evhttp_add_header(hdr, "Connection", "close");
        if (evcon != NULL) {
            evhttp_connection_set_closecb(evcon, on_conn_closed, l->h);
            l->h->closing++;
        }
    }
    if (len > 0)
        evbuffer_add(buf, body, len);
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
    update_gauge(l);
    brk_free(r);
    maybe_drained(l->h);
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
    if (l->sock != NULL)
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
    l = &h->listeners[h->nlisteners];
    memset(l, 0, sizeof(*l));
    l->h = h;
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->handler = handler;
    l->arg = arg;
    l->http = evhttp_new(h->base);
    if (l->http == NULL)
        return BRK_ERR_NOMEM;
    /* above our own limits, so the handler sees, logs and counts */
    evhttp_set_max_body_size(l->http, (ev_ssize_t)(max_body * 4 + 4096));
    evhttp_set_max_headers_size(l->http, HEADERS_MAX);
    evhttp_set_timeout(l->http, READ_TIMEOUT_S);
    evhttp_set_allowed_methods(
        l->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                     EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                     EVHTTP_REQ_PATCH);
    evhttp_set_gencb(l->http, dispatch, l);
    l->sock = evhttp_bind_socket_with_handle(l->http, host, (ev_uint16_t)port);
    if (l->sock == NULL) {
        evhttp_free(l->http);
        l->http = NULL;
        return BRK_ERR_IO;
    }
    l->resume = evtimer_new(h->base, on_resume, l);
    if (l->resume == NULL) {
        evhttp_free(l->http);
        l->http = NULL;
        return BRK_ERR_NOMEM;
    }
    accept_owner_set(l, 1);
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(l->sock),
                                on_accept_error);
    h->nlisteners++;
    log_info("%s listener on %s:%d", name, host, httpd_listener_port(h, name));
    return BRK_OK;
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

/* evhttp's constructor of each accepted connection's bufferevent. */
static struct bufferevent *
tls_bevcb(struct event_base *base, void *arg)
{
    struct httpd_listener *l = arg;
    struct bufferevent *bev;
    SSL *ssl;

    ssl = SSL_new(l->tls->ctx);
    if (ssl == NULL) {
        /* evhttp falls back to a plain bufferevent, which dispatch
         * refuses */
        ERR_clear_error();
        return NULL;
    }
    /* on failure libevent may already have freed ssl with the
     * half-built bufferevent: freeing it here could be a double free */
    bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        return NULL;
    /* clients that close without close_notify are routine */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
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
    evhttp_set_bevcb(l->http, tls_bevcb, l);
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
