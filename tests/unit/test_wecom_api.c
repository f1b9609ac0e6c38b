/*
 * Unit tests for wecom_api.c against a fake upstream: an evhttp server on
 * 127.0.0.1 in this process, on the same event_base as the client. Covers
 * the result mapping, hostile bodies, limits, keep-alive, rate limiting,
 * shutdown, streaming and allocation failures.
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
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#include "broker.h"
#include "log.h"
#include "wecom_api.h"

#define MAX_CONNS 256
#define MAX_ORDER 64
#define MAX_RECS  64

/*---- Fake upstream ----*/

struct fx;

/* A reply the fake upstream holds back. */
struct delayed {
    struct fx *fx;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event *ev;
    int gone; /* replied, or the connection closed */
    struct delayed *next;
};

/* A chunked reply sent one piece per timer tick. */
struct sender {
    struct fx *fx;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event *ev;
    size_t chunk;
    int count;
    int sent;
    long interval_ms;
    int closed;
    int finished;
    struct sender *next;
};

struct fx {
    struct event_base *base;
    struct evhttp *http;
    int port;
    char url[64];
    struct wecom_api *api;
    /* what the fake upstream saw */
    int requests;
    int conns_accepted;
    struct evhttp_connection *live[MAX_CONNS];
    int nlive;
    char method[8];
    char ctype[64];
    char ua[64];
    char host[64];
    int has_expect;
    char uri[512];
    char body[8192];
    size_t body_len;
    int order[MAX_ORDER];
    int norder;
    struct delayed *delayed;
    struct sender *senders;
    struct sender *last_sender;
    int watchdog_fired;
};

static unsigned char
pattern(size_t i)
{
    return (unsigned char)((i * 131) ^ (i >> 9));
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long
query_long(struct evhttp_request *req, const char *name, long def)
{
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq kv;
    const char *v;
    long r = def;

    if (q == NULL || evhttp_parse_query_str(q, &kv) != 0)
        return def;
    v = evhttp_find_header(&kv, name);
    if (v != NULL)
        r = strtol(v, NULL, 10);
    evhttp_clear_headers(&kv);
    return r;
}

static void
reply(struct evhttp_request *req, int code, const char *body, size_t len)
{
    struct evbuffer *b = evbuffer_new();

    evbuffer_add(b, body, len);
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Status", b);
    evbuffer_free(b);
}

static void
reply_str(struct evhttp_request *req, int code, const char *body)
{
    reply(req, code, body, strlen(body));
}

static void
on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    struct fx *fx = arg;
    struct delayed *d;
    struct sender *s;
    int i;

    for (i = 0; i < fx->nlive; i++) {
        if (fx->live[i] == evcon) {
            fx->live[i] = fx->live[--fx->nlive];
            break;
        }
    }
    /*
     * A request still attached is freed by evhttp after this returns; one
     * it detached (a reply the handler had not finished) is ours to end,
     * which frees it.
     */
    for (d = fx->delayed; d != NULL; d = d->next) {
        if (d->evcon == evcon && !d->gone) {
            d->gone = 1;
            event_del(d->ev);
            if (evhttp_request_get_connection(d->req) == NULL)
                reply_str(d->req, 200, "{}");
        }
    }
    for (s = fx->senders; s != NULL; s = s->next) {
        if (s->evcon == evcon && !s->closed && !s->finished) {
            s->closed = 1;
            event_del(s->ev);
            if (evhttp_request_get_connection(s->req) == NULL)
                evhttp_send_reply_end(s->req);
        }
    }
}

static void
track_connection(struct fx *fx, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    int i;

    for (i = 0; i < fx->nlive; i++)
        if (fx->live[i] == evcon)
            return;
    if (fx->nlive < MAX_CONNS)
        fx->live[fx->nlive++] = evcon;
    fx->conns_accepted++;
    evhttp_connection_set_closecb(evcon, on_conn_close, fx);
}

static void
delayed_fire(evutil_socket_t fd, short what, void *arg)
{
    struct delayed *d = arg;

    (void)fd;
    (void)what;
    if (d->gone)
        return;
    d->gone = 1;
    reply_str(d->req, 200, "{\"errcode\":0,\"errmsg\":\"ok\"}");
}

static void
start_delayed(struct fx *fx, struct evhttp_request *req, long ms)
{
    struct delayed *d = calloc(1, sizeof(*d));
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    assert_non_null(d);
    d->fx = fx;
    d->req = req;
    d->evcon = evhttp_request_get_connection(req);
    d->ev = evtimer_new(fx->base, delayed_fire, d);
    d->next = fx->delayed;
    fx->delayed = d;
    evtimer_add(d->ev, &tv);
}

static void
sender_tick(evutil_socket_t fd, short what, void *arg)
{
    struct sender *s = arg;
    struct timeval tv = {s->interval_ms / 1000, (s->interval_ms % 1000) * 1000};
    struct evbuffer *b;
    unsigned char *buf;
    size_t i, off = (size_t)s->sent * s->chunk;

    (void)fd;
    (void)what;
    if (s->closed || s->finished)
        return;
    buf = malloc(s->chunk);
    assert_non_null(buf);
    for (i = 0; i < s->chunk; i++)
        buf[i] = pattern(off + i);
    b = evbuffer_new();
    evbuffer_add(b, buf, s->chunk);
    free(buf);
    evhttp_send_reply_chunk(s->req, b);
    evbuffer_free(b);
    s->sent++;
    if (s->sent == s->count) {
        evhttp_send_reply_end(s->req);
        s->finished = 1;
        return;
    }
    evtimer_add(s->ev, &tv);
}

static void
start_sender(struct fx *fx, struct evhttp_request *req)
{
    struct sender *s = calloc(1, sizeof(*s));
    struct timeval tv = {0, 0};

    assert_non_null(s);
    s->fx = fx;
    s->req = req;
    s->evcon = evhttp_request_get_connection(req);
    s->chunk = (size_t)query_long(req, "chunk", 1024);
    s->count = (int)query_long(req, "count", 1);
    s->interval_ms = query_long(req, "ms", 0);
    s->ev = evtimer_new(fx->base, sender_tick, s);
    s->next = fx->senders;
    fx->senders = s;
    fx->last_sender = s;
    evhttp_send_reply_start(req, 200, "OK");
    evtimer_add(s->ev, &tv);
}

