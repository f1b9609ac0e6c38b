/*
 * Tests for upclient.c against real sockets: a scripted upstream on
 * 127.0.0.1 in this process (plain and TLS, on the client's event_base)
 * that answers by Content-Length, chunked, close-delimited, slowly, with
 * garbage or conflicting framing, closes kept-alive connections, or never
 * answers. Counts accepted connections to check keep-alive and the one
 * retry, and that a call's memory is reused without a trace of the call
 * before.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "broker.h"
#include "log.h"
#include "upclient.h"
#include "wecom_api.h"

#define MAX_SCONNS 64
#define BODY_MAX   (512 * 1024)

/*---- Scripted upstream ----*/

struct fx;

struct sconn {
    struct fx *fx;
    struct bufferevent *bev;
    struct event *timer;
    char path[256];
    int close_after; /* close once the reply is written */
    int gone;
    /* a reply sent in pieces */
    char *pending;
    size_t npending, off, piece;
};

struct fx {
    struct event_base *base;
    struct evconnlistener *lis, *tls_lis;
    SSL_CTX *tls_good, *tls_bad, *tls_use;
    char ca_path[64];
    int port, tls_port;
    char origin[64], tls_origin[64];
    struct upclient *c;
    struct sconn *conns[MAX_SCONNS];
    int nconns;
    int accepts;
    int requests;
    int resumed;   /* requests on a TLS connection that resumed a session */
    int drop_next; /* close the connection of the next request unanswered */
    char last_req[4096];
    size_t last_req_len;
};

static void
sconn_free(struct sconn *s)
{
    if (s->gone)
        return;
    s->gone = 1;
    bufferevent_free(s->bev);
    if (s->timer != NULL)
        event_del(s->timer);
}

static void
s_write(struct sconn *s, const char *p, size_t n)
{
    bufferevent_write(s->bev, p, n);
}

static void
s_writes(struct sconn *s, const char *p)
{
    s_write(s, p, strlen(p));
}

static void
s_piece(evutil_socket_t fd, short what, void *arg)
{
    struct sconn *s = arg;
    struct timeval tv = {0, 2000};
    size_t n;

    (void)fd;
    (void)what;
    if (s->gone)
        return;
    n = s->npending - s->off < s->piece ? s->npending - s->off : s->piece;
    s_write(s, s->pending + s->off, n);
    s->off += n;
    if (s->off < s->npending)
        evtimer_add(s->timer, &tv);
    else if (s->close_after)
        s->close_after = 2;
}

