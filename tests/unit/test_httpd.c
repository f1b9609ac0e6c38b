/*
 * Tests for httpd.c against real sockets: a server on 127.0.0.1 on an
 * event_base of this process, and clients on plain sockets driven
 * alongside the loop (each wait runs the loop once with the client's
 * descriptor in it, up to a deadline). The handler records what it saw
 * and replies at once, later from a timer, or when the test says.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "broker.h"
#include "httpd.h"
#include "log.h"

/* the listener's max_body; the server itself reads up to SERVER_MAX */
#define MAX_BODY   1024
#define SERVER_MAX (MAX_BODY * 4 + 4096)
#define WAIT_MS    5000
#define MAX_SEEN   160
#define BIG_REPLY  (8 * 1024 * 1024)

/*---- The server side ----*/

enum mode {
    M_NOW,   /* reply from the handler */
    M_TIMER, /* reply from a timer, oldest first */
    M_HOLD,  /* keep the request until the test replies */
};

struct seen {
    char method[16];
    char path[256];
    char query[256];
    int has_query;
    char *body;
    size_t body_len;
    int port;         /* the peer's port */
    unsigned pending; /* requests unanswered when this one arrived */
};

struct fx;
typedef void custom_handler(struct fx *fx, struct httpd_req *r);

struct fx {
    struct event_base *base;
    struct httpd *h;
    int port;
    enum mode mode;
    custom_handler *custom;
    int calls;
    struct seen seen[MAX_SEEN];
    struct httpd_req *held[MAX_SEEN];
    int nheld;
    unsigned unanswered;
    struct event *timer;
    int drained;
    char cert_path[64], key_path[64];
};

static void
reply_default(struct fx *fx, struct httpd_req *r)
{
    char body[300];
    int n;

    /* the same for GET and HEAD: HEAD must say this length */
    n = snprintf(body, sizeof(body), "reply to %s", httpd_path(r));
    fx->unanswered--;
    httpd_reply(r, 200, "text/plain", body, (size_t)n);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct fx *fx = arg;
    struct timeval tv = {0, 5000};
    struct httpd_req *r;

    (void)fd;
    (void)what;
    if (fx->nheld == 0)
        return;
    r = fx->held[0];
    memmove(fx->held, fx->held + 1, (size_t)(fx->nheld - 1) * sizeof(r));
    fx->nheld--;
    reply_default(fx, r);
    if (fx->nheld > 0)
        evtimer_add(fx->timer, &tv);
}

static void
on_request(struct httpd_req *r, void *arg)
{
    struct fx *fx = arg;
    struct seen *s;
    const struct sockaddr *sa;
    size_t salen = 0;
    struct timeval tv = {0, 5000};

    assert_true(fx->calls < MAX_SEEN);
    s = &fx->seen[fx->calls++];
    snprintf(s->method, sizeof(s->method), "%s", httpd_method(r));
    snprintf(s->path, sizeof(s->path), "%s", httpd_path(r));
    s->has_query = httpd_raw_query(r) != NULL;
    if (s->has_query)
        snprintf(s->query, sizeof(s->query), "%s", httpd_raw_query(r));
    s->body_len = httpd_body_len(r);
    if (s->body_len > 0) {
        assert_non_null(httpd_body(r));
        s->body = malloc(s->body_len);
        assert_non_null(s->body);
        memcpy(s->body, httpd_body(r), s->body_len);
    } else {
        assert_null(httpd_body(r));
    }
    sa = httpd_peer(r, &salen);
    if (sa != NULL && sa->sa_family == AF_INET)
        s->port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    s->pending = fx->unanswered++;
    if (fx->custom != NULL) {
        fx->custom(fx, r);
        return;
    }
    switch (fx->mode) {
    case M_NOW:
        reply_default(fx, r);
        break;
    case M_TIMER:
    case M_HOLD:
        assert_true(fx->nheld < MAX_SEEN);
        fx->held[fx->nheld++] = r;
        if (fx->mode == M_TIMER)
            evtimer_add(fx->timer, &tv);
        break;
    }
}

/* Reply to the oldest held request. */
static void
release(struct fx *fx)
{
    struct httpd_req *r;

    assert_true(fx->nheld > 0);
    r = fx->held[0];
    memmove(fx->held, fx->held + 1, (size_t)(fx->nheld - 1) * sizeof(r));
    fx->nheld--;
    reply_default(fx, r);
}

/* Start counting the handler's calls again. */
static void
forget_calls(struct fx *fx)
{
    int i;

    for (i = 0; i < fx->calls; i++) {
        free(fx->seen[i].body);
        fx->seen[i].body = NULL;
    }
    fx->calls = 0;
}

static void
serve(struct fx *fx, const char *name)
{
    assert_int_equal(
        httpd_listen(fx->h, name, "127.0.0.1:0", MAX_BODY, on_request, fx),
        BRK_OK);
    fx->port = httpd_listener_port(fx->h, name);
    assert_true(fx->port > 0);
}

static int
setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    fx->base = event_base_new();
    assert_non_null(fx->base);
    assert_int_equal(httpd_new(fx->base, &fx->h), BRK_OK);
    fx->timer = evtimer_new(fx->base, on_timer, fx);
    assert_non_null(fx->timer);
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *fx = *state;

    httpd_free(fx->h);
    event_free(fx->timer);
    forget_calls(fx);
    if (fx->cert_path[0] != '\0')
        unlink(fx->cert_path);
    if (fx->key_path[0] != '\0')
        unlink(fx->key_path);
    event_base_free(fx->base);
    free(fx);
    return 0;
}

/*---- The client side ----*/

struct cl {
    int fd;
    char *buf;
    size_t len, cap;
    int eof;   /* recv returned 0 or an error */
    int reset; /* the error was ECONNRESET */
};

/* One reply as read by a client. */
struct rep {
    int status;
    char head[16384]; /* NUL-terminated, the blank line excluded */
    char *body;       /* malloc'd, NUL-terminated */
    size_t body_len;
};

static long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* set when a pump woke for the watched descriptor, not the deadline */
static int g_ready;

static void
nop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)arg;
    if (what & (EV_READ | EV_WRITE))
        g_ready = 1;
}

/* Read what c's socket holds now into c->buf. */
static void
cl_fill(struct cl *c)
{
    ssize_t n;

    while (!c->eof) {
        if (c->cap - c->len < 65536) {
            c->cap = c->cap ? c->cap * 2 : 65536;
            c->buf = realloc(c->buf, c->cap + 1);
            assert_non_null(c->buf);
        }
        n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 && errno == EINTR)
            continue;
        c->eof = 1;
        c->reset = n < 0 && errno == ECONNRESET;
    }
}

/*
 * Run the loop once, also waking for fd (-1: none) becoming ready for
 * what, until deadline at most. 0 once the deadline has passed.
 */
static int
pump_fd(struct fx *fx, int fd, short what, long long deadline)
{
    long long left = deadline - now_ms();
    struct timeval tv;
    struct event *ev;

    if (left <= 0)
        return 0;
    tv.tv_sec = (time_t)(left / 1000);
    tv.tv_usec = (suseconds_t)(left % 1000) * 1000;
    ev = event_new(fx->base, fd, fd >= 0 ? what : 0, nop_cb, NULL);
    assert_non_null(ev);
    event_add(ev, &tv);
    event_base_loop(fx->base, EVLOOP_ONCE);
    event_free(ev);
    return 1;
}

/* pump_fd for at most ms, and never past deadline: 0 once it passed. */
static int
pump_slice(struct fx *fx, int fd, short what, long long deadline, long ms)
{
    long long end = now_ms() + ms;

    return pump_fd(fx, fd, what, end < deadline ? end : deadline) &&
           now_ms() < deadline;
}

/* pump_fd on c's socket; with EV_READ, then read what it holds. */
static int
pump(struct fx *fx, struct cl *c, short what, long long deadline)
{
    int watch = c != NULL && !(c->eof && (what & EV_READ));

    if (!pump_fd(fx, watch ? c->fd : -1, what, deadline))
        return 0;
    if (c != NULL && (what & EV_READ))
        cl_fill(c);
    return 1;
}

/* Run the loop until *v reaches target; 1, or 0 at the deadline. */
static int
run_until(struct fx *fx, const int *v, int target, long ms)
{
    long long deadline = now_ms() + ms;

    while (*v < target)
        if (!pump(fx, NULL, 0, deadline))
            return 0;
    return 1;
}

/* Let the server take what is already there: a few passes of the loop
 * that do not wait (loopback delivers in the sending call). */
static void
settle(struct fx *fx)
{
    int i;

    for (i = 0; i < 4; i++)
        event_base_loop(fx->base, EVLOOP_NONBLOCK);
}

static void
cl_open_to(struct cl *c, int port)
{
    struct sockaddr_in sin;

    memset(c, 0, sizeof(*c));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    /* the kernel completes the handshake; accept() comes later */
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(fcntl(c->fd, F_SETFL, O_NONBLOCK), 0);
}

static void
cl_open(struct fx *fx, struct cl *c)
{
    cl_open_to(c, fx->port);
}

static void
cl_close(struct cl *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

static int
cl_port(const struct cl *c)
{
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);

    assert_int_equal(getsockname(c->fd, (struct sockaddr *)&sin, &sl), 0);
    return ntohs(sin.sin_port);
}