static void
record_echo(struct fx *fx, struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    const char *v;
    size_t n;

    snprintf(fx->method, sizeof(fx->method), "%s",
             evhttp_request_get_command(req) == EVHTTP_REQ_POST  ? "POST"
             : evhttp_request_get_command(req) == EVHTTP_REQ_GET ? "GET"
                                                                 : "OTHER");
    v = evhttp_find_header(h, "Content-Type");
    snprintf(fx->ctype, sizeof(fx->ctype), "%s", v != NULL ? v : "");
    v = evhttp_find_header(h, "User-Agent");
    snprintf(fx->ua, sizeof(fx->ua), "%s", v != NULL ? v : "");
    v = evhttp_find_header(h, "Host");
    snprintf(fx->host, sizeof(fx->host), "%s", v != NULL ? v : "");
    fx->has_expect = evhttp_find_header(h, "Expect") != NULL;
    snprintf(fx->uri, sizeof(fx->uri), "%s", evhttp_request_get_uri(req));
    n = evbuffer_get_length(in);
    if (n >= sizeof(fx->body))
        n = sizeof(fx->body) - 1;
    evbuffer_copyout(in, fx->body, n);
    fx->body[n] = '\0';
    fx->body_len = evbuffer_get_length(in);
}

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct fx *fx = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    char *big;
    long n;

    fx->requests++;
    track_connection(fx, req);
    if (path == NULL)
        path = "";
    if (strcmp(path, "/ok") == 0) {
        reply_str(req, 200, "{\"errcode\":0,\"errmsg\":\"ok\",\"x\":1}");
    } else if (strcmp(path, "/token") == 0) {
        reply_str(req, 200,
                  "{\"suite_access_token\":\"tok123\",\"expires_in\":7200}");
    } else if (strcmp(path, "/err40014") == 0) {
        reply_str(req, 200,
                  "{\"errcode\":40014,\"errmsg\":\"invalid access_token, "
                  "hint: [1]\",\"external_contact\":{}}");
    } else if (strcmp(path, "/err_nomsg") == 0) {
        reply_str(req, 200, "{\"errcode\":-1}");
    } else if (strcmp(path, "/notjson") == 0) {
        reply_str(req, 200, "<html>system busy</html>");
    } else if (strcmp(path, "/array") == 0) {
        reply_str(req, 200, "[{\"errcode\":0}]");
    } else if (strcmp(path, "/string") == 0) {
        reply_str(req, 200, "\"ok\"");
    } else if (strcmp(path, "/dup") == 0) {
        reply_str(req, 200,
                  "{\"errcode\":40014,\"errmsg\":\"x\",\"errcode\":0}");
    } else if (strcmp(path, "/errcode_str") == 0) {
        reply_str(req, 200, "{\"errcode\":\"0\",\"errmsg\":\"ok\"}");
    } else if (strcmp(path, "/errcode_real") == 0) {
        reply_str(req, 200, "{\"errcode\":0.0,\"errmsg\":\"ok\"}");
    } else if (strcmp(path, "/errmsg_int") == 0) {
        reply_str(req, 200, "{\"errcode\":0,\"errmsg\":1}");
    } else if (strcmp(path, "/trailing") == 0) {
        reply_str(req, 200, "{\"errcode\":0} {\"errcode\":1}");
    } else if (strcmp(path, "/empty") == 0) {
        reply_str(req, 200, "");
    } else if (strcmp(path, "/status500") == 0) {
        reply_str(req, 500, "{\"errcode\":0,\"errmsg\":\"ok\"}");
    } else if (strcmp(path, "/status500_empty") == 0) {
        reply_str(req, 500, "");
    } else if (strcmp(path, "/redirect") == 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Location",
                          "/ok");
        reply_str(req, 302, "{\"errcode\":0}");
    } else if (strcmp(path, "/sized") == 0) {
        /* {"errcode":0,"p":"xxx"} of exactly n bytes (n >= 20) */
        n = query_long(req, "n", 20);
        big = malloc((size_t)n + 1);
        assert_non_null(big);
        memset(big, 'x', (size_t)n);
        memcpy(big, "{\"errcode\":0,\"p\":\"", 18);
        memcpy(big + n - 2, "\"}", 2);
        reply(req, 200, big, (size_t)n);
        free(big);
    } else if (strcmp(path, "/big") == 0) {
        n = query_long(req, "n", 1);
        big = malloc((size_t)n);
        assert_non_null(big);
        memset(big, 'a', (size_t)n);
        reply(req, 200, big, (size_t)n);
        free(big);
    } else if (strcmp(path, "/chunked") == 0) {
        start_sender(fx, req);
    } else if (strcmp(path, "/slow") == 0) {
        start_delayed(fx, req, query_long(req, "ms", 1000));
    } else if (strcmp(path, "/echo") == 0) {
        record_echo(fx, req);
        reply_str(req, 200, "{\"errcode\":0,\"errmsg\":\"ok\"}");
    } else if (strcmp(path, "/order") == 0) {
        if (fx->norder < MAX_ORDER)
            fx->order[fx->norder++] = (int)query_long(req, "n", -1);
        reply_str(req, 200, "{\"errcode\":0,\"errmsg\":\"ok\"}");
    } else {
        reply_str(req, 404, "no such path");
    }
}

/*---- Client side ----*/

static int g_in_call; /* inside wecom_api_call / wecom_api_stream */
static int g_in_free; /* inside wecom_api_free */
static int g_done;    /* result callbacks so far */

struct rec {
    int calls;
    int early;   /* ran before the starting call returned */
    int in_free; /* ran from inside wecom_api_free */
    enum brk_err err;
    long status;
    long errcode;
    int has_errmsg;
    char errmsg[128];
    int has_body;
    long x;
    char token[64];
    double seconds;
    double at;
    /* actions taken in the callback */
    struct wecom_api *free_api;  /* free this client */
    struct wecom_api *chain_api; /* start another call on it */
    struct rec *chain_rec;
    enum brk_err chain_err;
    /* streaming */
    size_t bytes;
    int chunks;
    int bad_order;
    int abort_with;
    int chunks_at_done;
};

static void on_result(const struct wecom_api_result *res, void *arg);

static void
start_chain(struct rec *r)
{
    struct wecom_api *api = r->chain_api;

    r->chain_api = NULL;
    g_in_call = 1;
    r->chain_err =
        wecom_api_call(api, "GET", "/ok", NULL, NULL, on_result, r->chain_rec);
    g_in_call = 0;
}

static void
on_result(const struct wecom_api_result *res, void *arg)
{
    struct rec *r = arg;
    json_t *v;

    r->calls++;
    g_done++;
    if (g_in_call)
        r->early = 1;
    if (g_in_free)
        r->in_free = 1;
    r->err = res->err;
    r->status = res->http_status;
    r->errcode = res->errcode;
    r->has_errmsg = res->errmsg != NULL;
    if (res->errmsg != NULL)
        snprintf(r->errmsg, sizeof(r->errmsg), "%s", res->errmsg);
    r->has_body = res->body != NULL;
    if (res->body != NULL) {
        v = json_object_get(res->body, "x");
        if (json_is_integer(v))
            r->x = (long)json_integer_value(v);
        v = json_object_get(res->body, "suite_access_token");
        if (json_is_string(v))
            snprintf(r->token, sizeof(r->token), "%s", json_string_value(v));
    }
    r->seconds = res->seconds;
    r->at = now_s();
    r->chunks_at_done = r->chunks;
    if (r->chain_api != NULL)
        start_chain(r);
    if (r->free_api != NULL) {
        g_in_free = 1;
        wecom_api_free(r->free_api);
        g_in_free = 0;
    }
}

static int
on_chunk(const char *data, size_t len, void *arg)
{
    struct rec *r = arg;
    struct wecom_api *api;
    size_t i;

    r->chunks++;
    for (i = 0; i < len; i++)
        if ((unsigned char)data[i] != pattern(r->bytes + i))
            r->bad_order = 1;
    r->bytes += len;
    if (r->chain_api != NULL)
        start_chain(r);
    if (r->free_api != NULL) {
        api = r->free_api;
        r->free_api = NULL;
        wecom_api_free(api);
        /* the client is going away: new calls are refused */
        if (r->chain_rec != NULL)
            r->chain_err = wecom_api_call(api, "GET", "/ok", NULL, NULL,
                                          on_result, r->chain_rec);
    }
    return r->abort_with;
}