static void
s_later(evutil_socket_t fd, short what, void *arg)
{
    struct sconn *s = arg;

    (void)fd;
    (void)what;
    if (!s->gone)
        s_writes(s, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
}

static void
s_reply(struct sconn *s, const char *path)
{
    struct fx *fx = s->fx;
    static char big[BODY_MAX];
    char head[128];
    struct timeval tv = {0, 0};
    size_t i, n;

    if (strcmp(path, "/len") == 0) {
        s_writes(s, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    } else if (strcmp(path, "/chunked") == 0) {
        s_writes(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n");
    } else if (strcmp(path, "/close") == 0) {
        s_writes(s, "HTTP/1.1 200 OK\r\nContent-Type: x/y\r\n\r\nto the end");
        s->close_after = 2;
    } else if (strcmp(path, "/trickle") == 0) {
        /* a chunked reply of 2000 pattern bytes, 7 bytes per tick */
        n = (size_t)snprintf(big, sizeof(big),
                             "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                             "chunked\r\n\r\n7d0\r\n");
        for (i = 0; i < 2000; i++)
            big[n + i] = (char)('a' + i % 26);
        n += 2000;
        n += (size_t)snprintf(big + n, sizeof(big) - n, "\r\n0\r\n\r\n");
        s->pending = malloc(n);
        memcpy(s->pending, big, n);
        s->npending = n;
        s->piece = 7;
        s->timer = evtimer_new(fx->base, s_piece, s);
        evtimer_add(s->timer, &tv);
    } else if (strcmp(path, "/big") == 0) {
        /* a Content-Length over every test's max_body */
        s_writes(s, "HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n");
        memset(big, 'b', 300000);
        s_write(s, big, 300000);
    } else if (strcmp(path, "/bigchunked") == 0) {
        s_writes(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        memset(big, 'b', 4096);
        for (i = 0; i < 64; i++) {
            s_writes(s, "1000\r\n");
            s_write(s, big, 4096);
            s_writes(s, "\r\n");
        }
        s_writes(s, "0\r\n\r\n");
    } else if (strcmp(path, "/many") == 0) {
        n = 256 * 1024;
        for (i = 0; i < n; i++)
            big[i] = (char)((i * 131) ^ (i >> 9));
        snprintf(head, sizeof(head),
                 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
        s_writes(s, head);
        s_write(s, big, n);
    } else if (strcmp(path, "/garbage") == 0) {
        s_writes(s, "<html><body>system busy</body></html>\r\n\r\n");
    } else if (strcmp(path, "/both") == 0) {
        s_writes(s,
                 "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
    } else if (strcmp(path, "/truncated") == 0) {
        s_writes(s, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello");
        s->close_after = 2;
    } else if (strcmp(path, "/status500") == 0) {
        s_writes(s,
                 "HTTP/1.1 500 Oops\r\nContent-Length: 9\r\n\r\n{\"e\":500}");
    } else if (strcmp(path, "/extra") == 0) {
        /* bytes after the response: the connection is out of step */
        s_writes(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK");
    } else if (strcmp(path, "/http10") == 0) {
        s_writes(s, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
    } else if (strcmp(path, "/slow") == 0) {
        tv.tv_usec = 150000;
        s->timer = evtimer_new(fx->base, s_later, s);
        evtimer_add(s->timer, &tv);
    } else if (strcmp(path, "/never") == 0) {
        /* nothing, ever */
    } else {
        s_writes(s, "HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n");
    }
}

/* Requests are read whole (head and Content-Length body), one at a time. */
static void
s_readcb(struct bufferevent *bev, void *arg)
{
    struct sconn *s = arg;
    struct fx *fx = s->fx;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer_ptr end;
    char *req, *cl, *sp;
    size_t hlen, blen = 0, total;

    for (;;) {
        end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (end.pos < 0)
            return;
        hlen = (size_t)end.pos + 4;
        req = malloc(hlen + 1);
        evbuffer_copyout(in, req, hlen);
        req[hlen] = '\0';
        cl = strstr(req, "Content-Length: ");
        if (cl != NULL)
            blen = (size_t)strtoul(cl + 16, NULL, 10);
        total = hlen + blen;
        free(req);
        if (evbuffer_get_length(in) < total)
            return;
        fx->last_req_len =
            total < sizeof(fx->last_req) - 1 ? total : sizeof(fx->last_req) - 1;
        evbuffer_remove(in, fx->last_req, fx->last_req_len);
        fx->last_req[fx->last_req_len] = '\0';
        evbuffer_drain(in, total - fx->last_req_len);
        fx->requests++;
        if (bufferevent_openssl_get_ssl(bev) != NULL &&
            SSL_session_reused(bufferevent_openssl_get_ssl(bev)))
            fx->resumed++;
        if (fx->drop_next) {
            fx->drop_next = 0;
            sconn_free(s);
            return;
        }
        sp = strchr(fx->last_req, ' ');
        snprintf(s->path, sizeof(s->path), "%s", sp != NULL ? sp + 1 : "");
        s->path[strcspn(s->path, " ?")] = '\0';
        s_reply(s, s->path);
    }
}

static void
s_writecb(struct bufferevent *bev, void *arg)
{
    struct sconn *s = arg;

    (void)bev;
    if (s->close_after == 2)
        sconn_free(s);
}

static void
s_eventcb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        sconn_free(arg);
}

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
          int salen, void *arg)
{
    struct fx *fx = arg;
    struct sconn *s = calloc(1, sizeof(*s));

    (void)sa;
    (void)salen;
    assert_non_null(s);
    assert_true(fx->nconns < MAX_SCONNS);
    s->fx = fx;
    if (l == fx->tls_lis)
        s->bev = bufferevent_openssl_socket_new(
            fx->base, fd, SSL_new(fx->tls_use), BUFFEREVENT_SSL_ACCEPTING,
            BEV_OPT_CLOSE_ON_FREE);
    else
        s->bev = bufferevent_socket_new(fx->base, fd, BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(s->bev);
    bufferevent_setcb(s->bev, s_readcb, s_writecb, s_eventcb, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    fx->conns[fx->nconns++] = s;
    fx->accepts++;
}

/* Close every server-side connection (the upstream dropping keep-alives). */
static void
close_all(struct fx *fx)
{
    int i;

    for (i = 0; i < fx->nconns; i++)
        sconn_free(fx->conns[i]);
}

/*---- A certificate for the TLS upstream ----*/

static SSL_CTX *
server_ctx(const char *san, const char *ca_out)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    X509_EXTENSION *ext;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    FILE *fp;

    assert_non_null(key);
    assert_non_null(x);
    assert_non_null(ctx);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"upstream test", -1, -1,
                               0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, key);
    ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
    if (ca_out != NULL) {
        fp = fopen(ca_out, "w");
        assert_non_null(fp);
        PEM_write_X509(fp, x);
        fclose(fp);
    }
    X509_free(x);
    EVP_PKEY_free(key);
    return ctx;
}

/*---- Client side ----*/

struct rec {
    int calls;
    int early;
    enum brk_err err;
    long status;
    int reused;
    char why[64];
    size_t nbody;
    char body[BODY_MAX];
    int chunks;
    int abort_with;
    int cancel_self;
    int free_client;
    struct upclient_call *call;
    struct fx *fx;
};

static int g_in_start;
static int g_done;

static void
on_done(const struct upclient_result *res, void *arg)
{
    struct rec *r = arg;

    r->calls++;
    g_done++;
    if (g_in_start)
        r->early = 1;
    r->err = res->err;
    r->status = res->status;
    r->reused = res->reused;
    snprintf(r->why, sizeof(r->why), "%s", res->why);
}

static int
on_data(const char *data, size_t len, void *arg)
{
    struct rec *r = arg;

    r->chunks++;
    assert_true(r->nbody + len <= BODY_MAX);
    memcpy(r->body + r->nbody, data, len);
    r->nbody += len;
    if (r->cancel_self) {
        upclient_cancel(r->call);
        g_done++;
    }
    if (r->free_client) {
        upclient_free(r->fx->c);
        r->fx->c = NULL;
        r->free_client = 0;
    }
    return r->abort_with;
}

static void
stop_loop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* Run the loop until g_done reaches target or ms pass. */
static int
run_until(struct fx *fx, int target, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    int fired = 0;
    struct event *wd = evtimer_new(fx->base, stop_loop, &fired);

    evtimer_add(wd, &tv);
    while (g_done < target && !fired)
        event_base_loop(fx->base, EVLOOP_ONCE);
    event_free(wd);
    return g_done >= target;
}

static void
run_for(struct fx *fx, long ms)
{
    run_until(fx, 1 << 30, ms);
}

static void
make_client(struct fx *fx, long timeout_ms, size_t max_body, unsigned conns)
{
    struct upclient_opts o = {timeout_ms, 0,           max_body, conns, 0,
                              0,          fx->ca_path, NULL,     0};

    assert_int_equal(upclient_new(fx->base, &o, &fx->c), BRK_OK);
}

static enum brk_err
start(struct fx *fx, const char *origin, const char *method, const char *target,
      const char *body, long want, struct rec *r)
{
    struct upclient_req q = {
        origin, method,
        target, "User-Agent: t\r\nAccept: application/json\r\n",
        body,   body != NULL ? strlen(body) : 0,
        want};
    enum brk_err err;

    r->fx = fx;
    g_in_start = 1;
    err = upclient_start(fx->c, &q, on_data, on_done, r, &r->call);
    g_in_start = 0;
    return err;
}

/* One GET to completion on the plain upstream. */
static void
get(struct fx *fx, const char *target, struct rec *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(start(fx, fx->origin, "GET", target, NULL, 200, r),
                     BRK_OK);
    assert_int_equal(r->calls, 0);
    assert_true(run_until(fx, g_done + 1, 5000));
    assert_int_equal(r->calls, 1);
    assert_int_equal(r->early, 0);
}

static struct evconnlistener *
listen_on(struct fx *fx, int *port)
{
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    struct evconnlistener *l;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l = evconnlistener_new_bind(fx->base, on_accept, fx,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
                                (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(l);
    assert_int_equal(
        getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &sl), 0);
    *port = ntohs(sin.sin_port);
    return l;
}

static int
setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    int fd;

    assert_non_null(fx);
    fx->base = event_base_new();
    assert_non_null(fx->base);
    fx->lis = listen_on(fx, &fx->port);
    fx->tls_lis = listen_on(fx, &fx->tls_port);
    snprintf(fx->origin, sizeof(fx->origin), "http://127.0.0.1:%d", fx->port);
    snprintf(fx->tls_origin, sizeof(fx->tls_origin), "https://127.0.0.1:%d",
             fx->tls_port);
    snprintf(fx->ca_path, sizeof(fx->ca_path), "/tmp/test_upclient.XXXXXX");
    fd = mkstemp(fx->ca_path);
    assert_true(fd >= 0);
    close(fd);
    fx->tls_good = server_ctx("IP:127.0.0.1", fx->ca_path);
    fx->tls_bad = server_ctx("DNS:elsewhere.invalid", NULL);
    fx->tls_use = fx->tls_good;
    g_done = 0;
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *fx = *state;
    int i;

    upclient_free(fx->c);
    for (i = 0; i < fx->nconns; i++) {
        sconn_free(fx->conns[i]);
        if (fx->conns[i]->timer != NULL)
            event_free(fx->conns[i]->timer);
        free(fx->conns[i]->pending);
        free(fx->conns[i]);
    }
    evconnlistener_free(fx->lis);
    evconnlistener_free(fx->tls_lis);
    SSL_CTX_free(fx->tls_good);
    SSL_CTX_free(fx->tls_bad);
    unlink(fx->ca_path);
    event_base_free(fx->base);
    free(fx);
    brk_alloc_fail_at(0);
    return 0;
}

#define BODY_IS(r, s)                                                          \
    do {                                                                       \
        assert_int_equal((r)->nbody, strlen(s));                               \
        assert_memory_equal((r)->body, s, strlen(s));                          \
    } while (0)

/*---- Framing ----*/

static void
test_content_length(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_client(fx, 2000, 4096, 0);
    get(fx, "/len?access_token=x", &r);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(r.status, 200);
    BODY_IS(&r, "hello");
    assert_int_equal(r.reused, 0);
}

static void
test_chunked(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_client(fx, 2000, 4096, 0);
    get(fx, "/chunked", &r);
    assert_int_equal(r.err, BRK_OK);
    BODY_IS(&r, "hello world");
}

static void
test_close_delimited(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_client(fx, 2000, 4096, 0);
    get(fx, "/close", &r);
    assert_int_equal(r.err, BRK_OK);
    BODY_IS(&r, "to the end");
    /* not kept: the next call opens another connection */
    get(fx, "/len", &r);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(r.reused, 0);
    assert_int_equal(fx->accepts, 2);
}

static void
test_trickled_reply(void **state)
{
    struct fx *fx = *state;
    struct rec r;
    size_t i;

    make_client(fx, 5000, 4096, 0);
    get(fx, "/trickle", &r);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(r.nbody, 2000);
    for (i = 0; i < 2000; i++)
        assert_int_equal(r.body[i], 'a' + i % 26);
    assert_true(r.chunks > 10);
}

static void
test_large_body_in_order(void **state)
{
    struct fx *fx = *state;
    static struct rec r;
    size_t i;

    make_client(fx, 5000, BODY_MAX, 0);
    get(fx, "/many", &r);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(r.nbody, 256 * 1024);
    for (i = 0; i < r.nbody; i++)
        if ((unsigned char)r.body[i] != (unsigned char)((i * 131) ^ (i >> 9)))
            fail_msg("byte %zu out of order", i);
}

/*---- Keep-alive ----*/

static void
test_keepalive_reused(void **state)
{
    struct fx *fx = *state;
    struct rec r;
    unsigned idle = 0;
    int i;

    make_client(fx, 2000, 4096, 0);
    for (i = 0; i < 10; i++) {
        get(fx, i % 2 ? "/len" : "/chunked", &r);
        assert_int_equal(r.err, BRK_OK);
        assert_int_equal(r.reused, i > 0);
    }
    assert_int_equal(fx->accepts, 1);
    assert_int_equal(fx->requests, 10);
    assert_int_equal(upclient_conns(fx->c, &idle), 1);
    assert_int_equal(idle, 1);
}

static void
test_idle_closed_by_upstream(void **state)
{
    struct fx *fx = *state;
    struct rec r;
    unsigned idle = 9;

    make_client(fx, 2000, 4096, 0);
    get(fx, "/len", &r);
    get(fx, "/len", &r);
    assert_int_equal(fx->accepts, 1);
    close_all(fx);
    run_for(fx, 100);
    /* the client saw the close while idle */
    assert_int_equal(upclient_conns(fx->c, &idle), 0);
    assert_int_equal(idle, 0);
    get(fx, "/len", &r);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(r.reused, 0);
    assert_int_equal(fx->accepts, 2);
}

static void
test_reused_connection_retried_once(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_client(fx, 2000, 4096, 0);
    get(fx, "/len", &r);
    /* the upstream closes the kept connection as the request arrives */
    fx->drop_next = 1;
    get(fx, "/len", &r);
    assert_int_equal(r.err, BRK_OK);
    BODY_IS(&r, "hello");
    assert_int_equal(fx->requests, 3);
    assert_int_equal(fx->accepts, 2);
}

static void
test_fresh_connection_not_retried(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_client(fx, 2000, 4096, 0);
    fx->drop_next = 1;
    get(fx, "/len", &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.nbody, 0);
    assert_int_equal(fx->requests, 1);
}

static void
test_out_of_step_connections_dropped(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_client(fx, 2000, 4096, 0);
    /* bytes after the response, and HTTP/1.0: both answered, neither kept */
    get(fx, "/extra", &r);
    assert_int_equal(r.err, BRK_OK);
    BODY_IS(&r, "ok");
    get(fx, "/http10", &r);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(r.reused, 0);
    get(fx, "/len", &r);
    assert_int_equal(r.reused, 0);
    assert_int_equal(fx->accepts, 3);
}

static void
test_max_conns_queues(void **state)
{
    struct fx *fx = *state;
    static struct rec r[5];
    int i;

    memset(r, 0, sizeof(r));
    make_client(fx, 5000, 4096, 1);
    for (i = 0; i < 5; i++)
        assert_int_equal(
            start(fx, fx->origin, "GET", "/chunked", NULL, 200, &r[i]), BRK_OK);
    assert_true(run_until(fx, 5, 5000));
    for (i = 0; i < 5; i++) {
        assert_int_equal(r[i].err, BRK_OK);
        BODY_IS(&r[i], "hello world");
    }
    assert_int_equal(fx->accepts, 1);
}

static void
test_idle_pool_bounded_and_timed(void **state)
{
    struct fx *fx = *state;
    struct upclient_opts o = {5000, 0, 4096, 0, 2, 200, fx->ca_path, NULL, 0};
    static struct rec r[5];
    unsigned idle = 0;
    int i;

    assert_int_equal(upclient_new(fx->base, &o, &fx->c), BRK_OK);
    memset(r, 0, sizeof(r));
    /* five at once: five connections, two kept */
    for (i = 0; i < 5; i++)
        assert_int_equal(
            start(fx, fx->origin, "GET", "/slow", NULL, 200, &r[i]), BRK_OK);
    assert_true(run_until(fx, 5, 3000));
    for (i = 0; i < 5; i++)
        assert_int_equal(r[i].err, BRK_OK);
    assert_int_equal(fx->accepts, 5);
    assert_int_equal(upclient_conns(fx->c, &idle), 2);
    assert_int_equal(idle, 2);
    /* idle past idle_timeout_ms: closed */
    run_for(fx, 600);
    assert_int_equal(upclient_conns(fx->c, &idle), 0);
    assert_int_equal(idle, 0);
}

static void
test_new_rejects_bad_options(void **state)
{
    struct fx *fx = *state;
    struct upclient *c = (struct upclient *)fx; /* a sentinel */
    struct upclient_opts o = {1000, 0, 4096, 0, 0, 0, NULL, NULL, 0};

    assert_int_equal(upclient_new(NULL, &o, &c), BRK_ERR_INVAL);
    assert_int_equal(upclient_new(fx->base, NULL, &c), BRK_ERR_INVAL);
    assert_int_equal(upclient_new(fx->base, &o, NULL), BRK_ERR_INVAL);
    o.timeout_ms = 0;
    assert_int_equal(upclient_new(fx->base, &o, &c), BRK_ERR_INVAL);
    o.timeout_ms = 1000;
    o.max_body = 0;
    assert_int_equal(upclient_new(fx->base, &o, &c), BRK_ERR_INVAL);
    o.max_body = 1;
    o.connect_timeout_ms = -1;
    assert_int_equal(upclient_new(fx->base, &o, &c), BRK_ERR_INVAL);
    assert_ptr_equal(c, (struct upclient *)fx);
    upclient_free(NULL);
    upclient_cancel(NULL);
    assert_int_equal(upclient_conns(NULL, NULL), 0);
}

static void
test_alloc_failures(void **state)
{
    struct fx *fx = *state;
    struct upclient_opts o = {2000, 0, 4096, 0, 0, 0, NULL, NULL, 0};
    struct upclient *c = NULL;
    unsigned long n;
    enum brk_err err;
    struct rec r;

    for (n = 1; n < 20; n++) {
        brk_alloc_fail_at(n);
        err = upclient_new(fx->base, &o, &c);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
    }
    assert_true(n > 1 && n < 20);
    fx->c = c;
    for (n = 1; n < 20; n++) {
        memset(&r, 0, sizeof(r));
        g_done = 0;
        brk_alloc_fail_at(n);
        err = start(fx, fx->origin, "GET", "/len", NULL, 200, &r);
        brk_alloc_fail_at(0);
        if (err != BRK_OK) {
            assert_int_equal(err, BRK_ERR_NOMEM);
            run_for(fx, 10);
            assert_int_equal(r.calls, 0);
            continue;
        }
        assert_true(run_until(fx, 1, 3000));
        assert_int_equal(r.calls, 1);
        if (r.err == BRK_OK)
            break;
        assert_int_equal(r.err, BRK_ERR_NOMEM);
    }
    assert_true(n > 1 && n < 20);
}

/*---- Failures ----*/

static void
test_garbage_and_bad_framing(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_client(fx, 2000, 4096, 0);
    get(fx, "/garbage", &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(r.nbody, 0);
    get(fx, "/both", &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(r.nbody, 0);
    assert_string_equal(r.why, "ambiguous framing");
    get(fx, "/truncated", &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
    assert_string_equal(r.why, "truncated");
}

static void
test_unwanted_status_sends_no_data(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_client(fx, 2000, 4096, 0);
    get(fx, "/status500", &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(r.status, 500);
    assert_int_equal(r.nbody, 0);
    /* without want_status the body is data */
    memset(&r, 0, sizeof(r));
    assert_int_equal(start(fx, fx->origin, "GET", "/status500", NULL, 0, &r),
                     BRK_OK);
    assert_true(run_until(fx, g_done + 1, 2000));
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(r.status, 500);
    BODY_IS(&r, "{\"e\":500}");
}

static void
test_never_answers_times_out(void **state)
{
    struct fx *fx = *state;
    struct rec r;
    long long t0 = brk_mono_ms(), dt;

    make_client(fx, 300, 4096, 0);
    get(fx, "/never", &r);
    dt = brk_mono_ms() - t0;
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_TIMEOUT);
    assert_true(dt >= 250 && dt < 2000);
    /* slow but in time is fine */
    get(fx, "/slow", &r);
    assert_int_equal(r.err, BRK_OK);
    BODY_IS(&r, "slow");
}

static void
test_body_too_big(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_client(fx, 5000, 4096, 0);
    get(fx, "/big", &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_TOOBIG);
    assert_int_equal(r.nbody, 0);
    get(fx, "/bigchunked", &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_TOOBIG);
    assert_true(r.nbody <= 4096);
}

static void
test_connection_refused(void **state)
{
    struct fx *fx = *state;
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    char origin[64];
    struct rec r;
    int fd;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    snprintf(origin, sizeof(origin), "http://127.0.0.1:%d",
             ntohs(sin.sin_port));
    make_client(fx, 2000, 4096, 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(start(fx, origin, "GET", "/len", NULL, 200, &r), BRK_OK);
    assert_true(run_until(fx, 1, 3000));
    close(fd);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.early, 0);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM);
}

static void
test_reader_aborts(void **state)
{
    struct fx *fx = *state;
    struct rec r1, r2;

    make_client(fx, 2000, 4096, 0);
    memset(&r1, 0, sizeof(r1));
    r1.abort_with = BRK_ERR_TOOBIG;
    assert_int_equal(start(fx, fx->origin, "GET", "/len", NULL, 200, &r1),
                     BRK_OK);
    memset(&r2, 0, sizeof(r2));
    r2.abort_with = 12345;
    assert_int_equal(start(fx, fx->origin, "GET", "/len", NULL, 200, &r2),
                     BRK_OK);
    assert_true(run_until(fx, 2, 2000));
    assert_int_equal(r1.err, BRK_ERR_TOOBIG);
    assert_int_equal(r1.status, 200);
    assert_int_equal(r2.err, BRK_ERR_UPSTREAM_BAD);
    /* a connection left mid-body is never reused */
    assert_int_equal(upclient_conns(fx->c, NULL), 0);
}

/*---- Requests as sent ----*/

static void
test_request_as_sent(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_client(fx, 2000, 4096, 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(start(fx, fx->origin, "POST", "/len?access_token=a%2B",
                           "{\"k\":1}", 200, &r),
                     BRK_OK);
    assert_true(run_until(fx, 1, 2000));
    assert_int_equal(r.err, BRK_OK);
    assert_non_null(strstr(fx->last_req, "POST /len?access_token=a%2B "
                                         "HTTP/1.1\r\n"));
    assert_non_null(strstr(fx->last_req, "\r\nHost: 127.0.0.1:"));
    assert_non_null(strstr(fx->last_req, "\r\nUser-Agent: t\r\n"));
    assert_non_null(strstr(fx->last_req, "\r\nContent-Length: 7\r\n\r\n"
                                         "{\"k\":1}"));
    get(fx, "/len", &r);
    assert_null(strstr(fx->last_req, "Content-Length"));
    assert_true(strncmp(fx->last_req, "GET /len HTTP/1.1\r\n", 19) == 0);
}

/* One call on the plain upstream started while every allocation fails:
 * BRK_OK when it needed none, then run to its end. */
static enum brk_err
start_without_alloc(struct fx *fx, const char *method, const char *target,
                    const char *body, struct rec *r)
{
    enum brk_err err;
    int target_done = g_done + 1;

    memset(r, 0, sizeof(*r));
    brk_alloc_fail_at(1);
    err = start(fx, fx->origin, method, target, body, 200, r);
    brk_alloc_fail_at(0);
    if (err == BRK_OK) {
        assert_true(run_until(fx, target_done, 5000));
        assert_int_equal(r->err, BRK_OK);
    }
    return err;
}

/*
 * A finished call's memory serves the next one: a GET on a kept-alive
 * connection allocates nothing, and its request holds nothing of the
 * longer one before; a request too large for that memory gets its own,
 * and the reusable memory stays for the calls after it.
 */
static void
test_call_memory_reused(void **state)
{
    struct fx *fx = *state;
    char target[1100], want[256], body[3001];
    struct rec r;
    int i;

    make_client(fx, 2000, 4096, 0);
    snprintf(target, sizeof(target), "/len?t=");
    memset(target + 7, 'a', 1000);
    target[1007] = '\0';
    get(fx, target, &r);
    assert_int_equal(r.err, BRK_OK);
    snprintf(want, sizeof(want),
             "GET /len?i=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
             "User-Agent: t\r\nAccept: application/json\r\n\r\n",
             fx->port);
    for (i = 0; i < 3; i++) {
        assert_int_equal(start_without_alloc(fx, "GET", "/len?i=1", NULL, &r),
                         BRK_OK);
        assert_string_equal(fx->last_req, want);
    }
    memset(body, 'b', 3000);
    body[3000] = '\0';
    assert_int_equal(start_without_alloc(fx, "POST", "/len", body, &r),
                     BRK_ERR_NOMEM);
    memset(&r, 0, sizeof(r));
    assert_int_equal(start(fx, fx->origin, "POST", "/len", body, 200, &r),
                     BRK_OK);
    assert_true(run_until(fx, g_done + 1, 5000));
    assert_int_equal(r.err, BRK_OK);
    assert_non_null(strstr(fx->last_req, "\r\n\r\nbbbb"));
    assert_int_equal(start_without_alloc(fx, "GET", "/len?i=1", NULL, &r),
                     BRK_OK);
    assert_string_equal(fx->last_req, want);
    assert_int_equal(fx->accepts, 1);
}

static void
test_bad_arguments(void **state)
{
    struct fx *fx = *state;
    static const char *const bad_origins[] = {
        "ftp://127.0.0.1", "http://",        "http://u@h",   "http://h/path",
        "http://h:0",      "http://h:65536", "http://h:x",   "http://h h",
        "http://[::1",     "http://[zz]:80", "127.0.0.1:80", "",
    };
    struct rec r;
    size_t i;

    make_client(fx, 2000, 4096, 0);
    memset(&r, 0, sizeof(r));
    for (i = 0; i < nitems(bad_origins); i++) {
        assert_int_equal(upclient_origin_ok(bad_origins[i]), 0);
        assert_int_equal(start(fx, bad_origins[i], "GET", "/", NULL, 0, &r),
                         BRK_ERR_INVAL);
    }
    assert_int_equal(upclient_origin_ok("https://qyapi.weixin.qq.com"), 1);
    assert_int_equal(upclient_origin_ok("http://[::1]:8080"), 1);
    assert_int_equal(start(fx, fx->origin, "PUT", "/", NULL, 0, &r),
                     BRK_ERR_INVAL);
    assert_int_equal(start(fx, fx->origin, "GET", "x", NULL, 0, &r),
                     BRK_ERR_INVAL);
    assert_int_equal(start(fx, fx->origin, "GET", "/a b", NULL, 0, &r),
                     BRK_ERR_INVAL);
    assert_int_equal(start(fx, fx->origin, "GET", "/a\r\nX: y", NULL, 0, &r),
                     BRK_ERR_INVAL);
    assert_int_equal(start(fx, fx->origin, "GET", "/", "body", 0, &r),
                     BRK_ERR_INVAL);
    run_for(fx, 50);
    assert_int_equal(r.calls, 0);
    assert_int_equal(fx->requests, 0);
}

/*---- Shutdown and cancel ----*/

static void
test_free_with_calls_in_flight(void **state)
{
    struct fx *fx = *state;
    struct rec r[3];
    int i;

    memset(r, 0, sizeof(r));
    make_client(fx, 5000, 4096, 0);
    for (i = 0; i < 3; i++)
        assert_int_equal(
            start(fx, fx->origin, "GET", "/never", NULL, 200, &r[i]), BRK_OK);
    run_for(fx, 100);
    assert_int_equal(fx->requests, 3);
    upclient_free(fx->c);
    fx->c = NULL;
    for (i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].err, BRK_ERR_SHUTDOWN);
    }
    run_for(fx, 100);
    assert_int_equal(g_done, 3);
}

static void
test_free_from_data_callback(void **state)
{
    struct fx *fx = *state;
    struct rec r, rn;

    make_client(fx, 5000, 4096, 0);
    memset(&r, 0, sizeof(r));
    memset(&rn, 0, sizeof(rn));
    r.free_client = 1;
    assert_int_equal(start(fx, fx->origin, "GET", "/never", NULL, 200, &rn),
                     BRK_OK);
    assert_int_equal(start(fx, fx->origin, "GET", "/trickle", NULL, 200, &r),
                     BRK_OK);
    assert_true(run_until(fx, 2, 3000));
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, BRK_ERR_SHUTDOWN);
    assert_int_equal(r.chunks, 1);
    assert_int_equal(rn.calls, 1);
    assert_int_equal(rn.err, BRK_ERR_SHUTDOWN);
    run_for(fx, 100);
    assert_int_equal(r.chunks, 1);
}

static void
test_cancel_from_data_callback(void **state)
{
    struct fx *fx = *state;
    struct rec r, r2;

    make_client(fx, 5000, 4096, 0);
    memset(&r, 0, sizeof(r));
    r.cancel_self = 1;
    assert_int_equal(start(fx, fx->origin, "GET", "/trickle", NULL, 200, &r),
                     BRK_OK);
    assert_true(run_until(fx, 1, 3000));
    run_for(fx, 100);
    assert_int_equal(r.calls, 0);
    assert_int_equal(r.chunks, 1);
    /* and from outside: nothing runs */
    memset(&r2, 0, sizeof(r2));
    assert_int_equal(start(fx, fx->origin, "GET", "/never", NULL, 200, &r2),
                     BRK_OK);
    run_for(fx, 50);
    upclient_cancel(r2.call);
    run_for(fx, 50);
    assert_int_equal(r2.calls, 0);
    assert_int_equal(upclient_conns(fx->c, NULL), 0);
}

/*---- TLS ----*/

static void
tls_get(struct fx *fx, struct rec *r)
{
    memset(r, 0, sizeof(r[0]));
    assert_int_equal(start(fx, fx->tls_origin, "GET", "/chunked", NULL, 200, r),
                     BRK_OK);
    assert_true(run_until(fx, g_done + 1, 5000));
    assert_int_equal(r->early, 0);
}

static void
test_tls(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_client(fx, 3000, 4096, 0);
    tls_get(fx, &r);
    assert_int_equal(r.err, BRK_OK);
    BODY_IS(&r, "hello world");
    tls_get(fx, &r);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(r.reused, 1);
    assert_int_equal(fx->accepts, 1);
}

/* A new connection to an origin resumes the session of the one before
 * (one full handshake per origin while it lasts). */
static void
test_tls_session_resumed(void **state)
{
    struct fx *fx = *state;
    struct rec r;
    int i;

    make_client(fx, 3000, 4096, 0);
    for (i = 0; i < 3; i++) {
        memset(&r, 0, sizeof(r));
        /* an HTTP/1.0 reply: the client keeps no connection after it */
        assert_int_equal(
            start(fx, fx->tls_origin, "GET", "/http10", NULL, 200, &r), BRK_OK);
        assert_true(run_until(fx, g_done + 1, 5000));
        assert_int_equal(r.err, BRK_OK);
        BODY_IS(&r, "ok");
        assert_int_equal(r.reused, 0);
        assert_int_equal(fx->resumed, i);
    }
    assert_int_equal(fx->accepts, 3);

    /* a handshake that fails (here a server of another name, which cannot
     * resume) leaves no session to offer: the next one is full */
    fx->tls_use = fx->tls_bad;
    memset(&r, 0, sizeof(r));
    assert_int_equal(start(fx, fx->tls_origin, "GET", "/http10", NULL, 200, &r),
                     BRK_OK);
    assert_true(run_until(fx, g_done + 1, 5000));
    assert_int_equal(r.err, BRK_ERR_UPSTREAM);
    fx->tls_use = fx->tls_good;
    memset(&r, 0, sizeof(r));
    assert_int_equal(start(fx, fx->tls_origin, "GET", "/http10", NULL, 200, &r),
                     BRK_OK);
    assert_true(run_until(fx, g_done + 1, 5000));
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(fx->resumed, 2);
}

static void
test_tls_wrong_name_refused(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    fx->tls_use = fx->tls_bad;
    make_client(fx, 3000, 4096, 0);
    tls_get(fx, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM);
    assert_int_equal(r.nbody, 0);
    assert_int_equal(fx->requests, 0);
}

static void
test_tls_untrusted_refused(void **state)
{
    struct fx *fx = *state;
    struct upclient_opts o = {3000, 0, 4096, 0, 0, 0, NULL, NULL, 0};
    struct rec r;

    /* the system's trust anchors do not know the test's certificate */
    assert_int_equal(upclient_new(fx->base, &o, &fx->c), BRK_OK);
    tls_get(fx, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM);
    assert_int_equal(fx->requests, 0);
}

/*---- Through wecom_api's data path ----*/

struct wrec {
    int calls;
    enum brk_err err;
    long status;
    size_t nbody;
    char body[64];
};

static void
on_wdone(const struct wecom_api_result *res, void *arg)
{
    struct wrec *w = arg;

    w->calls++;
    g_done++;
    w->err = res->err;
    w->status = res->http_status;
}

static int
on_wchunk(const char *data, size_t len, void *arg)
{
    struct wrec *w = arg;

    if (w->nbody + len <= sizeof(w->body)) {
        memcpy(w->body + w->nbody, data, len);
    }
    w->nbody += len;
    return 0;
}

static void
wstream(struct fx *fx, struct wecom_api *api, const char *pq, struct wrec *w)
{
    memset(w, 0, sizeof(*w));
    assert_int_equal(
        wecom_api_stream(api, "GET", pq, NULL, NULL, on_wchunk, on_wdone, w),
        BRK_OK);
    assert_true(run_until(fx, g_done + 1, 5000));
    assert_int_equal(w->calls, 1);
}

/* wecom_api_stream goes through upclient: kept-alive connections, and
 * framing curl would accept (Content-Length beside chunked) refused
 * before a byte reaches the reader. */
static void
test_wecom_api_stream_uses_upclient(void **state)
{
    struct fx *fx = *state;
    struct wecom_api_opts o = {fx->origin, 2000, 4096, 0, 0};
    struct wecom_api *api = NULL;
    struct wrec w;
    int i;

    assert_int_equal(wecom_api_new(fx->base, &o, &api), BRK_OK);
    for (i = 0; i < 5; i++) {
        wstream(fx, api, "/chunked?access_token=t", &w);
        assert_int_equal(w.err, BRK_OK);
        assert_int_equal(w.status, 200);
        assert_int_equal(w.nbody, 11);
        assert_memory_equal(w.body, "hello world", 11);
    }
    assert_int_equal(fx->accepts, 1);
    assert_non_null(strstr(fx->last_req, "\r\nUser-Agent: wecom-broker/"));
    assert_non_null(strstr(fx->last_req, "\r\nAccept: application/json\r\n"));
    wstream(fx, api, "/both", &w);
    assert_int_equal(w.err, BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(w.nbody, 0);
    wstream(fx, api, "/status500", &w);
    assert_int_equal(w.err, BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(w.status, 500);
    assert_int_equal(w.nbody, 0);
    wstream(fx, api, "/garbage", &w);
    assert_int_equal(w.err, BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(w.nbody, 0);
    /* media/upload's call: its own type, its body, the same client */
    memset(&w, 0, sizeof(w));
    assert_int_equal(wecom_api_stream_body(api, "/len?access_token=t",
                                           "Content-Type: x/y; b=1", "ab\0c", 4,
                                           NULL, on_wchunk, on_wdone, &w),
                     BRK_OK);
    assert_true(run_until(fx, g_done + 1, 5000));
    assert_int_equal(w.err, BRK_OK);
    assert_int_equal(w.nbody, 5);
    assert_non_null(strstr(fx->last_req, "POST /len?access_token=t HTTP/1.1"));
    assert_non_null(strstr(fx->last_req, "\r\nContent-Type: x/y; b=1\r\n"));
    assert_non_null(strstr(fx->last_req, "\r\nContent-Length: 4\r\n\r\n"));
    assert_int_equal(fx->last_req_len,
                     (size_t)(strstr(fx->last_req, "\r\n\r\n") - fx->last_req) +
                         4 + 4);
    wecom_api_free(api);
}

/*---- Host names ----*/

/* dns's hosts are now lines (and nothing else). */
static void
set_hosts(struct evdns_base *dns, const char *lines)
{
    char path[] = "/tmp/test_upclient_hosts.XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, lines, strlen(lines)), (ssize_t)strlen(lines));
    close(fd);
    evdns_base_clear_host_addresses(dns);
    assert_int_equal(evdns_base_load_hosts(dns, path), 0);
    unlink(path);
}

/* A resolver of this loop that knows only the given hosts lines (no
 * name server: an unknown name fails); owned by the caller. */
static struct evdns_base *
hosts_resolver(struct fx *fx, const char *lines)
{
    struct evdns_base *dns = evdns_base_new(fx->base, 0);

    assert_non_null(dns);
    set_hosts(dns, lines);
    return dns;
}

static void
make_named_client(struct fx *fx, struct evdns_base *dns, long ttl_ms,
                  long connect_ms)
{
    struct upclient_opts o = {2000, connect_ms, 4096, 0,     0,
                              0,    NULL,       dns,  ttl_ms};

    assert_int_equal(upclient_new(fx->base, &o, &fx->c), BRK_OK);
}

/* The client, then the resolver it borrowed. */
static void
free_named(struct fx *fx, struct evdns_base *dns)
{
    upclient_free(fx->c);
    fx->c = NULL;
    evdns_base_free(dns, 0);
}

static void
named_get(struct fx *fx, const char *host, const char *target, struct rec *r)
{
    char origin[96];

    snprintf(origin, sizeof(origin), "http://%s:%d", host, fx->port);
    memset(r, 0, sizeof(*r));
    assert_int_equal(start(fx, origin, "GET", target, NULL, 200, r), BRK_OK);
    assert_true(run_until(fx, g_done + 1, 5000));
    assert_int_equal(r->calls, 1);
    assert_int_equal(r->early, 0);
}

static void
on_first_addr(int err, struct evutil_addrinfo *res, void *arg)
{
    char *out = arg;
    const struct sockaddr_in *sin;

    assert_int_equal(err, 0);
    assert_non_null(res);
    assert_int_equal(res->ai_family, AF_INET);
    sin = (const struct sockaddr_in *)res->ai_addr;
    inet_ntop(AF_INET, &sin->sin_addr, out, 16);
    evutil_freeaddrinfo(res);
}

/* The address a resolver gives first for name. */
static void
first_addr(struct evdns_base *dns, const char *name, char out[16])
{
    struct evutil_addrinfo hints;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    out[0] = '\0';
    evdns_getaddrinfo(dns, name, "80", &hints, on_first_addr, out);
    assert_true(out[0] != '\0');
}

static void
test_host_name_next_address(void **state)
{
    struct fx *fx = *state;
    struct evdns_base *dns =
        hosts_resolver(fx, "127.0.0.2 up.test\n127.0.0.1 up.test\n");
    char first[16];
    char host[64];
    struct rec r;

    /* nothing listens on 127.0.0.2: the first address is refused */
    first_addr(dns, "up.test", first);
    assert_string_equal(first, "127.0.0.2");
    make_named_client(fx, dns, 0, 0);
    named_get(fx, "up.test", "/len", &r);
    assert_int_equal(r.err, BRK_OK);
    BODY_IS(&r, "hello");
    assert_int_equal(fx->accepts, 1);
    snprintf(host, sizeof(host), "\r\nHost: up.test:%d\r\n", fx->port);
    assert_non_null(strstr(fx->last_req, host));
    /* the request went out once, on the address that answered */
    assert_int_equal(fx->requests, 1);
    free_named(fx, dns);
}

static void
test_host_name_every_address_refused(void **state)
{
    struct fx *fx = *state;
    struct evdns_base *dns =
        hosts_resolver(fx, "127.0.0.2 down.test\n127.0.0.3 down.test\n");
    struct rec r;

    make_named_client(fx, dns, 0, 0);
    named_get(fx, "down.test", "/len", &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM);
    assert_string_equal(r.why, "connect failed");
    assert_int_equal(fx->accepts, 0);
    assert_int_equal(upclient_conns(fx->c, NULL), 0);
    free_named(fx, dns);
}

static void
on_dns_query(struct evdns_server_request *req, void *arg)
{
    (void)arg;
    evdns_server_request_respond(req, DNS_ERR_NOTEXIST);
}

/* A UDP socket on 127.0.0.1; "127.0.0.1:port" in ns. */
static int
udp_socket(char ns[32])
{
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);

    assert_true(fd >= 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    snprintf(ns, 32, "127.0.0.1:%d", ntohs(sin.sin_port));
    return fd;
}

/* A name server that says no name exists. */
static void
test_host_name_unknown(void **state)
{
    struct fx *fx = *state;
    struct evdns_base *dns = hosts_resolver(fx, "127.0.0.1 up.test\n");
    struct evdns_server_port *server;
    char ns[32];
    struct rec r;
    int fd = udp_socket(ns);

    evutil_make_socket_nonblocking(fd);
    server =
        evdns_add_server_port_with_base(fx->base, fd, 0, on_dns_query, NULL);
    assert_non_null(server);
    assert_int_equal(evdns_base_nameserver_ip_add(dns, ns), 0);
    make_named_client(fx, dns, 0, 0);
    named_get(fx, "nowhere.test", "/len", &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM);
    assert_string_equal(r.why, "cannot resolve");
    assert_int_equal(fx->accepts, 0);
    assert_int_equal(upclient_conns(fx->c, NULL), 0);
    free_named(fx, dns);
    evdns_close_server_port(server);
    close(fd);
}

/* A name server that never answers: the lookup is bounded by the
 * connect timeout, not only by the call's. */
static void
test_host_name_lookup_timed_out(void **state)
{
    struct fx *fx = *state;
    struct evdns_base *dns = hosts_resolver(fx, "127.0.0.1 up.test\n");
    char ns[32];
    struct rec r;
    struct timespec t0, t1;
    long ms;
    int fd = udp_socket(ns);

    assert_int_equal(evdns_base_nameserver_ip_add(dns, ns), 0);
    make_named_client(fx, dns, 0, 300);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    named_get(fx, "silent.test", "/len", &r);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_TIMEOUT);
    assert_string_equal(r.why, "lookup timed out");
    assert_true(ms < 1500);
    assert_int_equal(upclient_conns(fx->c, NULL), 0);
    /* the lookup is still under way: freeing the client cancels it */
    upclient_free(fx->c);
    fx->c = NULL;
    run_for(fx, 20);
    evdns_base_free(dns, 0);
    close(fd);
}

/* An origin's addresses are kept for the TTL, looked up again after it,
 * and forgotten at once when none of them connects. */
static void
test_host_name_addresses_kept(void **state)
{
    struct fx *fx = *state;
    struct evdns_base *dns = hosts_resolver(fx, "127.0.0.1 up.test\n");
    struct rec r;

    make_named_client(fx, dns, 60000, 0);
    named_get(fx, "up.test", "/close", &r);
    assert_int_equal(r.err, BRK_OK);
    /* the name moves: a new connection still uses what was looked up */
    set_hosts(dns, "127.0.0.2 up.test\n");
    named_get(fx, "up.test", "/len", &r);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(fx->accepts, 2);
    upclient_free(fx->c);
    fx->c = NULL;

    /* a TTL of 1 ms: the next connection looks the name up again */
    make_named_client(fx, dns, 1, 0);
    set_hosts(dns, "127.0.0.1 up.test\n");
    named_get(fx, "up.test", "/close", &r);
    assert_int_equal(r.err, BRK_OK);
    set_hosts(dns, "127.0.0.2 up.test\n");
    usleep(5000);
    named_get(fx, "up.test", "/len", &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM);
    assert_string_equal(r.why, "connect failed");
    upclient_free(fx->c);
    fx->c = NULL;

    /* addresses none of which connects are forgotten before their TTL */
    make_named_client(fx, dns, 60000, 0);
    named_get(fx, "up.test", "/len", &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM);
    set_hosts(dns, "127.0.0.1 up.test\n");
    named_get(fx, "up.test", "/len", &r);
    assert_int_equal(r.err, BRK_OK);
    BODY_IS(&r, "hello");
    free_named(fx, dns);
}

/* Calls that arrive while the name is looked up wait for the one lookup;
 * a client freed meanwhile ends them. */
static void
test_host_name_calls_share_a_lookup(void **state)
{
    struct fx *fx = *state;
    struct evdns_base *dns = hosts_resolver(fx, "127.0.0.1 up.test\n");
    struct rec r[3];
    char origin[96];
    int i;

    make_named_client(fx, dns, 0, 0);
    snprintf(origin, sizeof(origin), "http://up.test:%d", fx->port);
    for (i = 0; i < 3; i++) {
        memset(&r[i], 0, sizeof(r[i]));
        assert_int_equal(start(fx, origin, "GET", "/len", NULL, 200, &r[i]),
                         BRK_OK);
    }
    assert_true(run_until(fx, 3, 5000));
    for (i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].early, 0);
        assert_int_equal(r[i].err, BRK_OK);
        BODY_IS(&r[i], "hello");
    }
    upclient_free(fx->c);
    fx->c = NULL;

    /* freed before the waiting calls heard of the answer */
    make_named_client(fx, dns, 0, 0);
    memset(&r[0], 0, sizeof(r[0]));
    assert_int_equal(start(fx, origin, "GET", "/len", NULL, 200, &r[0]),
                     BRK_OK);
    upclient_free(fx->c);
    fx->c = NULL;
    assert_int_equal(r[0].calls, 1);
    assert_int_equal(r[0].err, BRK_ERR_SHUTDOWN);
    run_for(fx, 20);
    evdns_base_free(dns, 0);
}

/* The client's own resolver (the system's name servers), freed with a
 * lookup under way: the call ends, and the lookup's late answer finds
 * nothing freed under it. */
static void
test_free_during_own_lookup(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_client(fx, 2000, 4096, 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(
        start(fx, "http://lookup.invalid:9", "GET", "/len", NULL, 200, &r),
        BRK_OK);
    upclient_free(fx->c);
    fx->c = NULL;
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, BRK_ERR_SHUTDOWN);
    run_for(fx, 50);
    assert_int_equal(r.calls, 1);
}

/* The client's own resolver reads the system's hosts file: localhost,
 * whatever order its addresses are listed in, reaches 127.0.0.1. */
static void
test_own_resolver_localhost(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_client(fx, 5000, 4096, 0);
    named_get(fx, "localhost", "/len", &r);
    assert_int_equal(r.err, BRK_OK);
    BODY_IS(&r, "hello");
    assert_int_equal(fx->accepts, 1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_content_length),
        T(test_chunked),
        T(test_close_delimited),
        T(test_trickled_reply),
        T(test_large_body_in_order),
        T(test_keepalive_reused),
        T(test_idle_closed_by_upstream),
        T(test_reused_connection_retried_once),
        T(test_fresh_connection_not_retried),
        T(test_out_of_step_connections_dropped),
        T(test_max_conns_queues),
        T(test_idle_pool_bounded_and_timed),
        T(test_new_rejects_bad_options),
        T(test_alloc_failures),
        T(test_garbage_and_bad_framing),
        T(test_unwanted_status_sends_no_data),
        T(test_never_answers_times_out),
        T(test_body_too_big),
        T(test_connection_refused),
        T(test_reader_aborts),
        T(test_request_as_sent),
        T(test_call_memory_reused),
        T(test_bad_arguments),
        T(test_free_with_calls_in_flight),
        T(test_free_from_data_callback),
        T(test_cancel_from_data_callback),
        T(test_tls),
        T(test_tls_session_resumed),
        T(test_tls_wrong_name_refused),
        T(test_tls_untrusted_refused),
        T(test_wecom_api_stream_uses_upclient),
        T(test_host_name_next_address),
        T(test_host_name_every_address_refused),
        T(test_host_name_unknown),
        T(test_host_name_lookup_timed_out),
        T(test_host_name_addresses_kept),
        T(test_host_name_calls_share_a_lookup),
        T(test_free_during_own_lookup),
        T(test_own_resolver_localhost),
    };
    int rc;

    signal(SIGPIPE, SIG_IGN);
    log_init(LOG_LVL_ERROR, 0);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