/* Send n bytes, running the loop while the socket is full; 0, or the
 * errno of a failed send. Does not read. */
static int
cl_send(struct fx *fx, struct cl *c, const void *p, size_t n)
{
    long long deadline = now_ms() + WAIT_MS;
    const char *s = p;
    ssize_t k;

    while (n > 0) {
        k = send(c->fd, s, n, MSG_NOSIGNAL);
        if (k > 0) {
            s += k;
            n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return errno;
        if (!pump(fx, c, EV_WRITE, deadline))
            return ETIMEDOUT;
    }
    return 0;
}

static void
cl_sends(struct fx *fx, struct cl *c, const char *s)
{
    assert_int_equal(cl_send(fx, c, s, strlen(s)), 0);
}

/* The value of the first header name of r (NULL if none), in buf. */
static const char *
rep_hdr(const struct rep *r, const char *name, char *buf, size_t len)
{
    const char *p = r->head, *e;
    size_t n = strlen(name), k;

    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, n) != 0 || p[n] != ':')
            continue;
        p += n + 1;
        while (*p == ' ')
            p++;
        e = strstr(p, "\r\n");
        k = e != NULL ? (size_t)(e - p) : strlen(p);
        if (k >= len)
            k = len - 1;
        memcpy(buf, p, k);
        buf[k] = '\0';
        return buf;
    }
    return NULL;
}

/* How many header lines of r are named name. */
static int
rep_count(const struct rep *r, const char *name)
{
    const char *p = r->head;
    size_t n = strlen(name);
    int k = 0;

    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':')
            k++;
    }
    return k;
}

static void
rep_free(struct rep *r)
{
    free(r->body);
    r->body = NULL;
}

/* Take one reply from c's buffer: 1, 0 (more needed), -1 (malformed). */
static int
rep_take(struct cl *c, struct rep *r, int no_body)
{
    char *end, v[32], *e;
    size_t hl, cl = 0;
    long st;

    if (c->len == 0)
        return 0;
    c->buf[c->len] = '\0';
    end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (end == NULL)
        return c->len > sizeof(r->head) ? -1 : 0;
    hl = (size_t)(end - c->buf);
    if (hl >= sizeof(r->head) || strncmp(c->buf, "HTTP/1.1 ", 9) != 0)
        return -1;
    memcpy(r->head, c->buf, hl);
    r->head[hl] = '\0';
    st = strtol(r->head + 9, &e, 10);
    if (e != r->head + 12 || *e != ' ')
        return -1;
    r->status = (int)st;
    if (rep_hdr(r, "Content-Length", v, sizeof(v)) != NULL)
        cl = (size_t)strtoull(v, NULL, 10);
    if (no_body || st < 200)
        cl = 0;
    if (c->len < hl + 4 + cl)
        return 0;
    r->body = malloc(cl + 1);
    assert_non_null(r->body);
    memcpy(r->body, c->buf + hl + 4, cl);
    r->body[cl] = '\0';
    r->body_len = cl;
    memmove(c->buf, c->buf + hl + 4 + cl, c->len - (hl + 4 + cl));
    c->len -= hl + 4 + cl;
    return 1;
}

/* Wait for one whole reply on c: 1, or 0 (deadline, close, garbage). */
static int
wait_rep(struct fx *fx, struct cl *c, struct rep *r, int no_body)
{
    long long deadline = now_ms() + WAIT_MS;
    int k;

    memset(r, 0, sizeof(*r));
    for (;;) {
        k = rep_take(c, r, no_body);
        if (k != 0)
            return k > 0;
        if (c->eof || !pump(fx, c, EV_READ, deadline))
            return 0;
    }
}

/* Wait for the server to close c: 1 with a FIN, -1 with a reset, 0 at
 * the deadline. */
static int
wait_eof(struct fx *fx, struct cl *c, long ms)
{
    long long deadline = now_ms() + ms;

    cl_fill(c);
    while (!c->eof)
        if (!pump(fx, c, EV_READ, deadline))
            return 0;
    return c->reset ? -1 : 1;
}

/* One request and its reply on c, which stays open. */
static void
roundtrip(struct fx *fx, struct cl *c, const char *req, struct rep *r)
{
    cl_sends(fx, c, req);
    assert_true(wait_rep(fx, c, r, 0));
}

static void
assert_hdr(const struct rep *r, const char *name, const char *want)
{
    char v[256];

    assert_non_null(rep_hdr(r, name, v, sizeof(v)));
    assert_string_equal(v, want);
}