static enum brk_err
call(struct fx *fx, const char *method, const char *pq, const char *body,
     const char *key, struct rec *r)
{
    enum brk_err err;

    g_in_call = 1;
    err = wecom_api_call(fx->api, method, pq, body, key, on_result, r);
    g_in_call = 0;
    return err;
}

static enum brk_err
stream(struct fx *fx, const char *pq, struct rec *r)
{
    enum brk_err err;

    g_in_call = 1;
    err = wecom_api_stream(fx->api, "GET", pq, NULL, NULL, on_chunk, on_result,
                           r);
    g_in_call = 0;
    return err;
}

static void
watchdog(evutil_socket_t fd, short what, void *arg)
{
    struct fx *fx = arg;

    (void)fd;
    (void)what;
    fx->watchdog_fired = 1;
    event_base_loopbreak(fx->base);
}

/* Run the loop until target callbacks have run or max_ms passed. */
static int
run_until(struct fx *fx, int target, long max_ms)
{
    struct timeval tv = {max_ms / 1000, (max_ms % 1000) * 1000};
    struct event *wd = evtimer_new(fx->base, watchdog, fx);

    fx->watchdog_fired = 0;
    evtimer_add(wd, &tv);
    while (g_done < target && !fx->watchdog_fired)
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
make_api_ex(struct fx *fx, const char *base, long timeout_ms, size_t max_body,
            long rate, unsigned long max_keys)
{
    struct wecom_api_opts o = {base != NULL ? base : fx->url, timeout_ms,
                               max_body, rate, max_keys};

    assert_int_equal(wecom_api_new(fx->base, &o, &fx->api), BRK_OK);
}

static void
make_api(struct fx *fx, long timeout_ms, size_t max_body, long rate)
{
    make_api_ex(fx, NULL, timeout_ms, max_body, rate, 0);
}

static int
setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    struct evhttp_bound_socket *bs;
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);

    if (fx == NULL)
        return -1;
    fx->base = event_base_new();
    fx->http = fx->base != NULL ? evhttp_new(fx->base) : NULL;
    bs = fx->http != NULL
             ? evhttp_bind_socket_with_handle(fx->http, "127.0.0.1", 0)
             : NULL;
    if (bs == NULL || getsockname(evhttp_bound_socket_get_fd(bs),
                                  (struct sockaddr *)&sin, &sl) != 0) {
        if (fx->http != NULL)
            evhttp_free(fx->http);
        if (fx->base != NULL)
            event_base_free(fx->base);
        free(fx);
        return -1;
    }
    evhttp_set_gencb(fx->http, on_request, fx);
    fx->port = ntohs(sin.sin_port);
    snprintf(fx->url, sizeof(fx->url), "http://127.0.0.1:%d", fx->port);
    g_done = 0;
    g_in_call = 0;
    g_in_free = 0;
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *fx = *state;
    struct delayed *d;
    struct sender *s;

    wecom_api_free(fx->api);
    evhttp_free(fx->http); /* closes connections: pending replies are gone */
    while ((d = fx->delayed) != NULL) {
        fx->delayed = d->next;
        event_free(d->ev);
        free(d);
    }
    while ((s = fx->senders) != NULL) {
        fx->senders = s->next;
        event_free(s->ev);
        free(s);
    }
    event_base_free(fx->base);
    free(fx);
    brk_alloc_fail_at(0);
    return 0;
}

/* One call to completion; checks it ran once and never early. */
static void
call_one(struct fx *fx, const char *method, const char *pq, const char *body,
         struct rec *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(call(fx, method, pq, body, NULL, r), BRK_OK);
    assert_int_equal(r->calls, 0);
    assert_true(run_until(fx, g_done + 1, 5000));
    assert_int_equal(r->calls, 1);
    assert_int_equal(r->early, 0);
}

/*---- Options and arguments ----*/

static void
test_new_rejects_bad_options(void **state)
{
    struct fx *fx = *state;
    struct wecom_api *api = (struct wecom_api *)fx; /* sentinel */
    struct wecom_api_opts o = {fx->url, 1000, 1024, 0, 0};
    static const char *const bad_bases[] = {
        "ftp://127.0.0.1", "file:///etc/passwd", "127.0.0.1:80",
        "http://",         "http://h/p?q=1",     "http://h/#frag",
        "http://h/a b",    "http://h\r\nX: y",   "",
    };
    size_t i;

    assert_int_equal(wecom_api_new(NULL, &o, &api), BRK_ERR_INVAL);
    assert_int_equal(wecom_api_new(fx->base, NULL, &api), BRK_ERR_INVAL);
    assert_int_equal(wecom_api_new(fx->base, &o, NULL), BRK_ERR_INVAL);
    for (i = 0; i < nitems(bad_bases); i++) {
        o.base = bad_bases[i];
        assert_int_equal(wecom_api_new(fx->base, &o, &api), BRK_ERR_INVAL);
    }
    /* no base: a client for wecom_api_post only */
    o.base = NULL;
    assert_int_equal(wecom_api_new(fx->base, &o, &api), BRK_OK);
    assert_int_equal(
        wecom_api_call(api, "GET", "/x", NULL, NULL, on_result, NULL),
        BRK_ERR_INVAL);
    wecom_api_free(api);
    api = (struct wecom_api *)fx; /* the sentinel again */
    o.base = fx->url;
    o.timeout_ms = 0;
    assert_int_equal(wecom_api_new(fx->base, &o, &api), BRK_ERR_INVAL);
    o.timeout_ms = 1000;
    o.max_body = 0;
    assert_int_equal(wecom_api_new(fx->base, &o, &api), BRK_ERR_INVAL);
    o.max_body = 1024;
    o.rate_per_key = -1;
    assert_int_equal(wecom_api_new(fx->base, &o, &api), BRK_ERR_INVAL);
    /* out untouched on failure */
    assert_ptr_equal(api, (struct wecom_api *)fx);
    wecom_api_free(NULL);
    assert_int_equal(wecom_api_inflight(NULL), 0);
}

static void
test_base_with_trailing_slash(void **state)
{
    struct fx *fx = *state;
    char base[80];
    struct rec r;

    snprintf(base, sizeof(base), "%s/", fx->url);
    make_api_ex(fx, base, 2000, 4096, 0, 0);
    call_one(fx, "GET", "/echo", NULL, &r);
    assert_int_equal(r.err, BRK_OK);
    assert_string_equal(fx->uri, "/echo");
}