static int
is_hex16(const char *s)
{
    size_t i;

    for (i = 0; i < 16; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return s[16] == '\0';
}

/*---- 1. Keep-alive ----*/

static void
test_keepalive(void **state)
{
    struct fx *fx = *state;
    struct cl c;
    struct rep r[3];
    char ids[3][64], v[64];
    int i;

    serve(fx, "internal");
    cl_open(fx, &c);
    for (i = 0; i < 3; i++) {
        char req[128];

        snprintf(req, sizeof(req), "GET /k%d?a=%d HTTP/1.1\r\nHost: x\r\n\r\n",
                 i, i);
        roundtrip(fx, &c, req, &r[i]);
        assert_int_equal(r[i].status, 200);
        snprintf(req, sizeof(req), "reply to /k%d", i);
        assert_string_equal(r[i].body, req);
        snprintf(req, sizeof(req), "%zu", strlen(r[i].body));
        assert_hdr(&r[i], "Content-Length", req);
        assert_hdr(&r[i], "Cache-Control", "no-store");
        assert_non_null(rep_hdr(&r[i], "Date", v, sizeof(v)));
        assert_non_null(strstr(v, " GMT"));
        assert_int_equal(rep_count(&r[i], "Connection"), 0);
        assert_non_null(rep_hdr(&r[i], "X-Request-Id", ids[i], sizeof(ids[i])));
        assert_true(is_hex16(ids[i]));
        snprintf(req, sizeof(req), "a=%d", i);
        assert_string_equal(fx->seen[i].query, req);
        assert_string_equal(fx->seen[i].method, "GET");
        /* the same connection each time: one accept */
        assert_int_equal(fx->seen[i].port, cl_port(&c));
        rep_free(&r[i]);
    }
    assert_int_equal(fx->calls, 3);
    assert_string_not_equal(ids[0], ids[1]);
    assert_string_not_equal(ids[1], ids[2]);
    assert_string_not_equal(ids[0], ids[2]);
    assert_string_equal(fx->seen[1].path, "/k1");
    assert_int_equal(fx->seen[0].has_query, 1);
    cl_close(&c);
}

/*---- 2. Pipelining ----*/

static void
pipelined(struct fx *fx)
{
    struct cl c;
    struct rep r;
    char want[32];
    int i;

    serve(fx, "internal");
    cl_open(fx, &c);
    cl_sends(fx, &c,
             "GET /p0 HTTP/1.1\r\nHost: x\r\n\r\n"
             "POST /p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
             "GET /p2 HTTP/1.1\r\nHost: x\r\n\r\n");
    for (i = 0; i < 3; i++) {
        assert_true(wait_rep(fx, &c, &r, 0));
        assert_int_equal(r.status, 200);
        snprintf(want, sizeof(want), "reply to /p%d", i);
        assert_string_equal(r.body, want);
        rep_free(&r);
    }
    assert_int_equal(fx->calls, 3);
    for (i = 0; i < 3; i++) {
        snprintf(want, sizeof(want), "/p%d", i);
        assert_string_equal(fx->seen[i].path, want);
        /* one at a time: the previous one was answered */
        assert_int_equal(fx->seen[i].pending, 0);
    }
    assert_int_equal(fx->seen[1].body_len, 3);
    assert_memory_equal(fx->seen[1].body, "abc", 3);
    assert_int_equal(fx->seen[2].body_len, 0);
    cl_close(&c);
}

static void
test_pipelining(void **state)
{
    pipelined(*state);
}

static void
test_pipelining_async(void **state)
{
    struct fx *fx = *state;

    fx->mode = M_TIMER;
    pipelined(fx);
}

/* Held: the second request waits in the buffer, the handler never sees
 * it before the first reply. */
static void
test_pipelining_held(void **state)
{
    struct fx *fx = *state;
    struct cl c;
    struct rep r;

    fx->mode = M_HOLD;
    serve(fx, "internal");
    cl_open(fx, &c);
    cl_sends(fx, &c,
             "GET /h0 HTTP/1.1\r\nHost: x\r\n\r\nGET /h1 HTTP/1.1\r\nHost: "
             "x\r\n\r\n");
    assert_true(run_until(fx, &fx->calls, 1, WAIT_MS));
    settle(fx);
    assert_int_equal(fx->calls, 1);
    assert_int_equal(httpd_inflight(fx->h), 1);
    release(fx);
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_string_equal(r.body, "reply to /h0");
    rep_free(&r);
    assert_true(run_until(fx, &fx->calls, 2, WAIT_MS));
    release(fx);
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_string_equal(r.body, "reply to /h1");
    rep_free(&r);
    assert_int_equal(httpd_inflight(fx->h), 0);
    cl_close(&c);
}

/*---- 3. Body framings ----*/

static void
test_body_length(void **state)
{
    struct fx *fx = *state;
    struct cl c;
    struct rep r;

    serve(fx, "internal");
    cl_open(fx, &c);
    roundtrip(fx, &c,
              "POST /l HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"
              "hello world",
              &r);
    assert_int_equal(r.status, 200);
    rep_free(&r);
    assert_int_equal(fx->seen[0].body_len, 11);
    assert_memory_equal(fx->seen[0].body, "hello world", 11);
    assert_string_equal(fx->seen[0].method, "POST");
    cl_close(&c);
}

static const char chunked_req[] =
    "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    "5;name=value\r\nhello\r\n"
    "1\r\n \r\n"
    "A;x\r\nwonderful \r\n"
    "5\r\nworld\r\n"
    "0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n";
#define CHUNKED_BODY "hello wonderful world"

static void
test_body_chunked(void **state)
{
    struct fx *fx = *state;
    struct cl c;
    struct rep r;

    serve(fx, "internal");
    cl_open(fx, &c);
    /* a request right after it on the same connection: the framing was
     * taken whole, the trailer included */
    cl_sends(fx, &c, chunked_req);
    cl_sends(fx, &c, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_string_equal(r.body, "reply to /c");
    rep_free(&r);
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_string_equal(r.body, "reply to /after");
    rep_free(&r);
    assert_int_equal(fx->calls, 2);
    assert_int_equal(fx->seen[0].body_len, strlen(CHUNKED_BODY));
    assert_memory_equal(fx->seen[0].body, CHUNKED_BODY, strlen(CHUNKED_BODY));
    assert_int_equal(fx->seen[1].body_len, 0);
    cl_close(&c);
}

/* Every byte in its own send, the server reading each before the next. */
static void
send_bytewise(struct fx *fx, struct cl *c, const char *s)
{
    size_t i, n = strlen(s);
    int before = fx->calls;

    for (i = 0; i < n; i++) {
        assert_int_equal(cl_send(fx, c, s + i, 1), 0);
        settle(fx);
        if (i + 1 < n)
            assert_int_equal(fx->calls, before);
    }
}

static void
test_body_bytewise(void **state)
{
    struct fx *fx = *state;
    struct cl c;
    struct rep r;

    serve(fx, "internal");
    cl_open(fx, &c);
    send_bytewise(fx, &c,
                  "POST /b1 HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"
                  "hello world");
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_string_equal(r.body, "reply to /b1");
    rep_free(&r);
    send_bytewise(fx, &c, chunked_req);
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_string_equal(r.body, "reply to /c");
    rep_free(&r);
    assert_int_equal(fx->calls, 2);
    assert_int_equal(fx->seen[0].body_len, 11);
    assert_memory_equal(fx->seen[0].body, "hello world", 11);
    assert_int_equal(fx->seen[1].body_len, strlen(CHUNKED_BODY));
    assert_memory_equal(fx->seen[1].body, CHUNKED_BODY, strlen(CHUNKED_BODY));
    cl_close(&c);
}

/*---- 4. Expect: 100-continue ----*/

static void
test_expect_continue(void **state)
{
    struct fx *fx = *state;
    struct cl c;
    struct rep r;
    char req[256];

    serve(fx, "internal");
    cl_open(fx, &c);
    cl_sends(fx, &c,
             "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
             "Expect: 100-continue\r\n\r\n");
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_int_equal(r.status, 100);
    assert_string_equal(r.head, "HTTP/1.1 100 Continue");
    rep_free(&r);
    assert_int_equal(fx->calls, 0);
    cl_sends(fx, &c, "hello");
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_int_equal(r.status, 200);
    rep_free(&r);
    assert_int_equal(fx->calls, 1);
    assert_memory_equal(fx->seen[0].body, "hello", 5);

    /* the server's own limit exactly: still let through */
    snprintf(req, sizeof(req),
             "POST /lim HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
             "Expect: 100-continue\r\n\r\n",
             SERVER_MAX);
    cl_sends(fx, &c, req);
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_int_equal(r.status, 100);
    rep_free(&r);
    cl_close(&c);
}

static void
test_expect_over_limit(void **state)
{
    struct fx *fx = *state;
    struct cl c;
    struct rep r;
    char req[256];

    serve(fx, "internal");
    cl_open(fx, &c);
    snprintf(req, sizeof(req),
             "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
             "Expect: 100-continue\r\n\r\n",
             SERVER_MAX + 1);
    cl_sends(fx, &c, req);
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_int_equal(r.status, 413);
    assert_hdr(&r, "Connection", "close");
    rep_free(&r);
    assert_int_equal(wait_eof(fx, &c, WAIT_MS), 1);
    assert_int_equal(c.len, 0);
    assert_int_equal(fx->calls, 0);
    cl_close(&c);
}

/*---- 5. HEAD ----*/

static void
test_head(void **state)
{
    struct fx *fx = *state;
    struct cl c;
    struct rep r;

    serve(fx, "internal");
    cl_open(fx, &c);
    cl_sends(fx, &c, "HEAD /hw HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(wait_rep(fx, &c, &r, 1));
    assert_int_equal(r.status, 200);
    assert_hdr(&r, "Content-Length", "12"); /* "reply to /hw" */
    rep_free(&r);
    assert_string_equal(fx->seen[0].method, "HEAD");
    /* no body bytes: the next reply starts right after the head */
    cl_sends(fx, &c, "GET /hw HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "reply to /hw");
    rep_free(&r);
    assert_int_equal(c.len, 0);
    cl_close(&c);
}

/* a 204 whatever the handler passes: no body, no Content-Length */
static void
reply_204(struct fx *fx, struct httpd_req *r)
{
    fx->unanswered--;
    httpd_reply(r, 204, "text/plain", "ignored", 7);
}

static void
test_no_content(void **state)
{
    struct fx *fx = *state;
    struct cl c;
    struct rep r;

    fx->custom = reply_204;
    serve(fx, "internal");
    cl_open(fx, &c);
    cl_sends(fx, &c, "DELETE /x HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(wait_rep(fx, &c, &r, 1));
    assert_int_equal(r.status, 204);
    assert_null(strcasestr(r.head, "Content-Length"));
    rep_free(&r);
    /* nothing of "ignored" on the wire: the next reply starts at once */
    fx->custom = NULL;
    cl_sends(fx, &c, "GET /hw HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "reply to /hw");
    rep_free(&r);
    assert_int_equal(c.len, 0);
    cl_close(&c);
}

/*---- 6. HTTP/1.0 and Connection ----*/

static void
test_http10_closes(void **state)
{
    struct fx *fx = *state;
    struct cl c;
    struct rep r;

    serve(fx, "internal");
    cl_open(fx, &c);
    roundtrip(fx, &c, "GET /old HTTP/1.0\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "reply to /old");
    assert_int_equal(strncmp(r.head, "HTTP/1.1 200", 12), 0);
    assert_hdr(&r, "Connection", "close");
    rep_free(&r);
    assert_int_equal(wait_eof(fx, &c, WAIT_MS), 1);
    cl_close(&c);
}

static void
test_http10_keepalive(void **state)
{
    struct fx *fx = *state;
    struct cl c;
    struct rep r;

    serve(fx, "internal");
    cl_open(fx, &c);
    roundtrip(fx, &c, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_hdr(&r, "Connection", "keep-alive");
    rep_free(&r);
    roundtrip(fx, &c, "GET /b HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &r);
    assert_string_equal(r.body, "reply to /b");
    assert_hdr(&r, "Connection", "keep-alive");
    rep_free(&r);
    assert_int_equal(fx->seen[0].port, fx->seen[1].port);
    cl_close(&c);
}

static void
test_http11_connection_close(void **state)
{
    struct fx *fx = *state;
    struct cl c;
    struct rep r;

    serve(fx, "internal");
    cl_open(fx, &c);
    roundtrip(fx, &c, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
              &r);
    assert_int_equal(r.status, 200);
    assert_hdr(&r, "Connection", "close");
    assert_int_equal(rep_count(&r, "Connection"), 1);
    rep_free(&r);
    assert_int_equal(wait_eof(fx, &c, WAIT_MS), 1);
    assert_int_equal(c.len, 0);
    cl_close(&c);
}

/*---- 7. Hostile requests ----*/

/* req refused with status: the connection closes cleanly after the
 * reply, the handler never called. */
static void
refused(struct fx *fx, const char *req, size_t len, int status)
{
    struct cl c;
    struct rep r;
    int err;

    cl_open(fx, &c);
    err = cl_send(fx, &c, req, len);
    assert_int_equal(err, 0);
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_int_equal(r.status, status);
    assert_hdr(&r, "Connection", "close");
    rep_free(&r);
    assert_int_equal(wait_eof(fx, &c, WAIT_MS), 1);
    assert_int_equal(c.len, 0);
    assert_int_equal(fx->calls, 0);
    cl_close(&c);
}

static void
refused_str(struct fx *fx, const char *req, int status)
{
    refused(fx, req, strlen(req), status);
}

static void
test_hostile_framing(void **state)
{
    struct fx *fx = *state;
    static const char nul[] = "GET /a\0b HTTP/1.1\r\nHost: x\r\n\r\n";

    serve(fx, "internal");
    refused_str(fx, "GET /lf HTTP/1.1\nHost: x\n\n", 400);
    refused_str(fx, "GET /lf HTTP/1.1\r\nHost: x\n\r\n", 400);
    refused_str(fx, "GET /fold HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
                400);
    refused_str(fx,
                "POST /both HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                400);
    refused_str(
        fx,
        "POST /both HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        "Content-Length: 5\r\n\r\n0\r\n\r\n",
        400);
    refused(fx, nul, sizeof(nul) - 1, 400);
    refused_str(fx, "BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", 501);
    refused_str(fx, "get /lower HTTP/1.1\r\nHost: x\r\n\r\n", 501);
    /* HTTP/1.1 names one Host, of an authority's characters (1.0 need
     * not: test_http10_closes) */
    refused_str(fx, "GET /nohost HTTP/1.1\r\n\r\n", 400);
    refused_str(fx, "GET /two HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
    refused_str(fx, "GET /user HTTP/1.1\r\nHost: u@h\r\n\r\n", 400);
    assert_int_equal(httpd_inflight(fx->h), 0);
}

static void
test_hostile_sizes(void **state)
{
    struct fx *fx = *state;
    char *req = malloc(128 * 1024);
    size_t n;
    int i;

    assert_non_null(req);
    serve(fx, "internal");
    /* 101 fields */
    n = (size_t)snprintf(req, 64, "GET /f HTTP/1.1\r\nHost: x\r\n");
    for (i = 0; i < 101; i++)
        n += (size_t)snprintf(req + n, 64, "X-F%d: v\r\n", i);
    n += (size_t)snprintf(req + n, 8, "\r\n");
    refused(fx, req, n, 431);

    /* 100 fields are fine (Host and 99 more) */
    n = (size_t)snprintf(req, 64, "GET /f100 HTTP/1.1\r\nHost: x\r\n");
    for (i = 0; i < 99; i++)
        n += (size_t)snprintf(req + n, 64, "X-F%d: v\r\n", i);
    n += (size_t)snprintf(req + n, 8, "\r\n");
    {
        struct cl c;
        struct rep r;

        cl_open(fx, &c);
        assert_int_equal(cl_send(fx, &c, req, n), 0);
        assert_true(wait_rep(fx, &c, &r, 0));
        assert_int_equal(r.status, 200);
        rep_free(&r);
        cl_close(&c);
        assert_int_equal(fx->calls, 1);
        forget_calls(fx);
    }

    /* a head over 64 KiB in 20 fields of 4000 bytes */
    n = (size_t)snprintf(req, 64, "GET /h HTTP/1.1\r\nHost: x\r\n");
    for (i = 0; i < 20; i++) {
        n += (size_t)snprintf(req + n, 16, "X-H%d: ", i);
        memset(req + n, 'v', 4000);
        n += 4000;
        memcpy(req + n, "\r\n", 2);
        n += 2;
    }
    memcpy(req + n, "\r\n", 2);
    n += 2;
    refused(fx, req, n, 431);

    /* a request line over 8 KiB */
    n = (size_t)snprintf(req, 64, "GET /");
    memset(req + n, 'a', 9000);
    n += 9000;
    n += (size_t)snprintf(req + n, 64, " HTTP/1.1\r\nHost: x\r\n\r\n");
    refused(fx, req, n, 414);
    free(req);
}

/*
 * A 10 MB body declared over the limit: refused at once, while the client
 * goes on writing 1 MB of it before reading. The server must read and
 * throw away what comes after its reply until the client closes (no
 * reset): the client's writes all succeed, and it reads the 413 and then
 * a clean end.
 */
static void
test_refusal_lingers(void **state)
{
    struct fx *fx = *state;
    static const char head[] = "POST /up HTTP/1.1\r\nHost: x\r\n"
                               "Content-Length: 10485760\r\n\r\n";
    size_t body = 1024 * 1024 - (sizeof(head) - 1);
    char *junk = malloc(body);
    struct cl c;
    struct rep r;

    assert_non_null(junk);
    memset(junk, 'j', body);
    serve(fx, "internal");
    cl_open(fx, &c);
    assert_int_equal(cl_send(fx, &c, head, sizeof(head) - 1), 0);
    assert_int_equal(cl_send(fx, &c, junk, body), 0);
    assert_int_equal(shutdown(c.fd, SHUT_WR), 0);
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_int_equal(r.status, 413);
    assert_hdr(&r, "Connection", "close");
    rep_free(&r);
    assert_int_equal(wait_eof(fx, &c, WAIT_MS), 1);
    assert_int_equal(fx->calls, 0);
    free(junk);
    cl_close(&c);
}

/*---- 8. The client gone while the handler holds its request ----*/

static void
client_gone(struct fx *fx, int reset, int take)
{
    struct cl c;
    struct linger lg = {1, 0};
    char *body;

    fx->mode = M_HOLD;
    serve(fx, "internal");
    cl_open(fx, &c);
    cl_sends(fx, &c, "GET /gone HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(run_until(fx, &fx->calls, 1, WAIT_MS));
    assert_int_equal(httpd_inflight(fx->h), 1);
    if (reset)
        assert_int_equal(
            setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    cl_close(&c);
    settle(fx);
    assert_int_equal(httpd_inflight(fx->h), 1);
    if (take) {
        body = brk_malloc(100000);
        assert_non_null(body);
        memset(body, 'z', 100000);
        fx->unanswered--;
        httpd_reply_take(fx->held[0], 200, "text/plain", body, 100000);
        fx->nheld = 0;
    } else {
        release(fx);
    }
    settle(fx);
    assert_int_equal(httpd_inflight(fx->h), 0);
    /* the server goes on serving */
    fx->mode = M_NOW;
    {
        struct rep r;

        cl_open(fx, &c);
        roundtrip(fx, &c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n", &r);
        assert_string_equal(r.body, "reply to /next");
        rep_free(&r);
        cl_close(&c);
    }
}

static void
test_client_gone_fin(void **state)
{
    client_gone(*state, 0, 0);
}

static void
test_client_gone_reset(void **state)
{
    client_gone(*state, 1, 0);
}

static void
test_client_gone_reset_take(void **state)
{
    client_gone(*state, 1, 1);
}

static void
test_client_gone_fin_take(void **state)
{
    client_gone(*state, 0, 1);
}

/*---- 9. Large replies to a slow reader ----*/

static unsigned char
pattern(size_t i)
{
    return (unsigned char)((i * 2654435761u) >> 13 ^ i >> 16);
}

static void
reply_big(struct fx *fx, struct httpd_req *r)
{
    char *body;
    size_t i;

    fx->unanswered--;
    if (strcmp(httpd_path(r), "/big") != 0) {
        httpd_reply(r, 200, "text/plain", "small", 5);
        return;
    }
    body = brk_malloc(BIG_REPLY);
    assert_non_null(body);
    for (i = 0; i < BIG_REPLY; i++)
        body[i] = (char)pattern(i);
    httpd_reply_take(r, 200, "application/octet-stream", body, BIG_REPLY);
}

static void
test_large_reply_slow_reader(void **state)
{
    struct fx *fx = *state;
    struct cl c;
    struct rep r;
    int rcv = 16 * 1024, queued = -1, last = -2, same = 0;
    long long deadline;
    size_t i;

    fx->custom = reply_big;
    serve(fx, "internal");
    cl_open(fx, &c);
    assert_int_equal(setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)),
                     0);
    cl_sends(fx, &c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    /* the pause: run the server without reading until the socket stops
     * filling up (the server is then waiting to write) */
    deadline = now_ms() + WAIT_MS;
    while (same < 3) {
        assert_true(pump_slice(fx, -1, 0, deadline, 10));
        assert_int_equal(ioctl(c.fd, FIONREAD, &queued), 0);
        same = queued == last && queued > 0 ? same + 1 : 0;
        last = queued;
    }
    assert_true((size_t)queued < BIG_REPLY);
    assert_int_equal(fx->calls, 1);
    /* then read it all */
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, BIG_REPLY);
    for (i = 0; i < BIG_REPLY; i++)
        if ((unsigned char)r.body[i] != pattern(i))
            break;
    assert_int_equal(i, BIG_REPLY);
    rep_free(&r);
    roundtrip(fx, &c, "GET /small HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_string_equal(r.body, "small");
    rep_free(&r);
    assert_int_equal(fx->calls, 2);
    assert_int_equal(fx->seen[0].port, fx->seen[1].port);
    cl_close(&c);
}

/*---- 10. Headers ----*/

static int added_ok;

static void
reply_headers(struct fx *fx, struct httpd_req *r)
{
    size_t pos = 0, len = 0;
    const struct sockaddr *sa;
    const struct sockaddr_in *sin;
    char name[32], value[1100];
    enum brk_err err;
    int i;

    fx->unanswered--;
    assert_string_equal(httpd_header(r, "host"), "example.test");
    assert_string_equal(httpd_header(r, "HOST"), "example.test");
    assert_string_equal(httpd_header(r, "x-trim"), "a  b");
    assert_null(httpd_header(r, "X-None"));
    assert_null(httpd_header(r, "X-Du"));
    assert_string_equal(httpd_header_next(r, "x-dup", &pos), "one");
    assert_string_equal(httpd_header_next(r, "X-DUP", &pos), "two");
    assert_string_equal(httpd_header_next(r, "x-Dup", &pos), "three");
    assert_null(httpd_header_next(r, "x-dup", &pos));
    assert_null(httpd_header_next(r, "x-dup", &pos));
    assert_string_equal(httpd_header(r, "X-Dup"), "one");
    assert_string_equal(httpd_header(r, "X-Empty"), "");

    sa = httpd_peer(r, &len);
    assert_non_null(sa);
    assert_int_equal(sa->sa_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    sin = (const struct sockaddr_in *)sa;
    assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);

    assert_int_equal(httpd_add_header(r, "X-Good", "v1"), BRK_OK);
    assert_int_equal(httpd_add_header(r, "X-Tab", "a\tb"), BRK_OK);
    assert_int_equal(httpd_add_header(r, "X-Bad", "a\r\nX-Injected: 1"),
                     BRK_ERR_INVAL);
    assert_int_equal(httpd_add_header(r, "X-Bad", "a\nb"), BRK_ERR_INVAL);
    assert_int_equal(httpd_add_header(r, "X-Bad", "a\rb"), BRK_ERR_INVAL);
    assert_int_equal(httpd_add_header(r, "X-Bad", "a\x01"), BRK_ERR_INVAL);
    assert_int_equal(httpd_add_header(r, "X-Bad", "a\x7f"), BRK_ERR_INVAL);
    assert_int_equal(httpd_add_header(r, "X Bad", "v"), BRK_ERR_INVAL);
    assert_int_equal(httpd_add_header(r, "X-Bad:", "v"), BRK_ERR_INVAL);
    assert_int_equal(httpd_add_header(r, "X-Bad\r\nX-Injected", "v"),
                     BRK_ERR_INVAL);
    assert_int_equal(httpd_add_header(r, "", "v"), BRK_ERR_INVAL);
    assert_int_equal(httpd_add_header(r, "X-B\xc3\xa4", "v"), BRK_ERR_INVAL);
    /* fill up to HTTPD_EXTRA_MAX with 1000-byte values */
    memset(value, 'f', 1000);
    value[1000] = '\0';
    for (i = 0;; i++) {
        snprintf(name, sizeof(name), "X-Fill-%d", i);
        err = httpd_add_header(r, name, value);
        if (err != BRK_OK)
            break;
    }
    assert_int_equal(err, BRK_ERR_TOOBIG);
    added_ok = i;
    /* what still fits does */
    assert_int_equal(httpd_add_header(r, "X-Last", "z"), BRK_OK);
    httpd_reply(r, 204, "text/plain", NULL, 0);
}

static void
test_headers(void **state)
{
    struct fx *fx = *state;
    struct cl c;
    struct rep r;
    char v[1100], name[32];
    int i;

    fx->custom = reply_headers;
    serve(fx, "internal");
    cl_open(fx, &c);
    roundtrip(fx, &c,
              "GET /hdr HTTP/1.1\r\nhOsT: example.test\r\nX-Dup: one\r\n"
              "X-Trim:   a  b  \r\nx-dup: two\r\nX-Empty:\r\n"
              "X-DUP:three\r\n\r\n",
              &r);
    assert_int_equal(r.status, 204);
    assert_int_equal(fx->calls, 1);
    /* 4096 bytes hold the two small lines (24 bytes) and four
     * "X-Fill-N: <1000 bytes>\r\n" (1012 each), then "X-Last: z\r\n" */
    assert_int_equal(added_ok, 4);
    assert_hdr(&r, "X-Good", "v1");
    assert_hdr(&r, "X-Tab", "a\tb");
    assert_hdr(&r, "X-Last", "z");
    assert_int_equal(rep_count(&r, "X-Bad"), 0);
    assert_int_equal(rep_count(&r, "X-Injected"), 0);
    assert_null(strstr(r.head, "X Bad"));
    for (i = 0; i < added_ok; i++) {
        snprintf(name, sizeof(name), "X-Fill-%d", i);
        assert_non_null(rep_hdr(&r, name, v, sizeof(v)));
        assert_int_equal(strlen(v), 1000);
    }
    snprintf(name, sizeof(name), "X-Fill-%d", added_ok);
    assert_int_equal(rep_count(&r, name), 0);
    rep_free(&r);
    /* the extra headers were the first request's only */
    fx->custom = NULL;
    roundtrip(fx, &c, "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(rep_count(&r, "X-Good"), 0);
    assert_int_equal(rep_count(&r, "X-Last"), 0);
    rep_free(&r);
    cl_close(&c);
}

/*---- 11. Per-address cap on the public listener ----*/

static size_t
per_addr_cap(void)
{
    struct rlimit rl;
    size_t nofile = 1024, max_conns;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        nofile = (size_t)rl.rlim_cur;
    if (nofile > HTTPD_FD_TABLE_MAX)
        nofile = HTTPD_FD_TABLE_MAX;
    max_conns = nofile / 2;
    return HTTPD_PER_ADDR_MAX < max_conns / 4 ? HTTPD_PER_ADDR_MAX
                                              : max_conns / 4;
}

static void
test_per_addr_cap(void **state)
{
    struct fx *fx = *state;
    size_t cap = per_addr_cap(), i;
    struct cl *cs;
    struct cl extra;
    struct rep r;

    assert_true(cap > 0);
    cs = calloc(cap, sizeof(*cs));
    assert_non_null(cs);
    serve(fx, HTTPD_PUBLIC_LISTENER);
    for (i = 0; i < cap; i++) {
        cl_open(fx, &cs[i]);
        roundtrip(fx, &cs[i], "GET /c HTTP/1.1\r\nHost: x\r\n\r\n", &r);
        assert_int_equal(r.status, 200);
        rep_free(&r);
    }
    /* one over: closed at once, well before any request deadline */
    cl_open(fx, &extra);
    assert_int_equal(wait_eof(fx, &extra, 2000), 1);
    assert_int_equal(extra.len, 0);
    cl_close(&extra);
    /* the others are still served */
    roundtrip(fx, &cs[cap - 1], "GET /still HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_string_equal(r.body, "reply to /still");
    rep_free(&r);
    /* one closes: its place is free again */
    cl_close(&cs[0]);
    settle(fx);
    cl_open(fx, &cs[0]);
    roundtrip(fx, &cs[0], "GET /again HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_string_equal(r.body, "reply to /again");
    rep_free(&r);
    for (i = 0; i < cap; i++)
        cl_close(&cs[i]);
    free(cs);
}

/* The internal listener has no cap per address. */
static void
test_no_cap_internal(void **state)
{
    struct fx *fx = *state;
    size_t n = HTTPD_PER_ADDR_MAX + 2, i;
    struct cl *cs = calloc(n, sizeof(*cs));
    struct rep r;

    assert_non_null(cs);
    serve(fx, "internal");
    for (i = 0; i < n; i++) {
        cl_open(fx, &cs[i]);
        roundtrip(fx, &cs[i], "GET /c HTTP/1.1\r\nHost: x\r\n\r\n", &r);
        assert_int_equal(r.status, 200);
        rep_free(&r);
    }
    for (i = 0; i < n; i++)
        cl_close(&cs[i]);
    free(cs);
}

/*---- 12. Draining ----*/

static void
on_drained(void *arg)
{
    struct fx *fx = arg;

    fx->drained++;
}

static void
test_drain(void **state)
{
    struct fx *fx = *state;
    struct cl idle, busy;
    struct rep r;
    struct sockaddr_in sin;
    int fd, port;

    serve(fx, "internal");
    port = fx->port;
    cl_open(fx, &idle);
    roundtrip(fx, &idle, "GET /i HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    rep_free(&r);
    fx->mode = M_HOLD;
    cl_open(fx, &busy);
    cl_sends(fx, &busy, "GET /busy HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(run_until(fx, &fx->calls, 2, WAIT_MS));
    assert_int_equal(httpd_inflight(fx->h), 1);

    httpd_drain(fx->h, 10000, on_drained, fx);
    assert_int_equal(fx->drained, 0);
    /* the idle one is closed at once */
    assert_int_equal(wait_eof(fx, &idle, 2000), 1);
    cl_close(&idle);
    /* no new connections */
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_not_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(errno, ECONNREFUSED);
    close(fd);
    settle(fx);
    assert_int_equal(fx->drained, 0);

    release(fx);
    assert_true(wait_rep(fx, &busy, &r, 0));
    assert_string_equal(r.body, "reply to /busy");
    assert_hdr(&r, "Connection", "close");
    rep_free(&r);
    assert_int_equal(httpd_inflight(fx->h), 0);
    assert_int_equal(wait_eof(fx, &busy, WAIT_MS), 1);
    cl_close(&busy);
    assert_true(run_until(fx, &fx->drained, 1, WAIT_MS));
    settle(fx);
    assert_int_equal(fx->drained, 1);
}

/* Only idle connections: closing the last one ends the drain inside
 * httpd_drain itself. */
static void
test_drain_idle_only(void **state)
{
    struct fx *fx = *state;
    struct cl a, b;
    struct rep r;

    serve(fx, "internal");
    cl_open(fx, &a);
    roundtrip(fx, &a, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    rep_free(&r);
    cl_open(fx, &b);
    roundtrip(fx, &b, "GET /b HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    rep_free(&r);
    httpd_drain(fx->h, 10000, on_drained, fx);
    assert_int_equal(fx->drained, 1);
    assert_int_equal(wait_eof(fx, &a, 2000), 1);
    assert_int_equal(wait_eof(fx, &b, 2000), 1);
    cl_close(&a);
    cl_close(&b);
    settle(fx);
    assert_int_equal(fx->drained, 1);
}

/* The server freed while handlers hold requests (a call cancelled at
 * exit answers after it): the replies send nothing and free everything
 * (ASan in make check), the clients see their connections closed. */
static void
test_free_with_requests_held(void **state)
{
    struct fx *fx = *state;
    struct cl a, b;
    struct httpd_req *r;
    char *owned;

    serve(fx, "internal");
    fx->mode = M_HOLD;
    cl_open(fx, &a);
    cl_sends(fx, &a, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n");
    cl_open(fx, &b);
    cl_sends(fx, &b, "GET /taken HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_true(run_until(fx, &fx->calls, 2, WAIT_MS));
    assert_int_equal(fx->nheld, 2);
    httpd_free(fx->h);
    fx->h = NULL;
    assert_int_equal(wait_eof(fx, &a, 2000), 1);
    assert_int_equal(wait_eof(fx, &b, 2000), 1);
    assert_int_equal(a.len, 0);
    release(fx);
    r = fx->held[0];
    fx->nheld = 0;
    owned = brk_malloc(5);
    assert_non_null(owned);
    memcpy(owned, "taken", 5);
    fx->unanswered--;
    httpd_reply_take(r, 200, "text/plain", owned, 5);
    cl_close(&a);
    cl_close(&b);
}

/* The deadlines, shortened: a request that never completes and an idle
 * kept-alive connection are closed after the request deadline (the
 * handler never sees the first); a reply the client does not read is cut
 * off after the write deadline; a client that stays after a final reply
 * is closed after the linger. */
static void
test_deadlines(void **state)
{
    struct fx *fx = *state;
    struct cl a, b, c, d;
    struct rep r;
    int rcv = 16 * 1024, n;
    long long t0, deadline;

    serve(fx, "internal");
    httpd_set_deadlines(fx->h, 300, 300, 300);
    cl_open(fx, &a);
    cl_sends(fx, &a, "GET /never HT");
    t0 = now_ms();
    assert_int_equal(wait_eof(fx, &a, 3000), 1);
    assert_true(now_ms() - t0 >= 250);
    assert_int_equal(fx->calls, 0);
    cl_close(&a);

    cl_open(fx, &b);
    roundtrip(fx, &b, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    rep_free(&r);
    t0 = now_ms();
    assert_int_equal(wait_eof(fx, &b, 3000), 1);
    assert_true(now_ms() - t0 >= 250);
    cl_close(&b);

    fx->custom = reply_big;
    cl_open(fx, &c);
    assert_int_equal(setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)),
                     0);
    cl_sends(fx, &c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    /* the server runs, the client does not read, well past the deadline */
    deadline = now_ms() + 1200;
    while (pump_slice(fx, -1, 0, deadline, 10))
        ;
    n = wait_eof(fx, &c, 3000);
    assert_true(n != 0);
    assert_true(c.len < BIG_REPLY);
    cl_close(&c);
    fx->custom = NULL;

    /* asked to close, the client reads the reply and stays */
    cl_open(fx, &d);
    cl_sends(fx, &d,
             "GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_true(wait_rep(fx, &d, &r, 0));
    assert_string_equal(r.body, "reply to /bye");
    rep_free(&r);
    /* the server's FIN at once; while it lingers, what the client still
     * sends is read and dropped (no reset) */
    assert_int_equal(wait_eof(fx, &d, 3000), 1);
    assert_int_equal(send(d.fd, "more", 4, MSG_NOSIGNAL), 4);
    deadline = now_ms() + 50;
    while (pump_slice(fx, -1, 0, deadline, 10))
        ;
    assert_int_equal(send(d.fd, "more", 4, MSG_NOSIGNAL), 4);
    /* past the linger the socket is gone: the next bytes meet a reset */
    deadline = now_ms() + 700;
    while (pump_slice(fx, -1, 0, deadline, 10))
        ;
    (void)send(d.fd, "late", 4, MSG_NOSIGNAL);
    deadline = now_ms() + 100;
    while (pump_slice(fx, -1, 0, deadline, 10))
        ;
    assert_int_equal(send(d.fd, "late", 4, MSG_NOSIGNAL), -1);
    assert_true(errno == EPIPE || errno == ECONNRESET);
    cl_close(&d);
}

/*---- 13. TLS ----*/

static void
make_cert(struct fx *fx)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    X509_EXTENSION *ext;
    FILE *fp;
    int fd;

    assert_non_null(key);
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 11);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 30 * 86400);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"httpd test", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, key);
    ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, "IP:127.0.0.1");
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);

    snprintf(fx->cert_path, sizeof(fx->cert_path), "/tmp/test_httpd.c.XXXXXX");
    fd = mkstemp(fx->cert_path);
    assert_true(fd >= 0);
    fp = fdopen(fd, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_X509(fp, x), 1);
    fclose(fp);
    snprintf(fx->key_path, sizeof(fx->key_path), "/tmp/test_httpd.k.XXXXXX");
    fd = mkstemp(fx->key_path);
    assert_true(fd >= 0);
    fp = fdopen(fd, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL),
                     1);
    fclose(fp);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* An OpenSSL call's result rc on ssl: 1 done, else run the loop until
 * the socket is ready for what the call waits for (a failure is fatal). */
static int
tls_wait(struct fx *fx, SSL *ssl, int rc, long long deadline)
{
    int e;

    if (rc > 0)
        return 1;
    e = SSL_get_error(ssl, rc);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        fail_msg("TLS: error %d (errno %d): %s", e, errno,
                 ERR_reason_error_string(ERR_peek_error()));
    assert_true(pump_slice(fx, SSL_get_fd(ssl),
                           e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE,
                           deadline, WAIT_MS));
    return 0;
}

struct tls_cl {
    SSL_CTX *ctx;
    SSL *ssl;
    struct cl c;
    char buf[8192];
    size_t got;
};

/* Serve "callback" over TLS with a fresh certificate. */
static void
serve_tls(struct fx *fx)
{
    struct httpd_tls *t = NULL;
    struct brk_errinfo info;

    make_cert(fx);
    serve(fx, "callback");
    memset(&info, 0, sizeof(info));
    assert_int_equal(httpd_tls_load(fx->cert_path, fx->key_path, &t, &info),
                     BRK_OK);
    assert_int_equal(httpd_set_tls(fx->h, "callback", t), BRK_OK);
}

/* A TLS client that checks the server's certificate, handshake done. */
static void
tls_open(struct fx *fx, struct tls_cl *tc)
{
    long long deadline = now_ms() + WAIT_MS;

    memset(tc, 0, sizeof(*tc));
    tc->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(tc->ctx);
    assert_int_equal(
        SSL_CTX_load_verify_locations(tc->ctx, fx->cert_path, NULL), 1);
    SSL_CTX_set_verify(tc->ctx, SSL_VERIFY_PEER, NULL);
    tc->ssl = SSL_new(tc->ctx);
    assert_non_null(tc->ssl);
    assert_int_equal(
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(tc->ssl), "127.0.0.1"), 1);
    cl_open(fx, &tc->c);
    assert_int_equal(SSL_set_fd(tc->ssl, tc->c.fd), 1);
    while (!tls_wait(fx, tc->ssl, SSL_connect(tc->ssl), deadline))
        ;
    assert_int_equal(SSL_get_verify_result(tc->ssl), X509_V_OK);
}

static void
tls_close(struct tls_cl *tc)
{
    SSL_free(tc->ssl);
    SSL_CTX_free(tc->ctx);
    cl_close(&tc->c);
}

static void
tls_send(struct fx *fx, struct tls_cl *tc, const void *p, size_t n)
{
    long long deadline = now_ms() + WAIT_MS;

    while (!tls_wait(fx, tc->ssl, SSL_write(tc->ssl, p, (int)n), deadline))
        ;
}

static void
tls_sends(struct fx *fx, struct tls_cl *tc, const char *s)
{
    tls_send(fx, tc, s, strlen(s));
}

/* Read over TLS until the text want has arrived; the bytes read so far
 * are in tc->buf (NUL-terminated), emptied first. */
static void
tls_read_until(struct fx *fx, struct tls_cl *tc, const char *want)
{
    long long deadline = now_ms() + WAIT_MS;
    int n;

    tc->got = 0;
    tc->buf[0] = '\0';
    while (strstr(tc->buf, want) == NULL) {
        assert_true(tc->got < sizeof(tc->buf) - 1);
        n = SSL_read(tc->ssl, tc->buf + tc->got,
                     (int)(sizeof(tc->buf) - 1 - tc->got));
        if (tls_wait(fx, tc->ssl, n, deadline)) {
            tc->got += (size_t)n;
            tc->buf[tc->got] = '\0';
        }
    }
}

static void
test_tls(void **state)
{
    struct fx *fx = *state;
    static const char req[] = "GET /secure?q=1 HTTP/1.1\r\nHost: x\r\n\r\n";
    struct tls_cl tc;

    serve_tls(fx);
    tls_open(fx, &tc);
    tls_send(fx, &tc, req, sizeof(req) - 1);
    tls_read_until(fx, &tc, "reply to /secure");
    assert_int_equal(strncmp(tc.buf, "HTTP/1.1 200 OK\r\n", 17), 0);
    assert_non_null(strstr(tc.buf, "\r\nContent-Length: 16\r\n"));
    assert_int_equal(fx->calls, 1);
    assert_string_equal(fx->seen[0].path, "/secure");
    assert_string_equal(fx->seen[0].query, "q=1");
    /* kept alive: a second request on the same connection */
    tls_sends(fx, &tc, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
    tls_read_until(fx, &tc, "reply to /again");
    assert_int_equal(fx->calls, 2);
    assert_int_equal(fx->seen[0].port, fx->seen[1].port);
    tls_close(&tc);
}

/* A body at the server's limit over TLS, and a request pipelined after
 * it in the same write. */
static void
test_tls_body(void **state)
{
    struct fx *fx = *state;
    struct tls_cl tc;
    char *req = malloc(SERVER_MAX + 256);
    size_t n;

    assert_non_null(req);
    serve_tls(fx);
    tls_open(fx, &tc);
    n = (size_t)snprintf(
        req, 256, "POST /tb HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
        SERVER_MAX);
    memset(req + n, 't', SERVER_MAX);
    n += SERVER_MAX;
    n += (size_t)snprintf(req + n, 64, "GET /tb2 HTTP/1.1\r\nHost: x\r\n\r\n");
    tls_send(fx, &tc, req, n);
    tls_read_until(fx, &tc, "reply to /tb2");
    assert_non_null(strstr(tc.buf, "reply to /tb"));
    assert_int_equal(fx->calls, 2);
    assert_int_equal(fx->seen[0].body_len, SERVER_MAX);
    assert_int_equal(fx->seen[0].body[SERVER_MAX - 1], 't');
    assert_string_equal(fx->seen[1].path, "/tb2");
    free(req);
    tls_close(&tc);
}

static void
test_tls_refuses_plain(void **state)
{
    struct fx *fx = *state;
    struct cl plain;

    serve_tls(fx);
    cl_open(fx, &plain);
    cl_sends(fx, &plain, "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_not_equal(wait_eof(fx, &plain, WAIT_MS), 0);
    assert_true(plain.len < 5 || memcmp(plain.buf, "HTTP/", 5) != 0);
    assert_int_equal(fx->calls, 0);
    cl_close(&plain);
}

/*---- TLS: the lingering close after a final reply ----*/

/* Read over TLS until the server's close_notify: 1, -1 when the
 * connection ends any other way (a reset, a FIN without close_notify), 0
 * at the deadline. What was read is appended to tc->buf (NUL-terminated,
 * the rest dropped). */
static int
tls_read_closed(struct fx *fx, struct tls_cl *tc, long ms)
{
    long long deadline = now_ms() + ms;
    char sink[4096];
    size_t k;
    int n, e;

    for (;;) {
        ERR_clear_error();
        n = SSL_read(tc->ssl, sink, (int)sizeof(sink));
        if (n > 0) {
            k = (size_t)n;
            if (k > sizeof(tc->buf) - 1 - tc->got)
                k = sizeof(tc->buf) - 1 - tc->got;
            memcpy(tc->buf + tc->got, sink, k);
            tc->got += k;
            tc->buf[tc->got] = '\0';
            continue;
        }
        e = SSL_get_error(tc->ssl, n);
        if (e == SSL_ERROR_ZERO_RETURN)
            return 1;
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            ERR_clear_error();
            return -1;
        }
        if (!pump_slice(fx, SSL_get_fd(tc->ssl),
                        e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE, deadline,
                        WAIT_MS))
            return 0;
    }
}

/* Send the head of a body declared far over the limit and pre bytes of
 * the body, and read the 413 it earns; the connection lingers. */
static void
tls_refused(struct fx *fx, struct tls_cl *tc, size_t pre)
{
    static const char head[] = "POST /up HTTP/1.1\r\nHost: x\r\n"
                               "Content-Length: 20971520\r\n\r\n";
    char *req = malloc(sizeof(head) + pre);

    assert_non_null(req);
    memcpy(req, head, sizeof(head) - 1);
    memset(req + sizeof(head) - 1, 'b', pre);
    tls_send(fx, tc, req, sizeof(head) - 1 + pre);
    free(req);
    tls_read_until(fx, tc, "\r\n\r\nContent Too Large\n");
    assert_int_equal(strncmp(tc->buf, "HTTP/1.1 413 ", 13), 0);
    assert_non_null(strstr(tc->buf, "\r\nConnection: close\r\n"));
}

/* Run the loop (the server) for ms, the client idle. */
static void
idle(struct fx *fx, long ms)
{
    long long deadline = now_ms() + ms;

    while (pump_slice(fx, -1, 0, deadline, 10))
        ;
}

/*
 * Over TLS, a 20 MB upload refused with 413 at its head: the client reads
 * the 413, then goes on sending 1 MB of its body, as a client busy writing
 * does. The server reads and throws that away: every write succeeds, the
 * client reads the server's close_notify (not a reset), and once the
 * client's own close_notify arrives behind the megabyte the connection is
 * closed at once, not at the linger deadline.
 */
static void
test_tls_refusal_lingers(void **state)
{
    struct fx *fx = *state;
    size_t body = 1000 * 1000, off = 0, n;
    char *junk = malloc(body);
    struct tls_cl tc;
    long long t0;

    assert_non_null(junk);
    memset(junk, 'j', body);
    httpd_set_deadlines(fx->h, 0, 0, 4000);
    serve_tls(fx);
    tls_open(fx, &tc);
    /* some of the body is on its way when the refusal comes */
    tls_refused(fx, &tc, 16384);
    tc.got = 0;
    while (off < body) {
        n = body - off < 16384 ? body - off : 16384;
        tls_send(fx, &tc, junk + off, n);
        off += n;
    }
    assert_int_equal(tls_read_closed(fx, &tc, WAIT_MS), 1);
    assert_int_equal(tc.got, 0);
    assert_int_equal(fx->calls, 0);
    httpd_drain(fx->h, 10000, on_drained, fx);
    settle(fx);
    assert_int_equal(fx->drained, 0);
    t0 = now_ms();
    assert_int_equal(SSL_shutdown(tc.ssl), 1);
    assert_true(run_until(fx, &fx->drained, 1, WAIT_MS));
    assert_true(now_ms() - t0 < 2000);
    free(junk);
    tls_close(&tc);
}

/* The server's FIN has reached c (the data before it left unread): 1, or
 * 0 at the deadline. */
static int
wait_rdhup(struct fx *fx, int fd, long ms)
{
    long long deadline = now_ms() + ms;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};

    for (;;) {
        p.revents = 0;
        if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP)))
            return 1;
        if (!pump_slice(fx, -1, 0, deadline, 5))
            return 0;
    }
}

/* CPU time of this process so far, user and system. */
static long long
cpu_ms(void)
{
    struct rusage ru;

    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

/*
 * A TLS client refused that then does nothing, reads nothing, closes
 * nothing: the server sends close_notify and FIN at once, still takes
 * what the client sends while it lingers, and closes at the linger
 * deadline (the client's next bytes then meet a reset).
 */
static void
test_tls_linger_deadline(void **state)
{
    struct fx *fx = *state;
    struct tls_cl tc;
    long long t0, wall, cpu;

    httpd_set_deadlines(fx->h, 0, 0, 600);
    serve_tls(fx);
    tls_open(fx, &tc);
    tls_sends(fx, &tc,
              "POST /up HTTP/1.1\r\nHost: x\r\n"
              "Content-Length: 20971520\r\n\r\n");
    assert_true(wait_rdhup(fx, tc.c.fd, WAIT_MS));
    t0 = now_ms();
    /* lingering: what comes is read and dropped, no reset */
    tls_sends(fx, &tc, "more of the body");
    idle(fx, 50);
    tls_sends(fx, &tc, "more of the body");
    idle(fx, 50);
    tls_sends(fx, &tc, "more of the body");
    assert_true(now_ms() - t0 < 450);
    /* past the deadline the socket is gone; the wait costs next to no
     * CPU (no busy loop on the lingering connection) */
    wall = now_ms();
    cpu = cpu_ms();
    idle(fx, 600 - (long)(now_ms() - t0) + 200);
    assert_true((cpu_ms() - cpu) * 4 < now_ms() - wall);
    (void)send(tc.c.fd, "late", 4, MSG_NOSIGNAL);
    idle(fx, 100);
    assert_int_equal(send(tc.c.fd, "late", 4, MSG_NOSIGNAL), -1);
    assert_true(errno == EPIPE || errno == ECONNRESET);
    assert_int_equal(fx->calls, 0);
    tls_close(&tc);
}

/*
 * A drain (the SIGTERM path) with a TLS connection lingering, its client
 * silent: the drain waits for it and completes at its linger deadline,
 * well within the drain's own timeout.
 */
static void
test_tls_linger_drain(void **state)
{
    struct fx *fx = *state;
    struct tls_cl a;
    long long t0;

    httpd_set_deadlines(fx->h, 0, 0, 400);
    serve_tls(fx);
    tls_open(fx, &a);
    tls_refused(fx, &a, 0);
    t0 = now_ms();
    httpd_drain(fx->h, 10000, on_drained, fx);
    settle(fx);
    assert_int_equal(fx->drained, 0);
    assert_true(run_until(fx, &fx->drained, 1, WAIT_MS));
    assert_true(now_ms() - t0 < 2000);
    a.got = 0;
    assert_int_equal(tls_read_closed(fx, &a, WAIT_MS), 1);
    tls_close(&a);
}

/*
 * With a long linger, one client answers the server's close_notify with
 * its own and another closes its socket: each ends its linger, and a
 * drain waiting for them completes at once.
 */
static void
test_tls_linger_ends_early(void **state)
{
    struct fx *fx = *state;
    struct tls_cl a, b;
    long long t0;

    httpd_set_deadlines(fx->h, 0, 0, 8000);
    serve_tls(fx);
    tls_open(fx, &a);
    tls_refused(fx, &a, 0);
    tls_open(fx, &b);
    tls_refused(fx, &b, 0);
    httpd_drain(fx->h, 20000, on_drained, fx);
    settle(fx);
    assert_int_equal(fx->drained, 0);
    t0 = now_ms();
    a.got = 0;
    assert_int_equal(tls_read_closed(fx, &a, WAIT_MS), 1);
    assert_int_equal(SSL_shutdown(a.ssl), 1);
    idle(fx, 50);
    assert_int_equal(fx->drained, 0);
    tls_close(&b);
    assert_true(run_until(fx, &fx->drained, 1, WAIT_MS));
    assert_true(now_ms() - t0 < 2000);
    tls_close(&a);
}

/*---- What the server reads while a request is held ----*/

/* Bytes a client may push while its request is held before the server's
 * share must have stopped it: the kernel's buffers on both ends of a
 * loopback connection hold a few MB. */
#define HELD_PUSH_MAX (48 * 1024 * 1024)

/*
 * Write chunks of 1 MB with send (ssl NULL) or over TLS until the socket
 * stays full for 200 ms or HELD_PUSH_MAX is reached; returns the bytes
 * written.
 */
static size_t
push_until_full(struct fx *fx, struct cl *c, SSL *ssl)
{
    static char chunk[1024 * 1024];
    long long deadline = now_ms() + 4 * WAIT_MS, full_at;
    size_t total = 0, off = 0;
    int n, e;

    memset(chunk, 'p', sizeof(chunk));
    while (total < HELD_PUSH_MAX) {
        if (ssl != NULL) {
            n = SSL_write(ssl, chunk, (int)sizeof(chunk));
            if (n > 0) {
                total += (size_t)n;
                continue;
            }
            e = SSL_get_error(ssl, n);
            assert_true(e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ);
        } else {
            n = (int)send(c->fd, chunk + off, sizeof(chunk) - off,
                          MSG_NOSIGNAL);
            if (n > 0) {
                total += (size_t)n;
                off = (off + (size_t)n) % sizeof(chunk);
                continue;
            }
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        }
        /* the server runs meanwhile: full means no room for 200 ms */
        assert_true(now_ms() < deadline);
        g_ready = 0;
        full_at = now_ms() + 200;
        while (!g_ready && now_ms() < full_at)
            assert_true(pump_fd(fx, c->fd, EV_WRITE,
                                full_at < deadline ? full_at : deadline));
        if (!g_ready)
            break;
    }
    return total;
}

static void
held_input_bounded(struct fx *fx, int tls)
{
    struct tls_cl tc;
    struct cl plain, *c;
    size_t pushed;

    fx->mode = M_HOLD;
    if (tls) {
        serve_tls(fx);
        tls_open(fx, &tc);
        c = &tc.c;
        tls_sends(fx, &tc, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n");
    } else {
        serve(fx, "callback");
        cl_open(fx, &plain);
        c = &plain;
        cl_sends(fx, c, "GET /held HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    assert_true(run_until(fx, &fx->calls, 1, WAIT_MS));
    pushed = push_until_full(fx, c, tls ? tc.ssl : NULL);
    assert_true(pushed < HELD_PUSH_MAX);
    release(fx);
    settle(fx);
    assert_int_equal(httpd_inflight(fx->h), 0);
    if (tls)
        tls_close(&tc);
    else
        cl_close(&plain);
}

/* While the handler holds a request, later bytes wait in the kernel: the
 * server does not buffer what the client goes on sending. */
static void
test_held_input_bounded(void **state)
{
    held_input_bounded(*state, 0);
}

static void
test_tls_held_input_bounded(void **state)
{
    held_input_bounded(*state, 1);
}

/*---- The listener's connection cap ----*/

/* With 64 descriptors at listen time the internal listener holds 16
 * connections; a 17th waits in the backlog until one closes. */
static void
test_conn_cap_backlog(void **state)
{
    struct fx *fx = *state;
    struct rlimit saved, low;
    struct cl cs[17];
    struct rep r;
    int i;

    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    low = saved;
    low.rlim_cur = 64;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    serve(fx, "internal");
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    for (i = 0; i < 16; i++) {
        cl_open(fx, &cs[i]);
        roundtrip(fx, &cs[i], "GET /c HTTP/1.1\r\nHost: x\r\n\r\n", &r);
        rep_free(&r);
    }
    cl_open(fx, &cs[16]);
    cl_sends(fx, &cs[16], "GET /waiting HTTP/1.1\r\nHost: x\r\n\r\n");
    settle(fx);
    cl_fill(&cs[16]);
    assert_int_equal(cs[16].len, 0);
    assert_int_equal(cs[16].eof, 0);
    assert_int_equal(fx->calls, 16);
    cl_close(&cs[0]);
    assert_true(wait_rep(fx, &cs[16], &r, 0));
    assert_string_equal(r.body, "reply to /waiting");
    rep_free(&r);
    for (i = 1; i < 17; i++)
        cl_close(&cs[i]);
}

/*---- The server's own body limit ----*/

static void
test_body_limits(void **state)
{
    struct fx *fx = *state;
    struct cl c;
    struct rep r;
    char *req = malloc(SERVER_MAX + 256);
    size_t n;

    assert_non_null(req);
    serve(fx, "internal");
    /* exactly the limit, by Content-Length: the handler has it all */
    n = (size_t)snprintf(
        req, 256, "POST /max HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
        SERVER_MAX);
    memset(req + n, 'm', SERVER_MAX);
    cl_open(fx, &c);
    assert_int_equal(cl_send(fx, &c, req, n + SERVER_MAX), 0);
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_int_equal(r.status, 200);
    rep_free(&r);
    assert_int_equal(fx->seen[0].body_len, SERVER_MAX);
    assert_int_equal(fx->seen[0].body[SERVER_MAX - 1], 'm');
    /* and chunked, in two chunks */
    n = (size_t)snprintf(
        req, 256,
        "POST /maxc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
        "\r\n\r\n%x\r\n",
        SERVER_MAX - 1);
    memset(req + n, 'c', SERVER_MAX - 1);
    n += SERVER_MAX - 1;
    n += (size_t)snprintf(req + n, 64, "\r\n1\r\nc\r\n0\r\n\r\n");
    assert_int_equal(cl_send(fx, &c, req, n), 0);
    assert_true(wait_rep(fx, &c, &r, 0));
    assert_int_equal(r.status, 200);
    rep_free(&r);
    assert_int_equal(fx->seen[1].body_len, SERVER_MAX);
    cl_close(&c);
    free(req);
    forget_calls(fx);

    /* one byte over, declared: 413 before any body */
    n = (size_t)snprintf(
        req = malloc(256), 256,
        "POST /over HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
        SERVER_MAX + 1);
    refused(fx, req, n, 413);
    /* chunked: a chunk that takes the body over */
    n = (size_t)snprintf(
        req, 256,
        "POST /overc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
        "\r\n\r\n%x\r\n",
        SERVER_MAX + 1);
    refused(fx, req, n, 413);
    free(req);
    forget_calls(fx);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_keepalive),
        T(test_pipelining),
        T(test_pipelining_async),
        T(test_pipelining_held),
        T(test_body_length),
        T(test_body_chunked),
        T(test_body_bytewise),
        T(test_expect_continue),
        T(test_expect_over_limit),
        T(test_head),
        T(test_no_content),
        T(test_http10_closes),
        T(test_http10_keepalive),
        T(test_http11_connection_close),
        T(test_hostile_framing),
        T(test_hostile_sizes),
        T(test_refusal_lingers),
        T(test_client_gone_fin),
        T(test_client_gone_reset),
        T(test_client_gone_fin_take),
        T(test_client_gone_reset_take),
        T(test_large_reply_slow_reader),
        T(test_headers),
        T(test_per_addr_cap),
        T(test_no_cap_internal),
        T(test_drain),
        T(test_drain_idle_only),
        T(test_free_with_requests_held),
        T(test_deadlines),
        T(test_tls),
        T(test_tls_body),
        T(test_tls_refuses_plain),
        T(test_tls_refusal_lingers),
        T(test_tls_linger_deadline),
        T(test_tls_linger_drain),
        T(test_tls_linger_ends_early),
        T(test_held_input_bounded),
        T(test_tls_held_input_bounded),
        T(test_conn_cap_backlog),
        T(test_body_limits),
    };

    signal(SIGPIPE, SIG_IGN);
    log_init(getenv("TEST_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_ERROR, 0);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