static void
test_call_rejects_bad_arguments(void **state)
{
    struct fx *fx = *state;
    static const char *const bad_paths[] = {
        "",      "ok",     "/a b",         "/a\r\nX-Injected: 1",
        "/a\tb", "/a\x7f", "/caf\xc3\xa9", "/a#frag",
    };
    char long_key[300];
    struct rec r;
    size_t i;

    make_api(fx, 2000, 4096, 10);
    memset(&r, 0, sizeof(r));
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';

    assert_int_equal(call(fx, "PUT", "/ok", NULL, NULL, &r), BRK_ERR_INVAL);
    assert_int_equal(call(fx, "get", "/ok", NULL, NULL, &r), BRK_ERR_INVAL);
    assert_int_equal(call(fx, "GET", "/ok", "{}", NULL, &r), BRK_ERR_INVAL);
    assert_int_equal(call(fx, "GET", "/ok", NULL, long_key, &r), BRK_ERR_INVAL);
    for (i = 0; i < nitems(bad_paths); i++)
        assert_int_equal(call(fx, "GET", bad_paths[i], NULL, NULL, &r),
                         BRK_ERR_INVAL);
    assert_int_equal(
        wecom_api_call(fx->api, "GET", "/ok", NULL, NULL, NULL, &r),
        BRK_ERR_INVAL);
    assert_int_equal(
        wecom_api_call(NULL, "GET", "/ok", NULL, NULL, on_result, &r),
        BRK_ERR_INVAL);
    assert_int_equal(
        wecom_api_call(fx->api, NULL, "/ok", NULL, NULL, on_result, &r),
        BRK_ERR_INVAL);
    assert_int_equal(
        wecom_api_call(fx->api, "GET", NULL, NULL, NULL, on_result, &r),
        BRK_ERR_INVAL);
    assert_int_equal(wecom_api_stream(fx->api, "GET", "/ok", NULL, NULL, NULL,
                                      on_result, &r),
                     BRK_ERR_INVAL);
    assert_int_equal(wecom_api_inflight(fx->api), 0);
    run_for(fx, 50);
    assert_int_equal(r.calls, 0);
    assert_int_equal(fx->requests, 0);
}

/*---- Result mapping ----*/

static void
test_success_errcode_zero(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_api(fx, 2000, 4096, 0);
    call_one(fx, "GET", "/ok", NULL, &r);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.errcode, 0);
    assert_int_equal(r.has_errmsg, 0);
    assert_int_equal(r.has_body, 1);
    assert_int_equal(r.x, 1);
    assert_true(r.seconds >= 0 && r.seconds < 5);
    assert_int_equal(wecom_api_inflight(fx->api), 0);
}

static void
test_token_api_without_errcode(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_api(fx, 2000, 4096, 0);
    call_one(fx, "POST", "/token",
             "{\"suite_id\":\"ww1\",\"suite_secret\":\"s\","
             "\"suite_ticket\":\"t\"}",
             &r);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(r.errcode, 0);
    assert_int_equal(r.has_body, 1);
    assert_string_equal(r.token, "tok123");
}

static void
test_wecom_error_40014(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_api(fx, 2000, 4096, 0);
    call_one(fx, "GET", "/err40014", NULL, &r);
    assert_int_equal(r.err, BRK_ERR_WECOM);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.errcode, 40014);
    assert_int_equal(r.has_errmsg, 1);
    assert_string_equal(r.errmsg, "invalid access_token, hint: [1]");
    assert_int_equal(r.has_body, 1);
}

static void
test_wecom_error_without_errmsg(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_api(fx, 2000, 4096, 0);
    call_one(fx, "GET", "/err_nomsg", NULL, &r);
    assert_int_equal(r.err, BRK_ERR_WECOM);
    assert_int_equal(r.errcode, -1);
    assert_int_equal(r.has_errmsg, 1);
    assert_string_equal(r.errmsg, "");
}

/* A hostile body must give UPSTREAM_BAD, no body and no errcode. */
static void
expect_bad_body(struct fx *fx, const char *path)
{
    struct rec r;

    make_api(fx, 2000, 4096, 0);
    call_one(fx, "GET", path, NULL, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.has_body, 0);
    assert_int_equal(r.has_errmsg, 0);
    assert_int_equal(r.errcode, 0);
}

static void
test_not_json(void **state)
{
    expect_bad_body(*state, "/notjson");
}

static void
test_top_level_array(void **state)
{
    expect_bad_body(*state, "/array");
}

static void
test_top_level_string(void **state)
{
    expect_bad_body(*state, "/string");
}

static void
test_duplicate_keys(void **state)
{
    expect_bad_body(*state, "/dup");
}

static void
test_errcode_as_string(void **state)
{
    expect_bad_body(*state, "/errcode_str");
}

static void
test_errcode_as_real(void **state)
{
    expect_bad_body(*state, "/errcode_real");
}

static void
test_errmsg_not_string(void **state)
{
    expect_bad_body(*state, "/errmsg_int");
}

static void
test_trailing_garbage(void **state)
{
    expect_bad_body(*state, "/trailing");
}

static void
test_empty_body(void **state)
{
    expect_bad_body(*state, "/empty");
}

static void
test_http_500(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_api(fx, 2000, 4096, 0);
    call_one(fx, "GET", "/status500", NULL, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(r.status, 500);
    assert_int_equal(r.has_body, 0);
    call_one(fx, "GET", "/status500_empty", NULL, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(r.status, 500);
}

static void
test_redirect_not_followed(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_api(fx, 2000, 4096, 0);
    call_one(fx, "GET", "/redirect", NULL, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(r.status, 302);
    assert_int_equal(fx->requests, 1);
}

/*---- Limits ----*/

static void
test_body_exactly_max_body(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_api(fx, 2000, 100, 0);
    call_one(fx, "GET", "/sized?n=100", NULL, &r);
    assert_int_equal(r.err, BRK_OK);
    call_one(fx, "GET", "/sized?n=101", NULL, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_TOOBIG);
    assert_int_equal(r.has_body, 0);
}

static void
test_body_too_big_with_length(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_api(fx, 2000, 4096, 0);
    call_one(fx, "GET", "/big?n=40960", NULL, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_TOOBIG);
    assert_int_equal(r.has_body, 0);
}

static void
test_body_too_big_chunked_aborts_early(void **state)
{
    struct fx *fx = *state;
    struct rec r;
    int sent_at_result;

    /* 20 chunks of 2 KiB: ten times max_body, one chunk per 20 ms */
    make_api(fx, 5000, 4096, 0);
    call_one(fx, "GET", "/chunked?chunk=2048&count=20&ms=20", NULL, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_TOOBIG);
    assert_non_null(fx->last_sender);
    sent_at_result = fx->last_sender->sent;
    assert_true(sent_at_result < 20);
    /* the client hung up: the upstream sees the close before the end */
    run_for(fx, 600);
    assert_int_equal(fx->last_sender->closed, 1);
    assert_int_equal(fx->last_sender->finished, 0);
    assert_true(fx->last_sender->sent < 20);
}

static void
test_timeout(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_api(fx, 200, 4096, 0);
    call_one(fx, "GET", "/slow?ms=1500", NULL, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_TIMEOUT);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.has_body, 0);
    assert_true(r.seconds >= 0.15);
    assert_true(r.seconds < 1.4);
}

static void
test_connection_refused(void **state)
{
    struct fx *fx = *state;
    struct sockaddr_in sin;
    socklen_t sl = sizeof(sin);
    char base[64];
    struct rec r;
    int fd;

    /* bound but not listening: connecting is refused */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", ntohs(sin.sin_port));
    make_api_ex(fx, base, 2000, 4096, 0, 0);
    call_one(fx, "GET", "/ok?access_token=t", NULL, &r);
    close(fd);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.has_body, 0);
}

static void
test_unresolvable_host(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_api_ex(fx, "http://no-such-host.invalid", 3000, 4096, 0, 0);
    call_one(fx, "GET", "/ok", NULL, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM);
    assert_int_equal(r.status, 0);
}

/*---- Requests as sent ----*/

static void
test_post_body_and_headers(void **state)
{
    struct fx *fx = *state;
    const char *body = "{\"auth_corpid\":\"wx1\",\"permanent_code\":\"p\"}";
    struct rec r;

    make_api(fx, 2000, 4096, 0);
    call_one(fx, "POST", "/echo?suite_access_token=T0K%2B&debug=1", body, &r);
    assert_int_equal(r.err, BRK_OK);
    assert_string_equal(fx->method, "POST");
    assert_string_equal(fx->ctype, "application/json");
    assert_string_equal(fx->body, body);
    assert_string_equal(fx->uri, "/echo?suite_access_token=T0K%2B&debug=1");
    assert_string_equal(fx->ua, "wecom-broker/" BROKER_VERSION);
    assert_int_equal(fx->has_expect, 0);
}

/* curl 7.88 would send "Expect: 100-continue" above 1 MiB */
static void
test_post_large_body_no_expect(void **state)
{
    struct fx *fx = *state;
    size_t n = 1200 * 1024;
    char *body = malloc(n + 1);
    struct rec r;

    assert_non_null(body);
    memset(body, ' ', n);
    body[0] = '{';
    body[n - 1] = '}';
    body[n] = '\0';
    make_api(fx, 5000, 4096, 0);
    call_one(fx, "POST", "/echo", body, &r);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(fx->has_expect, 0);
    assert_int_equal(fx->body_len, n);
    assert_memory_equal(fx->body, body, sizeof(fx->body) - 1);
    free(body);
}

static void
test_post_without_body(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_api(fx, 2000, 4096, 0);
    call_one(fx, "POST", "/echo", NULL, &r);
    assert_int_equal(r.err, BRK_OK);
    assert_string_equal(fx->method, "POST");
    assert_int_equal(fx->body_len, 0);
    assert_string_equal(fx->ctype, "application/json");
}

/* media/upload's call: a binary body (a NUL inside) under its own
 * Content-Type, streamed back */
static void
test_stream_body(void **state)
{
    struct fx *fx = *state;
    static const char body[] = "--b\r\n\r\nab\0cd\r\n--b--\r\n";
    struct rec r;

    make_api(fx, 2000, 4096, 0);
    memset(&r, 0, sizeof(r));
    assert_int_equal(wecom_api_stream_body(fx->api, "/ok", "Content-Type: x/y",
                                           body, sizeof(body) - 1, NULL, NULL,
                                           on_result, &r),
                     BRK_ERR_INVAL);
    assert_int_equal(wecom_api_stream_body(fx->api, "/ok", "x/y", body,
                                           sizeof(body) - 1, NULL, on_chunk,
                                           on_result, &r),
                     BRK_ERR_INVAL);
    assert_int_equal(wecom_api_stream_body(
                         fx->api, "/ok", "Content-Type: x/y\r\nX-A: 1", body,
                         sizeof(body) - 1, NULL, on_chunk, on_result, &r),
                     BRK_ERR_INVAL);
    assert_int_equal(wecom_api_stream_body(
                         fx->api, "/echo",
                         "Content-Type: multipart/form-data; boundary=b", body,
                         sizeof(body) - 1, NULL, on_chunk, on_result, &r),
                     BRK_OK);
    assert_true(run_until(fx, 1, 2000));
    assert_int_equal(r.err, BRK_OK);
    assert_string_equal(fx->method, "POST");
    assert_string_equal(fx->ctype, "multipart/form-data; boundary=b");
    assert_int_equal(fx->body_len, sizeof(body) - 1);
    assert_memory_equal(fx->body, body, sizeof(body) - 1);
    assert_true(r.chunks > 0);
}

static void
test_get_sends_no_body(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    make_api(fx, 2000, 4096, 0);
    call_one(fx, "GET", "/echo?access_token=a&userid=u%20v", NULL, &r);
    assert_int_equal(r.err, BRK_OK);
    assert_string_equal(fx->method, "GET");
    assert_string_equal(fx->ctype, "");
    assert_int_equal(fx->body_len, 0);
    assert_string_equal(fx->uri, "/echo?access_token=a&userid=u%20v");
}

/*---- Concurrency and connections ----*/

static void
test_fifty_concurrent_calls(void **state)
{
    struct fx *fx = *state;
    static struct rec r[50];
    int i;

    memset(r, 0, sizeof(r));
    make_api(fx, 5000, 4096, 0);
    for (i = 0; i < 50; i++)
        assert_int_equal(call(fx, "GET", "/ok", NULL, NULL, &r[i]), BRK_OK);
    assert_int_equal(wecom_api_inflight(fx->api), 50);
    assert_true(run_until(fx, 50, 10000));
    run_for(fx, 50); /* nothing runs twice */
    for (i = 0; i < 50; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].early, 0);
        assert_int_equal(r[i].err, BRK_OK);
    }
    assert_int_equal(g_done, 50);
    assert_int_equal(fx->requests, 50);
    assert_int_equal(wecom_api_inflight(fx->api), 0);
}

static void
test_keepalive_reuses_connection(void **state)
{
    struct fx *fx = *state;
    struct rec r;
    int i;

    make_api(fx, 2000, 4096, 0);
    for (i = 0; i < 20; i++) {
        call_one(fx, "GET", "/ok", NULL, &r);
        assert_int_equal(r.err, BRK_OK);
    }
    assert_int_equal(fx->requests, 20);
    assert_true(fx->conns_accepted >= 1);
    assert_true(fx->conns_accepted <= 2);
}

/* A reused (pooled) handle starts clean: a GET after a POST sends no
 * body and no JSON content type, and the next POST its own body. */
static void
test_pooled_handle_starts_clean(void **state)
{
    struct fx *fx = *state;
    struct rec r;
    int i;

    make_api(fx, 2000, 4096, 0);
    for (i = 0; i < 3; i++) {
        call_one(fx, "POST", "/echo?a=1", "{\"k\":1}", &r);
        assert_int_equal(r.err, BRK_OK);
        assert_string_equal(fx->method, "POST");
        assert_string_equal(fx->ctype, "application/json");
        assert_string_equal(fx->body, "{\"k\":1}");
        call_one(fx, "GET", "/echo?b=2", NULL, &r);
        assert_int_equal(r.err, BRK_OK);
        assert_string_equal(fx->method, "GET");
        assert_string_equal(fx->ctype, "");
        assert_int_equal(fx->body_len, 0);
        assert_string_equal(fx->uri, "/echo?b=2");
        assert_int_equal(fx->has_expect, 0);
        /* Host and User-Agent, given once for every call */
        assert_string_equal(fx->host, fx->url + strlen("http://"));
        assert_true(strncmp(fx->ua, "wecom-broker/", 13) == 0);
    }
    call_one(fx, "POST", "/echo", NULL, &r);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(fx->body_len, 0);
    assert_string_equal(fx->ctype, "application/json");
}

/* Connections idling between calls stay watched; when WeCom closes them
 * the watch goes quietly and the next calls open a new one. */
static void
test_idle_connection_closed_by_upstream(void **state)
{
    struct fx *fx = *state;
    struct rec r;
    int i;

    make_api(fx, 2000, 4096, 0);
    for (i = 0; i < 3; i++) {
        call_one(fx, "GET", "/ok", NULL, &r);
        assert_int_equal(r.err, BRK_OK);
    }
    assert_int_equal(fx->conns_accepted, 1);
    while (fx->nlive > 0)
        evhttp_connection_free(fx->live[0]);
    /* the client sees the close while nothing is under way */
    run_for(fx, 100);
    for (i = 0; i < 3; i++) {
        call_one(fx, "GET", "/ok", NULL, &r);
        assert_int_equal(r.err, BRK_OK);
    }
    assert_int_equal(fx->requests, 6);
    assert_int_equal(fx->conns_accepted, 2);
}

static void
test_call_from_result_callback(void **state)
{
    struct fx *fx = *state;
    struct rec r1, r2;

    make_api(fx, 2000, 4096, 0);
    memset(&r1, 0, sizeof(r1));
    memset(&r2, 0, sizeof(r2));
    r1.chain_api = fx->api;
    r1.chain_rec = &r2;
    assert_int_equal(call(fx, "GET", "/ok", NULL, NULL, &r1), BRK_OK);
    assert_true(run_until(fx, 2, 5000));
    assert_int_equal(r1.chain_err, BRK_OK);
    assert_int_equal(r1.calls, 1);
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r2.early, 0);
    assert_int_equal(r2.err, BRK_OK);
}

/*---- Rate limiting ----*/

static void
test_rate_limit_order_and_delay(void **state)
{
    struct fx *fx = *state;
    static struct rec ra[30];
    struct rec rb;
    char pq[32];
    double t0;
    int i, last = -1;

    memset(ra, 0, sizeof(ra));
    memset(&rb, 0, sizeof(rb));
    make_api(fx, 5000, 4096, 10);
    t0 = now_s();
    for (i = 0; i < 30; i++) {
        snprintf(pq, sizeof(pq), "/order?n=%d", i);
        assert_int_equal(call(fx, "GET", pq, NULL, "wwcorpA", &ra[i]), BRK_OK);
    }
    assert_int_equal(call(fx, "GET", "/ok", NULL, "wwcorpB", &rb), BRK_OK);
    assert_int_equal(wecom_api_inflight(fx->api), 31);
    assert_true(run_until(fx, 31, 15000));
    for (i = 0; i < 30; i++) {
        assert_int_equal(ra[i].calls, 1);
        assert_int_equal(ra[i].err, BRK_OK);
    }
    assert_int_equal(rb.err, BRK_OK);
    /* burst of 10, then one call per 100 ms, in the order they were made */
    assert_int_equal(fx->norder, 30);
    for (i = 0; i < 30; i++) {
        if (fx->order[i] >= 10) {
            assert_true(fx->order[i] > last);
            last = fx->order[i];
        }
    }
    assert_true(ra[29].at - t0 >= 1.5);
    for (i = 11; i < 30; i++)
        assert_true(ra[i].at >= ra[i - 1].at);
    /* another tenant is not held up behind corpA's queue */
    assert_true(rb.at < ra[15].at);
}

static void
test_rate_limit_per_key(void **state)
{
    struct fx *fx = *state;
    struct rec r1, r2, rnull, rother;
    double t0;

    memset(&r1, 0, sizeof(r1));
    memset(&r2, 0, sizeof(r2));
    memset(&rnull, 0, sizeof(rnull));
    memset(&rother, 0, sizeof(rother));
    make_api(fx, 5000, 4096, 1);
    t0 = now_s();
    assert_int_equal(call(fx, "GET", "/ok", NULL, "k", &r1), BRK_OK);
    assert_int_equal(call(fx, "GET", "/ok", NULL, "k", &r2), BRK_OK);
    assert_int_equal(call(fx, "GET", "/ok", NULL, NULL, &rnull), BRK_OK);
    assert_int_equal(call(fx, "GET", "/ok", NULL, "other", &rother), BRK_OK);
    assert_true(run_until(fx, 4, 5000));
    assert_int_equal(r2.err, BRK_OK);
    assert_int_equal(r2.early, 0);
    assert_true(r2.at - t0 >= 0.9);
    assert_true(r1.at < r2.at);
    assert_true(rnull.at < r2.at);
    assert_true(rother.at < r2.at);
}

static void
test_rate_key_table_bounded(void **state)
{
    struct fx *fx = *state;
    struct rec ra, rb, ra2, rc1, rc2, rd1, rd2, re;
    double td;

    memset(&ra, 0, sizeof(ra));
    memset(&rb, 0, sizeof(rb));
    memset(&ra2, 0, sizeof(ra2));
    memset(&rc1, 0, sizeof(rc1));
    memset(&rc2, 0, sizeof(rc2));
    memset(&rd1, 0, sizeof(rd1));
    memset(&rd2, 0, sizeof(rd2));
    memset(&re, 0, sizeof(re));
    make_api_ex(fx, NULL, 5000, 4096, 1, 2);
    /* a and b fill the table and stay busy for a second */
    assert_int_equal(call(fx, "GET", "/ok", NULL, "a", &ra), BRK_OK);
    assert_int_equal(call(fx, "GET", "/ok", NULL, "b", &rb), BRK_OK);
    assert_int_equal(call(fx, "GET", "/ok", NULL, "a", &ra2), BRK_OK);
    /* no slot for c: it runs unlimited rather than growing the table */
    assert_int_equal(call(fx, "GET", "/ok", NULL, "c", &rc1), BRK_OK);
    assert_int_equal(call(fx, "GET", "/ok", NULL, "c", &rc2), BRK_OK);
    assert_true(run_until(fx, 5, 5000));
    assert_true(rc2.at < ra2.at);
    /* once a and b are idle they are dropped and d is limited again */
    run_for(fx, 1300);
    g_done = 0;
    td = now_s();
    assert_int_equal(call(fx, "GET", "/ok", NULL, "d", &rd1), BRK_OK);
    assert_int_equal(call(fx, "GET", "/ok", NULL, "d", &rd2), BRK_OK);
    assert_int_equal(call(fx, "GET", "/ok", NULL, "e", &re), BRK_OK);
    assert_true(run_until(fx, 3, 5000));
    assert_true(rd2.at - td >= 0.9);
    assert_true(re.at < rd2.at);
    assert_true(rd1.at < rd2.at);
}

/*---- Shutdown ----*/

static void
test_free_with_calls_in_flight(void **state)
{
    struct fx *fx = *state;
    struct rec slow[4], rk1, rk2, rk3, rretry;
    int i;

    memset(slow, 0, sizeof(slow));
    memset(&rk1, 0, sizeof(rk1));
    memset(&rk2, 0, sizeof(rk2));
    memset(&rk3, 0, sizeof(rk3));
    memset(&rretry, 0, sizeof(rretry));
    make_api(fx, 5000, 4096, 1);
    for (i = 0; i < 4; i++)
        assert_int_equal(call(fx, "GET", "/slow?ms=3000", NULL, NULL, &slow[i]),
                         BRK_OK);
    assert_int_equal(call(fx, "GET", "/ok", NULL, "k", &rk1), BRK_OK);
    assert_int_equal(call(fx, "GET", "/ok", NULL, "k", &rk2), BRK_OK);
    assert_int_equal(call(fx, "GET", "/ok", NULL, "k", &rk3), BRK_OK);
    /* rk2 tries to start a call from its shutdown callback */
    rk2.chain_api = fx->api;
    rk2.chain_rec = &rretry;
    assert_true(run_until(fx, 1, 3000));
    run_for(fx, 200);
    assert_int_equal(rk1.calls, 1);
    assert_int_equal(rk1.err, BRK_OK);
    assert_int_equal(fx->requests, 5); /* the slow ones are at the server */
    assert_int_equal(wecom_api_inflight(fx->api), 6);

    g_in_free = 1;
    wecom_api_free(fx->api);
    g_in_free = 0;
    fx->api = NULL;
    for (i = 0; i < 4; i++) {
        assert_int_equal(slow[i].calls, 1);
        assert_int_equal(slow[i].in_free, 1);
        assert_int_equal(slow[i].err, BRK_ERR_SHUTDOWN);
        assert_int_equal(slow[i].has_body, 0);
    }
    assert_int_equal(rk2.calls, 1);
    assert_int_equal(rk2.err, BRK_ERR_SHUTDOWN);
    assert_int_equal(rk2.in_free, 1);
    assert_int_equal(rk2.chain_err, BRK_ERR_SHUTDOWN);
    assert_int_equal(rk3.calls, 1);
    assert_int_equal(rk3.err, BRK_ERR_SHUTDOWN);
    assert_int_equal(rk1.calls, 1);
    assert_int_equal(rk1.in_free, 0);
    run_for(fx, 300);
    assert_int_equal(g_done, 7);
    assert_int_equal(rretry.calls, 0);
    assert_int_equal(fx->requests, 5);
}

static void
test_free_from_result_callback(void **state)
{
    struct fx *fx = *state;
    struct rec rok, rs1, rs2;

    memset(&rok, 0, sizeof(rok));
    memset(&rs1, 0, sizeof(rs1));
    memset(&rs2, 0, sizeof(rs2));
    make_api(fx, 5000, 4096, 0);
    rok.free_api = fx->api;
    assert_int_equal(call(fx, "GET", "/slow?ms=3000", NULL, NULL, &rs1),
                     BRK_OK);
    assert_int_equal(call(fx, "GET", "/slow?ms=3000", NULL, NULL, &rs2),
                     BRK_OK);
    assert_int_equal(call(fx, "GET", "/ok", NULL, NULL, &rok), BRK_OK);
    assert_true(run_until(fx, 3, 3000));
    fx->api = NULL;
    assert_int_equal(rok.err, BRK_OK);
    assert_int_equal(rs1.err, BRK_ERR_SHUTDOWN);
    assert_int_equal(rs2.err, BRK_ERR_SHUTDOWN);
    assert_int_equal(rs1.in_free, 1);
    run_for(fx, 200);
    assert_int_equal(rok.calls + rs1.calls + rs2.calls, 3);
}

/*---- Streaming ----*/

static void
test_stream_one_megabyte_in_order(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    memset(&r, 0, sizeof(r));
    make_api(fx, 10000, 2 * 1024 * 1024, 0);
    assert_int_equal(stream(fx, "/chunked?chunk=65536&count=16&ms=0", &r),
                     BRK_OK);
    assert_true(run_until(fx, 1, 10000));
    run_for(fx, 50);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.early, 0);
    assert_int_equal(r.err, BRK_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.has_body, 0);
    assert_int_equal(r.errcode, 0);
    assert_int_equal(r.bytes, 1024 * 1024);
    assert_int_equal(r.bad_order, 0);
    assert_true(r.chunks > 1);
    assert_int_equal(r.chunks_at_done, r.chunks);
}

static void
test_stream_abort_with_own_error(void **state)
{
    struct fx *fx = *state;
    struct rec r;

    memset(&r, 0, sizeof(r));
    r.abort_with = BRK_ERR_TOOBIG;
    make_api(fx, 5000, 1024 * 1024, 0);
    assert_int_equal(stream(fx, "/chunked?chunk=4096&count=8&ms=10", &r),
                     BRK_OK);
    assert_true(run_until(fx, 1, 5000));
    run_for(fx, 150);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.err, BRK_ERR_TOOBIG);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.chunks, 1);
}

static void
test_stream_abort_with_bad_value(void **state)
{
    struct fx *fx = *state;
    struct rec r1, r2;

    memset(&r1, 0, sizeof(r1));
    memset(&r2, 0, sizeof(r2));
    r1.abort_with = -1;
    r2.abort_with = 99999;
    make_api(fx, 5000, 1024 * 1024, 0);
    assert_int_equal(stream(fx, "/chunked?chunk=4096&count=8&ms=10", &r1),
                     BRK_OK);
    assert_int_equal(stream(fx, "/chunked?chunk=4096&count=8&ms=10", &r2),
                     BRK_OK);
    assert_true(run_until(fx, 2, 5000));
    assert_int_equal(r1.err, BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(r2.err, BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(r1.chunks, 1);
    assert_int_equal(r2.chunks, 1);
}

static void
test_stream_error_status_sends_no_data(void **state)
{
    struct fx *fx = *state;
    struct rec r1, r2;

    memset(&r1, 0, sizeof(r1));
    memset(&r2, 0, sizeof(r2));
    make_api(fx, 5000, 4096, 0);
    assert_int_equal(stream(fx, "/status500", &r1), BRK_OK);
    assert_int_equal(stream(fx, "/status500_empty", &r2), BRK_OK);
    assert_true(run_until(fx, 2, 5000));
    assert_int_equal(r1.err, BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(r1.status, 500);
    assert_int_equal(r1.chunks, 0);
    assert_int_equal(r2.err, BRK_ERR_UPSTREAM_BAD);
    assert_int_equal(r2.status, 500);
    assert_int_equal(r2.chunks, 0);
}

static void
test_stream_too_big(void **state)
{
    struct fx *fx = *state;
    struct rec r1, r2;

    memset(&r1, 0, sizeof(r1));
    memset(&r2, 0, sizeof(r2));
    make_api(fx, 5000, 4096, 0);
    assert_int_equal(stream(fx, "/big?n=40960", &r1), BRK_OK);
    assert_int_equal(stream(fx, "/chunked?chunk=2048&count=20&ms=0", &r2),
                     BRK_OK);
    assert_true(run_until(fx, 2, 5000));
    assert_int_equal(r1.err, BRK_ERR_UPSTREAM_TOOBIG);
    assert_int_equal(r2.err, BRK_ERR_UPSTREAM_TOOBIG);
    assert_true(r1.bytes <= 4096);
    assert_true(r2.bytes <= 4096);
}

static void
test_call_from_chunk_callback(void **state)
{
    struct fx *fx = *state;
    struct rec rs, r2;

    memset(&rs, 0, sizeof(rs));
    memset(&r2, 0, sizeof(r2));
    make_api(fx, 5000, 1024 * 1024, 0);
    rs.chain_api = fx->api;
    rs.chain_rec = &r2;
    assert_int_equal(stream(fx, "/chunked?chunk=4096&count=4&ms=10", &rs),
                     BRK_OK);
    assert_true(run_until(fx, 2, 5000));
    assert_int_equal(rs.chain_err, BRK_OK);
    assert_int_equal(rs.err, BRK_OK);
    assert_int_equal(rs.bytes, 4 * 4096);
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r2.early, 0);
    assert_int_equal(r2.err, BRK_OK);
}

static void
test_free_from_chunk_callback(void **state)
{
    struct fx *fx = *state;
    struct rec rs, rslow, rlate;

    memset(&rs, 0, sizeof(rs));
    memset(&rslow, 0, sizeof(rslow));
    memset(&rlate, 0, sizeof(rlate));
    make_api(fx, 5000, 1024 * 1024, 0);
    rs.free_api = fx->api;
    rs.chain_rec = &rlate;
    assert_int_equal(call(fx, "GET", "/slow?ms=3000", NULL, NULL, &rslow),
                     BRK_OK);
    assert_int_equal(stream(fx, "/chunked?chunk=4096&count=8&ms=20", &rs),
                     BRK_OK);
    assert_true(run_until(fx, 2, 5000));
    fx->api = NULL;
    assert_int_equal(rs.chain_err, BRK_ERR_SHUTDOWN);
    assert_int_equal(rs.calls, 1);
    assert_int_equal(rs.err, BRK_ERR_SHUTDOWN);
    assert_true(rs.chunks >= 1);
    assert_true(rs.chunks < 8);
    assert_int_equal(rslow.calls, 1);
    assert_int_equal(rslow.err, BRK_ERR_SHUTDOWN);
    run_for(fx, 100);
    assert_int_equal(rs.chunks_at_done, rs.chunks);
    assert_int_equal(rlate.calls, 0);
    assert_int_equal(g_done, 2);
}

/*---- Logging ----*/

static void
test_logs_never_carry_the_query(void **state)
{
    struct fx *fx = *state;
    char path[] = "/tmp/test_wecom_api_log.XXXXXX";
    char buf[8192];
    struct rec r;
    int fd, saved;
    ssize_t n;

    fd = mkstemp(path);
    assert_true(fd >= 0);
    saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    log_init(LOG_LVL_DEBUG, 0);

    make_api(fx, 300, 4096, 0);
    call_one(fx, "GET", "/ok?access_token=SECRETTOKEN1", NULL, &r);
    call_one(fx, "POST", "/err40014?suite_access_token=SECRETTOKEN2",
             "{\"suite_secret\":\"SECRETBODY\"}", &r);
    call_one(fx, "GET", "/slow?ms=1000&access_token=SECRETTOKEN3", NULL, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_TIMEOUT);

    log_init(LOG_LVL_ERROR, 0);
    dup2(saved, STDERR_FILENO);
    close(saved);
    n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "GET /ok"));
    assert_non_null(strstr(buf, "POST /err40014"));
    assert_non_null(strstr(buf, "GET /slow"));
    assert_non_null(strstr(buf, "errcode=40014"));
    assert_null(strstr(buf, "SECRET"));
    assert_null(strstr(buf, "access_token"));
    assert_null(strstr(buf, fx->url));
}

/*---- Allocation failures ----*/

static void
test_alloc_failure_in_new(void **state)
{
    struct fx *fx = *state;
    struct wecom_api_opts o = {fx->url, 1000, 4096, 10, 0};
    struct wecom_api *api = NULL;
    enum brk_err err;
    unsigned long n;
    int failed;

    for (n = 1; n < 100; n++) {
        brk_alloc_fail_at(n);
        err = wecom_api_new(fx->base, &o, &api);
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        if (err == BRK_OK) {
            wecom_api_free(api);
            if (!failed)
                break;
        } else {
            assert_int_equal(err, BRK_ERR_NOMEM);
        }
    }
    assert_true(n > 1);
    assert_true(n < 100);
}

static void
test_alloc_failure_in_call(void **state)
{
    struct fx *fx = *state;
    enum brk_err err;
    unsigned long n;
    struct rec r;

    make_api(fx, 2000, 4096, 10);
    for (n = 1; n < 100; n++) {
        memset(&r, 0, sizeof(r));
        g_done = 0;
        brk_alloc_fail_at(n);
        err = call(fx, "POST", "/ok", "{\"a\":1}", "wwcorp", &r);
        brk_alloc_fail_at(0);
        if (err != BRK_OK) {
            assert_int_equal(err, BRK_ERR_NOMEM);
            assert_int_equal(wecom_api_inflight(fx->api), 0);
            run_for(fx, 10);
            assert_int_equal(r.calls, 0);
            continue;
        }
        assert_true(run_until(fx, 1, 5000));
        assert_int_equal(r.calls, 1);
        assert_int_equal(r.err, BRK_OK);
        break;
    }
    assert_true(n > 1);
    assert_true(n < 100);
}

static void
test_alloc_failure_during_transfer(void **state)
{
    struct fx *fx = *state;
    unsigned long n;
    struct rec r;
    int failed;

    make_api(fx, 500, 4096, 0);
    for (n = 1; n < 200; n++) {
        memset(&r, 0, sizeof(r));
        g_done = 0;
        assert_int_equal(call(fx, "GET", "/ok", NULL, NULL, &r), BRK_OK);
        brk_alloc_fail_at(n);
        assert_true(run_until(fx, 1, 5000));
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        run_for(fx, 5);
        assert_int_equal(r.calls, 1);
        if (!failed) {
            assert_int_equal(r.err, BRK_OK);
            break;
        }
        /*
         * jansson reports an allocation failure in its lexer as a syntax
         * error, hence UPSTREAM_BAD; a socket left unwatched times out.
         */
        if (!(r.err == BRK_OK || r.err == BRK_ERR_NOMEM ||
              r.err == BRK_ERR_UPSTREAM_BAD ||
              r.err == BRK_ERR_UPSTREAM_TIMEOUT))
            fail_msg("n=%lu err=%s", n, brk_strerror(r.err));
    }
    assert_true(n > 1);
    assert_true(n < 200);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_new_rejects_bad_options),
        T(test_base_with_trailing_slash),
        T(test_call_rejects_bad_arguments),
        T(test_success_errcode_zero),
        T(test_token_api_without_errcode),
        T(test_wecom_error_40014),
        T(test_wecom_error_without_errmsg),
        T(test_not_json),
        T(test_top_level_array),
        T(test_top_level_string),
        T(test_duplicate_keys),
        T(test_errcode_as_string),
        T(test_errcode_as_real),
        T(test_errmsg_not_string),
        T(test_trailing_garbage),
        T(test_empty_body),
        T(test_http_500),
        T(test_redirect_not_followed),
        T(test_body_exactly_max_body),
        T(test_body_too_big_with_length),
        T(test_body_too_big_chunked_aborts_early),
        T(test_timeout),
        T(test_connection_refused),
        T(test_unresolvable_host),
        T(test_post_body_and_headers),
        T(test_post_large_body_no_expect),
        T(test_post_without_body),
        T(test_stream_body),
        T(test_get_sends_no_body),
        T(test_fifty_concurrent_calls),
        T(test_keepalive_reuses_connection),
        T(test_pooled_handle_starts_clean),
        T(test_idle_connection_closed_by_upstream),
        T(test_call_from_result_callback),
        T(test_rate_limit_order_and_delay),
        T(test_rate_limit_per_key),
        T(test_rate_key_table_bounded),
        T(test_free_with_calls_in_flight),
        T(test_free_from_result_callback),
        T(test_stream_one_megabyte_in_order),
        T(test_stream_abort_with_own_error),
        T(test_stream_abort_with_bad_value),
        T(test_stream_error_status_sends_no_data),
        T(test_stream_too_big),
        T(test_call_from_chunk_callback),
        T(test_free_from_chunk_callback),
        T(test_logs_never_carry_the_query),
        T(test_alloc_failure_in_new),
        T(test_alloc_failure_in_call),
        T(test_alloc_failure_during_transfer),
    };
    int rc;

    /* writes to a peer that hung up must not kill the fake upstream */
    signal(SIGPIPE, SIG_IGN);
    /* jansson allocations take part in the failure injection */
    json_set_alloc_funcs(brk_malloc, brk_free);
    log_init(LOG_LVL_ERROR, 0);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
