/*
 * Asynchronous WeCom HTTP client (see wecom_api.h): libcurl's multi_socket
 * interface driven by libevent, one easy handle per call over the multi's
 * shared connection cache. URLs carry tokens, so logs show the path only.
 * The hot path allocates little: finished easy handles are reset and
 * pooled, the header lists are built once, and a socket's event stays
 * registered while its connection idles in curl's cache (curl says
 * CURL_POLL_REMOVE between transfers and adds it again for the next), so
 * a reused keep-alive connection costs no epoll_ctl.
 *
 * The data path (wecom_api_stream*) goes through upclient.c instead: a
 * keep-alive HTTP/1.1 client on bufferevents that writes a request in one
 * go on an already watched socket. It is used unless the base names user
 * info or a proxy is configured in the environment (curl's business).
 */
#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "dynbuf.h"
#include "log.h"
#include "upclient.h"
#include "wecom_api.h"

#define MAXCONNECTS 256
/* beyond this many connections to WeCom, transfers wait for one */
#define MAX_HOST_CONNS 256
/* easy handles kept for reuse, each with its receive buffer */
#define EASY_POOL_MAX 64
/* curl's receive buffer: a large reply reaches the filter in fewer,
 * larger chunks (16 KiB by default) */
#define RECV_BUFFER       65536L
#define RATE_BUCKETS      4096
#define RATE_MAX_KEYS_DEF 65536UL
#define RATE_KEY_MAX      256
#define USER_AGENT        "wecom-broker/" BROKER_VERSION

/*
 * One socket curl asked us to watch, by descriptor. It lives until curl
 * closes the socket (close_cb): between transfers curl forgets it
 * (CURL_POLL_REMOVE) while its connection waits in the cache, and we keep
 * watching it for reading, so that taking it up again changes nothing.
 */
struct sock_ctx {
    struct wecom_api *api;
    struct sock_ctx *prev, *next;
    struct event *ev;
    curl_socket_t fd;
    short kind;  /* the events ev is added with; 0: not added */
    int curl_on; /* curl watches it (not between transfers) */
};

/* Rate state of one key: the GCRA "theoretical arrival time". */
struct rate_ent {
    struct rate_ent *next;
    double tat;
    char key[];
};

/* One call, from wecom_api_call until its callback has run. */
struct xfer {
    struct wecom_api *api;
    struct xfer *prev, *next;
    CURL *easy;
    struct event *timer; /* rate delay, deferred start or failure */
    char *url;           /* wiped on free: the query carries tokens */
    char *body;          /* wiped on free: may carry a suite_secret */
    size_t body_len;
    const char *ctype; /* a data-path POST's own Content-Type; NULL: JSON */
    const char *method;
    size_t path_len; /* the path part of the URL after the base, for logs */
    struct dynbuf resp;
    wecom_api_chunk_cb *on_data;
    wecom_api_post_cb *post_cb; /* a wecom_api_post: cb unused */
    struct curl_slist *headers; /* a wecom_api_post's own; NULL otherwise */
    size_t max_reply;
    wecom_api_cb *cb;
    void *arg;
    enum brk_err pending_err; /* fail from the timer instead of starting */
    enum brk_err write_err;   /* why the write callback aborted */
    CURLcode curl_code;
    size_t received;
    long status;
    int running; /* added to the multi handle */
    double started;
    int up;                   /* a data-path call through upclient */
    struct upclient_call *uc; /* while upclient runs it */
    const char *up_why;       /* upclient's static detail, for the log */
    char *up_hdrs;            /* its own header lines (a raw body's type) */
};

struct wecom_api {
    struct event_base *base;
    CURLM *multi;
    struct event *timer; /* curl's single timeout */
    char *base_url;
    size_t base_len;
    int tls; /* https: HTTP/2 may multiplex */
    long timeout_ms;
    size_t max_body;
    long rate;
    unsigned long rate_max_keys;
    struct rate_ent **rate_tab;
    unsigned long rate_count;
    double rate_next_sweep;
    struct xfer *xfers;
    unsigned inflight;
    struct sock_ctx *socks;
    struct sock_ctx **by_fd; /* socks by descriptor */
    size_t nby_fd;
    CURL *pool[EASY_POOL_MAX]; /* reset easy handles for the next calls */
    size_t npool;
    struct curl_slist *hdr_get, *hdr_post; /* shared by every call */
    struct upclient *up; /* the data path's client; NULL: curl's */
    char *origin;        /* scheme://authority of base_url */
    size_t origin_len;
    char *up_hdr_get, *up_hdr_post; /* header lines upclient sends */
    int in_chunk;         /* inside an upclient call's chunk callback */
    int in_curl;          /* inside curl_multi_socket_action */
    int free_pending;     /* wecom_api_free called from a chunk callback */
    int freeing;          /* wecom_api_free has started */
    unsigned dispatching; /* our event callbacks on the stack */
};

static void
set_timeval(struct timeval *tv, double seconds)
{
    long us = seconds > 0 ? (long)(seconds * 1e6) : 0;

    tv->tv_sec = us / 1000000;
    tv->tv_usec = us % 1000000;
}

/*---- Rate limiting ----*/

static uint32_t
rate_hash(const char *key)
{
    uint32_t h = 2166136261u;

    for (; *key != '\0'; key++) {
        h ^= (unsigned char)*key;
        h *= 16777619u;
    }
    return h;
}

/*
 * A key whose arrival time has passed has a full bucket, exactly like a key
 * never seen, so dropping it loses nothing.
 */
static void
rate_sweep(struct wecom_api *api, double now)
{
    struct rate_ent **pp, *e;
    size_t i;

    for (i = 0; i < RATE_BUCKETS; i++) {
        pp = &api->rate_tab[i];
        while ((e = *pp) != NULL) {
            if (e->tat <= now) {
                *pp = e->next;
                brk_free(e);
                api->rate_count--;
            } else {
                pp = &e->next;
            }
        }
    }
}

static void
rate_free(struct wecom_api *api)
{
    if (api->rate_tab == NULL)
        return;
    rate_sweep(api, DBL_MAX);
    brk_free(api->rate_tab);
    api->rate_tab = NULL;
}

/*
 * Reserve the next slot of key (GCRA: interval 1/rate, burst rate) and say
 * how many seconds the call must wait for it. Later calls always get later
 * slots, so calls of one key start in the order they were made.
 */
static enum brk_err
rate_reserve(struct wecom_api *api, const char *key, double now, double *delay)
{
    struct rate_ent **pp, *e;
    double interval, tau, tat, start;
    uint32_t idx;
    size_t len;

    if (api->rate <= 0 || key == NULL) {
        *delay = 0;
        return BRK_OK;
    }
    if (api->rate_tab == NULL) {
        api->rate_tab = brk_calloc(RATE_BUCKETS, sizeof(*api->rate_tab));
        if (api->rate_tab == NULL)
            return BRK_ERR_NOMEM;
    }
    idx = rate_hash(key) % RATE_BUCKETS;
    pp = &api->rate_tab[idx];
    while ((e = *pp) != NULL) {
        if (strcmp(e->key, key) == 0)
            break;
        if (e->tat <= now) {
            *pp = e->next;
            brk_free(e);
            api->rate_count--;
        } else {
            pp = &e->next;
        }
    }
    if (e == NULL) {
        if (api->rate_count >= api->rate_max_keys &&
            now >= api->rate_next_sweep) {
            rate_sweep(api, now);
            api->rate_next_sweep = now + 1.0;
            if (api->rate_count >= api->rate_max_keys)
                log_warn("wecom_api: %lu rate keys busy; new keys are "
                         "not limited",
                         api->rate_count);
        }
        /* bounded memory beats limiting a key no slot is left for */
        if (api->rate_count >= api->rate_max_keys) {
            *delay = 0;
            return BRK_OK;
        }
        len = strlen(key);
        e = brk_malloc(sizeof(*e) + len + 1);
        if (e == NULL)
            return BRK_ERR_NOMEM;
        memcpy(e->key, key, len + 1);
        e->tat = now;
        e->next = api->rate_tab[idx];
        api->rate_tab[idx] = e;
        api->rate_count++;
    }
    interval = 1.0 / (double)api->rate;
    tau = (double)(api->rate - 1) * interval;
    tat = e->tat > now ? e->tat : now;
    start = tat - tau > now ? tat - tau : now;
    e->tat = tat + interval;
    *delay = start - now;
    return BRK_OK;
}

/*---- Transfers ----*/

static void on_xfer_timer(evutil_socket_t fd, short what, void *arg);

static void
xfer_link(struct wecom_api *api, struct xfer *x)
{
    x->prev = NULL;
    x->next = api->xfers;
    if (api->xfers != NULL)
        api->xfers->prev = x;
    api->xfers = x;
    api->inflight++;
}

static void
xfer_unlink(struct wecom_api *api, struct xfer *x)
{
    if (x->prev != NULL)
        x->prev->next = x->next;
    else
        api->xfers = x->next;
    if (x->next != NULL)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
    api->inflight--;
}

/* A finished handle goes back to the pool, its options reset (the URL
 * with its token among them). */
static void
easy_put(struct wecom_api *api, CURL *e)
{
    if (e == NULL)
        return;
    if (api->npool < EASY_POOL_MAX && !api->freeing) {
        curl_easy_reset(e);
        api->pool[api->npool++] = e;
        return;
    }
    curl_easy_cleanup(e);
}

static void
xfer_free(struct xfer *x)
{
    if (x == NULL)
        return;
    if (x->timer != NULL)
        event_free(x->timer);
    easy_put(x->api, x->easy); /* reset: no longer names x->headers */
    curl_slist_free_all(x->headers);
    brk_free_secret_str(x->url);
    brk_free(x->up_hdrs);
    if (x->body != NULL)
        brk_free_secret(x->body, x->body_len + 1);
    dynbuf_free(&x->resp);
    brk_free(x);
}

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct xfer *x = userdata;
    size_t n = size * nmemb;
    enum brk_err err;
    long status = 0;
    int rc;

    if (n == 0)
        return 0;
    if (x->post_cb != NULL) {
        /* a receiver's reply of any status, bounded */
        if (n > x->max_reply - x->received) {
            x->write_err = BRK_ERR_UPSTREAM_TOOBIG;
            return 0;
        }
        x->received += n;
        err = dynbuf_add(&x->resp, ptr, n);
        if (err) {
            x->write_err =
                err == BRK_ERR_TOOBIG ? BRK_ERR_UPSTREAM_TOOBIG : err;
            return 0;
        }
        return n;
    }
    /* an error page is not data: do not buffer or forward it */
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        x->write_err = BRK_ERR_UPSTREAM_BAD;
        return 0;
    }
    /* MAXFILESIZE only helps when Content-Length is sent; this is the rule */
    if (n > x->api->max_body - x->received) {
        x->write_err = BRK_ERR_UPSTREAM_TOOBIG;
        return 0;
    }
    x->received += n;
    if (x->on_data != NULL) {
        rc = x->on_data(ptr, n, x->arg);
        if (rc != 0) {
            x->write_err = rc > 0 && rc < BRK_ERR__COUNT ? (enum brk_err)rc
                                                         : BRK_ERR_UPSTREAM_BAD;
            return 0;
        }
        return n;
    }
    err = dynbuf_add(&x->resp, ptr, n);
    if (err) {
        x->write_err = err == BRK_ERR_TOOBIG ? BRK_ERR_UPSTREAM_TOOBIG : err;
        return 0;
    }
    return n;
}

static enum brk_err
map_curl_code(const struct xfer *x, CURLcode code)
{
    if (code == CURLE_OK)
        return BRK_OK;
    if (x->write_err)
        return x->write_err;
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        return BRK_ERR_UPSTREAM_TIMEOUT;
    case CURLE_FILESIZE_EXCEEDED:
        return BRK_ERR_UPSTREAM_TOOBIG;
    case CURLE_OUT_OF_MEMORY:
        return BRK_ERR_NOMEM;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return BRK_ERR_UPSTREAM_BAD;
    default:
        /* connect, resolve, send, recv, TLS and everything unforeseen */
        return BRK_ERR_UPSTREAM;
    }
}

/*
 * Check a JSON reply: an object, "errcode" an integer when present (the
 * token APIs omit it on success), "errmsg" a string when present. On
 * BRK_OK or BRK_ERR_WECOM *root is a new reference.
 */
static enum brk_err
parse_reply(struct xfer *x, json_t **root, struct wecom_api_result *res)
{
    json_error_t jerr;
    json_t *j = NULL, *ec, *em;
    long code = 0;
    enum brk_err err = BRK_OK;

    /*
     * jansson reports some allocation failures by returning NULL without
     * setting an error code, so start from json_error_unknown (0).
     */
    memset(&jerr, 0, sizeof(jerr));
    j = json_loadb(x->resp.buf != NULL ? x->resp.buf : "", x->resp.len,
                   JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL) {
        err = json_error_code(&jerr) == json_error_out_of_memory ||
                      json_error_code(&jerr) == json_error_unknown
                  ? BRK_ERR_NOMEM
                  : BRK_ERR_UPSTREAM_BAD;
        goto out;
    }
    if (!json_is_object(j)) {
        err = BRK_ERR_UPSTREAM_BAD;
        goto out;
    }
    ec = json_object_get(j, "errcode");
    em = json_object_get(j, "errmsg");
    if ((ec != NULL && !json_is_integer(ec)) ||
        (em != NULL && !json_is_string(em))) {
        err = BRK_ERR_UPSTREAM_BAD;
        goto out;
    }
    if (ec != NULL)
        code = (long)json_integer_value(ec);
    if (code != 0) {
        err = BRK_ERR_WECOM;
        res->errmsg = em != NULL ? json_string_value(em) : "";
    }
    res->errcode = code;
    *root = j;
    j = NULL;
out:
    json_decref(j);
    return err;
}

static void
log_result(const struct xfer *x, const struct wecom_api_result *res)
{
    const char *path = x->url + x->api->base_len;
    int plen = (int)x->path_len;

    switch (res->err) {
    case BRK_OK:
    case BRK_ERR_WECOM:
    case BRK_ERR_SHUTDOWN:
        log_debug("wecom_api: %s %.*s: %s status=%ld errcode=%ld %.3fs",
                  x->method, plen, path, brk_strerror(res->err),
                  res->http_status, res->errcode, res->seconds);
        break;
    default:
        /* curl's static description only: its error buffer has the URL */
        log_warn("wecom_api: %s %.*s: %s (%s) status=%ld %.3fs", x->method,
                 plen, path, brk_strerror(res->err),
                 x->curl_code != CURLE_OK ? curl_easy_strerror(x->curl_code)
                 : x->up_why != NULL      ? x->up_why
                                          : "-",
                 res->http_status, res->seconds);
        break;
    }
}

/*
 * End a call: detach it, build the result, free the transfer and run the
 * callback last, so the callback may start calls or free the client.
 */
static void
xfer_complete(struct xfer *x, enum brk_err err)
{
    struct wecom_api *api = x->api;
    struct wecom_api_result res;
    json_t *body = NULL;
    wecom_api_cb *cb = x->cb;
    void *arg = x->arg;

    xfer_unlink(api, x);
    if (x->running) {
        curl_multi_remove_handle(api->multi, x->easy);
        x->running = 0;
    }
    if (x->uc != NULL) {
        upclient_cancel(x->uc);
        x->uc = NULL;
    }
    if (x->post_cb != NULL) {
        wecom_api_post_cb *pcb = x->post_cb;
        double secs = x->started > 0 ? brk_mono_s() - x->started : 0;
        long status = x->status;
        struct dynbuf body_buf = x->resp;

        if (err != BRK_OK && err != BRK_ERR_SHUTDOWN)
            log_debug("wecom_api: POST to a receiver: %s (%s) status=%ld",
                      brk_strerror(err),
                      x->curl_code != CURLE_OK
                          ? curl_easy_strerror(x->curl_code)
                          : "-",
                      status);
        /* the reply outlives the transfer until the callback returns */
        memset(&x->resp, 0, sizeof(x->resp));
        xfer_free(x);
        pcb(err, status, body_buf.buf != NULL ? body_buf.buf : "", body_buf.len,
            secs, arg);
        dynbuf_free(&body_buf);
        return;
    }
    memset(&res, 0, sizeof(res));
    if (err == BRK_OK && x->status != 200)
        err = BRK_ERR_UPSTREAM_BAD;
    res.http_status = x->status;
    if (x->started > 0)
        res.seconds = brk_mono_s() - x->started;
    if (err == BRK_OK && x->on_data == NULL)
        err = parse_reply(x, &body, &res);
    res.err = err;
    res.body = body;
    log_result(x, &res);
    xfer_free(x);
    cb(&res, arg);
    json_decref(body);
}

static curl_socket_t open_cb(void *clientp, curlsocktype purpose,
                             struct curl_sockaddr *addr);
static int close_cb(void *clientp, curl_socket_t fd);
static void on_socket(evutil_socket_t fd, short what, void *arg);

/* Take a pooled easy handle or make one. */
static CURL *
easy_get(struct wecom_api *api)
{
    if (api->npool > 0)
        return api->pool[--api->npool];
    return curl_easy_init();
}

/* Set up the easy handle; every option fixed for the life of the call. */
static enum brk_err
xfer_setup(struct xfer *x, int post)
{
    struct wecom_api *api = x->api;
    curl_off_t maxfs;
    CURLcode rc;
    CURL *e;

    e = x->easy = easy_get(api);
    if (e == NULL)
        return BRK_ERR_NOMEM;
    if (x->post_cb != NULL &&
        (x->headers = curl_slist_append(x->headers, "Expect:")) == NULL)
        return BRK_ERR_NOMEM;
    if (x->post_cb == NULL && x->ctype != NULL) {
        /* a WeCom call with a body of its own type (media/upload): its
         * own list, as the shared ones say JSON */
        static const char *const hdrs[] = {"Expect:",
                                           "Accept: application/json"};
        size_t i;

        for (i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++)
            if ((x->headers = curl_slist_append(x->headers, hdrs[i])) == NULL)
                return BRK_ERR_NOMEM;
        if ((x->headers = curl_slist_append(x->headers, x->ctype)) == NULL)
            return BRK_ERR_NOMEM;
    }
    /* curl_off_t is 64-bit signed on every platform we build for */
    maxfs = api->max_body > (size_t)INT64_MAX ? (curl_off_t)INT64_MAX
                                              : (curl_off_t)api->max_body;
    if ((rc = curl_easy_setopt(e, CURLOPT_URL, x->url)) ||
        (rc = curl_easy_setopt(e, CURLOPT_PRIVATE, x)) ||
        (rc = curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https")) ||
        (rc = curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https")) ||
        (rc = curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L)) ||
        (rc = curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L)) ||
        (rc = curl_easy_setopt(e, CURLOPT_NOPROGRESS, 1L)) ||
        (rc = curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, api->timeout_ms)) ||
        (rc =
             curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, api->timeout_ms)) ||
        (rc = curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, maxfs)) ||
        (rc = curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L)) ||
        /* HTTP/2 to WeCom: wait for a connection that can multiplex
         * rather than open another (plain HTTP/1.1 would wait for a busy
         * connection to finish instead) */
        (rc = curl_easy_setopt(e, CURLOPT_PIPEWAIT, api->tls ? 1L : 0L)) ||
        (rc = curl_easy_setopt(e, CURLOPT_BUFFERSIZE, RECV_BUFFER)) ||
        /* WeCom calls share the instance's header lists; a post to a
         * service's receiver carries its own */
        (rc = curl_easy_setopt(e, CURLOPT_HTTPHEADER,
                               x->headers != NULL ? x->headers
                               : post             ? api->hdr_post
                                                  : api->hdr_get)) ||
        (rc = curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb)) ||
        (rc = curl_easy_setopt(e, CURLOPT_WRITEDATA, x)) ||
        (rc = curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_cb)) ||
        (rc = curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, api)) ||
        (rc = curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_cb)) ||
        (rc = curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, api)))
        goto fail;
    if (post) {
        if ((rc = curl_easy_setopt(e, CURLOPT_POST, 1L)) ||
            (rc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                                   (curl_off_t)x->body_len)) ||
            (rc = curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body)))
            goto fail;
    } else if ((rc = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L))) {
        goto fail;
    }
    return BRK_OK;
fail:
    return rc == CURLE_OUT_OF_MEMORY ? BRK_ERR_NOMEM : BRK_ERR_INVAL;
}

static int up_data(const char *data, size_t len, void *arg);
static void up_done(const struct upclient_result *res, void *arg);

/* A data-path call through upclient: the same request curl would send. */
static enum brk_err
up_start(struct xfer *x)
{
    struct wecom_api *api = x->api;
    struct upclient_req q;
    enum brk_err err;

    memset(&q, 0, sizeof(q));
    q.origin = api->origin;
    q.method = x->method;
    q.target = x->url + api->origin_len;
    q.headers = x->up_hdrs != NULL ? x->up_hdrs
                : x->body != NULL  ? api->up_hdr_post
                                   : api->up_hdr_get;
    q.body = x->body;
    q.len = x->body != NULL ? x->body_len : 0;
    /* an error page is not data: nothing of it reaches the reader */
    q.want_status = 200;
    err = upclient_start(api->up, &q, up_data, up_done, x, &x->uc);
    if (err)
        return err;
    x->started = brk_mono_s();
    return BRK_OK;
}

static enum brk_err
xfer_start(struct xfer *x)
{
    CURLMcode mc;

    if (x->up)
        return up_start(x);
    mc = curl_multi_add_handle(x->api->multi, x->easy);
    if (mc != CURLM_OK)
        return mc == CURLM_OUT_OF_MEMORY ? BRK_ERR_NOMEM : BRK_ERR_UPSTREAM;
    x->running = 1;
    x->started = brk_mono_s();
    return BRK_OK;
}

/* The path and query go into the URL as given: printable ASCII only. */
static int
path_query_ok(const char *pq)
{
    if (pq[0] != '/')
        return 0;
    for (; *pq != '\0'; pq++) {
        if ((unsigned char)*pq <= 0x20 || (unsigned char)*pq >= 0x7f ||
            *pq == '#')
            return 0;
    }
    return 1;
}

/* A body of len bytes sent as ctype ("Content-Type: ..." line); NULL:
 * json_body as JSON. */
struct xfer_body {
    const char *ctype;
    const char *data;
    size_t len;
};

static enum brk_err
xfer_begin(struct wecom_api *api, const char *method, const char *path_query,
           const char *json_body, const struct xfer_body *raw,
           const char *rate_key, wecom_api_chunk_cb *on_data, wecom_api_cb *cb,
           void *arg)
{
    struct xfer *x = NULL;
    struct timeval tv;
    double delay = 0;
    size_t pq_len;
    enum brk_err err;
    int post;

    if (api == NULL || method == NULL || path_query == NULL || cb == NULL)
        return BRK_ERR_INVAL;
    if (api->freeing || api->free_pending)
        return BRK_ERR_SHUTDOWN;
    if (api->base_url == NULL)
        return BRK_ERR_INVAL;
    if (strcmp(method, "GET") == 0)
        post = 0;
    else if (strcmp(method, "POST") == 0)
        post = 1;
    else
        return BRK_ERR_INVAL;
    if ((!post && json_body != NULL) || !path_query_ok(path_query) ||
        (rate_key != NULL &&
         strnlen(rate_key, RATE_KEY_MAX + 1) > RATE_KEY_MAX))
        return BRK_ERR_INVAL;

    x = brk_calloc(1, sizeof(*x));
    if (x == NULL)
        return BRK_ERR_NOMEM;
    x->api = api;
    x->method = post ? "POST" : "GET";
    x->on_data = on_data;
    x->cb = cb;
    x->arg = arg;
    dynbuf_init_secret(&x->resp, api->max_body);
    pq_len = strlen(path_query);
    x->url = brk_malloc(api->base_len + pq_len + 1);
    if (x->url == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    memcpy(x->url, api->base_url, api->base_len);
    memcpy(x->url + api->base_len, path_query, pq_len + 1);
    x->path_len = strcspn(path_query, "?");
    if (post && raw != NULL) {
        x->ctype = raw->ctype;
        x->body = brk_malloc(raw->len + 1);
        if (x->body == NULL) {
            err = BRK_ERR_NOMEM;
            goto out;
        }
        memcpy(x->body, raw->data, raw->len);
        x->body[raw->len] = '\0';
        x->body_len = raw->len;
    } else if (post) {
        x->body = brk_strdup(json_body != NULL ? json_body : "");
        if (x->body == NULL) {
            err = BRK_ERR_NOMEM;
            goto out;
        }
        x->body_len = strlen(x->body);
    }
    x->timer = evtimer_new(api->base, on_xfer_timer, x);
    if (x->timer == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    x->up = on_data != NULL && api->up != NULL;
    if (x->up && x->ctype != NULL) {
        size_t n = strlen(api->up_hdr_get) + strlen(x->ctype) + 3;

        x->up_hdrs = brk_malloc(n);
        if (x->up_hdrs == NULL) {
            err = BRK_ERR_NOMEM;
            goto out;
        }
        snprintf(x->up_hdrs, n, "%s%s\r\n", api->up_hdr_get, x->ctype);
    }
    err = x->up ? BRK_OK : xfer_setup(x, post);
    if (err)
        goto out;
    err = rate_reserve(api, rate_key, brk_mono_s(), &delay);
    if (err)
        goto out;

    /*
     * From a chunk callback we are inside curl, which refuses to add a
     * handle there; start from the event loop instead.
     */
    if (delay <= 0 && !api->in_curl) {
        err = xfer_start(x);
        if (err)
            x->pending_err = err;
    }
    if (!x->running && x->uc == NULL) {
        set_timeval(&tv, delay);
        if (evtimer_add(x->timer, &tv) != 0) {
            err = BRK_ERR_IO;
            goto out;
        }
    }
    xfer_link(api, x);
    x = NULL;
    err = BRK_OK;
out:
    xfer_free(x);
    return err;
}

/*---- Event glue (the wiring of curl's multi-event.c) ----*/

static void
enter(struct wecom_api *api)
{
    api->dispatching++;
}

static void destroy(struct wecom_api *api);

/* A callback may have freed the client; the outermost frame destroys it. */
static void
leave(struct wecom_api *api)
{
    if (--api->dispatching == 0 && api->freeing)
        destroy(api);
}

/* Hand finished transfers to their callbacks. */
static void
check_done(struct wecom_api *api)
{
    struct xfer *x;
    CURLMsg *msg;
    CURLcode code;
    char *priv;
    CURL *easy;
    int left;

    while (!api->freeing &&
           (msg = curl_multi_info_read(api->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        easy = msg->easy_handle;
        code = msg->data.result;
        priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        x = (struct xfer *)priv;
        /* msg belongs to curl and is invalid after this */
        curl_multi_remove_handle(api->multi, easy);
        x->running = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &x->status);
        x->curl_code = code;
        xfer_complete(x, map_curl_code(x, code));
    }
}

static void
run_curl(struct wecom_api *api, curl_socket_t fd, int flags)
{
    CURLMcode mc;
    int running;

    enter(api);
    api->in_curl = 1;
    mc = curl_multi_socket_action(api->multi, fd, flags, &running);
    api->in_curl = 0;
    if (mc != CURLM_OK)
        log_error("wecom_api: curl_multi_socket_action: %s",
                  curl_multi_strerror(mc));
    if (api->free_pending)
        wecom_api_free(api);
    else
        check_done(api);
    leave(api);
}

static void
on_socket(evutil_socket_t fd, short what, void *arg)
{
    struct sock_ctx *sc = arg;
    int flags = 0;

    if (!sc->curl_on) {
        /* an idle keep-alive connection closed by WeCom, or sent bytes
         * nobody asked for: curl finds out when it takes it up again */
        event_del(sc->ev);
        sc->kind = 0;
        return;
    }
    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    /* sc may be freed by curl's socket callback in here: pass api only */
    run_curl(sc->api, fd, flags);
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_curl(arg, CURL_SOCKET_TIMEOUT, 0);
}

static void
on_xfer_timer(evutil_socket_t fd, short what, void *arg)
{
    struct xfer *x = arg;
    struct wecom_api *api = x->api;
    enum brk_err err = x->pending_err;

    (void)fd;
    (void)what;
    enter(api);
    if (!err)
        err = xfer_start(x);
    if (err)
        xfer_complete(x, err);
    leave(api);
}

/* upclient's chunk callback: the caller's, with wecom_api_free from in
 * there turned into the end of this call. */
static int
up_data(const char *data, size_t len, void *arg)
{
    struct xfer *x = arg;
    struct wecom_api *api = x->api;
    int rc;

    api->in_chunk = 1;
    rc = x->on_data(data, len, x->arg);
    api->in_chunk = 0;
    if (rc == 0 && api->free_pending)
        rc = BRK_ERR_SHUTDOWN;
    return rc;
}

static void
up_done(const struct upclient_result *res, void *arg)
{
    struct xfer *x = arg;
    struct wecom_api *api = x->api;

    x->uc = NULL;
    x->status = res->status;
    x->up_why = res->why;
    enter(api);
    xfer_complete(x, res->err);
    if (api->free_pending)
        wecom_api_free(api);
    leave(api);
}

static void
sock_ctx_free(struct wecom_api *api, struct sock_ctx *sc)
{
    if (sc == NULL)
        return;
    if (sc->prev != NULL)
        sc->prev->next = sc->next;
    else
        api->socks = sc->next;
    if (sc->next != NULL)
        sc->next->prev = sc->prev;
    if (sc->fd >= 0 && (size_t)sc->fd < api->nby_fd && api->by_fd[sc->fd] == sc)
        api->by_fd[sc->fd] = NULL;
    event_free(sc->ev);
    brk_free(sc);
}

static struct sock_ctx *
sock_of_fd(const struct wecom_api *api, curl_socket_t fd)
{
    if (fd < 0 || (size_t)fd >= api->nby_fd)
        return NULL;
    return api->by_fd[fd];
}

/* A new watch for fd, in the table; NULL when out of memory. */
static struct sock_ctx *
sock_ctx_new(struct wecom_api *api, curl_socket_t fd)
{
    struct sock_ctx *sc, **p;
    size_t n;

    if (fd < 0)
        return NULL;
    if ((size_t)fd >= api->nby_fd) {
        n = api->nby_fd ? api->nby_fd : 64;
        while (n <= (size_t)fd)
            n *= 2;
        p = brk_realloc(api->by_fd, n * sizeof(*p));
        if (p == NULL)
            return NULL;
        memset(p + api->nby_fd, 0, (n - api->nby_fd) * sizeof(*p));
        api->by_fd = p;
        api->nby_fd = n;
    }
    sc = brk_calloc(1, sizeof(*sc));
    if (sc == NULL)
        return NULL;
    sc->api = api;
    sc->fd = fd;
    sc->ev = event_new(api->base, fd, EV_PERSIST, on_socket, sc);
    if (sc->ev == NULL) {
        brk_free(sc);
        return NULL;
    }
    sc->next = api->socks;
    if (api->socks != NULL)
        api->socks->prev = sc;
    api->socks = sc;
    /* a watch left over from a descriptor closed behind our back */
    sock_ctx_free(api, sock_of_fd(api, fd));
    api->by_fd[fd] = sc;
    return sc;
}

/*
 * CURLOPT_OPENSOCKETFUNCTION: the connection's socket, made as curl
 * would, and known to us from now until close_cb, so that its watch can
 * outlive a transfer. Sockets curl makes otherwise (its resolver's) are
 * watched only while curl asks.
 */
static curl_socket_t
open_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct wecom_api *api = clientp;
    curl_socket_t fd;

    (void)purpose;
    fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    /* no table entry: the socket is then watched like any other */
    if (sock_ctx_new(api, fd) == NULL)
        log_warn("wecom_api: out of memory tracking a socket");
    return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the watch goes before the descriptor. */
static int
close_cb(void *clientp, curl_socket_t fd)
{
    struct wecom_api *api = clientp;

    sock_ctx_free(api, sock_of_fd(api, fd));
    return close(fd);
}

/*
 * CURLMOPT_SOCKETFUNCTION. Returning -1 would mark the whole multi handle
 * dead for good, so an allocation failure here is logged and the socket
 * left unwatched: its transfer then ends at its own timeout. A socket of
 * ours (open_cb) stays watched for reading between transfers; any other
 * is forgotten when curl says so.
 */
static int
sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct wecom_api *api = userp;
    struct sock_ctx *sc = socketp;
    short kind;

    (void)easy;
    if (sc == NULL)
        sc = sock_of_fd(api, fd);
    if (what == CURL_POLL_REMOVE) {
        if (sc == NULL)
            return 0;
        if (sock_of_fd(api, fd) != sc) {
            sock_ctx_free(api, sc);
            return 0;
        }
        sc->curl_on = 0;
        if (sc->kind != 0 && sc->kind != (EV_READ | EV_PERSIST)) {
            event_del(sc->ev);
            sc->kind = 0;
        }
        return 0;
    }
    kind = EV_PERSIST;
    if (what & CURL_POLL_IN)
        kind |= EV_READ;
    if (what & CURL_POLL_OUT)
        kind |= EV_WRITE;
    if (sc == NULL) {
        /* not ours: watched under no descriptor entry */
        sc = brk_calloc(1, sizeof(*sc));
        if (sc == NULL)
            goto nomem;
        sc->api = api;
        sc->fd = -1;
        sc->ev = event_new(api->base, fd, EV_PERSIST, on_socket, sc);
        if (sc->ev == NULL) {
            brk_free(sc);
            goto nomem;
        }
        sc->next = api->socks;
        if (api->socks != NULL)
            api->socks->prev = sc;
        api->socks = sc;
    }
    if (!sc->curl_on) {
        curl_multi_assign(api->multi, fd, sc);
        sc->curl_on = 1;
    }
    if (sc->kind == kind)
        return 0;
    if (sc->kind != 0)
        event_del(sc->ev);
    event_assign(sc->ev, api->base, fd, kind, on_socket, sc);
    sc->kind = kind;
    if (event_add(sc->ev, NULL) != 0) {
        sc->kind = 0;
        log_error("wecom_api: cannot watch a socket");
    }
    return 0;
nomem:
    log_error("wecom_api: out of memory watching a socket");
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: never act from here, only arm the timer. */
static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct wecom_api *api = userp;
    struct timeval tv;

    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(api->timer);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    if (evtimer_add(api->timer, &tv) != 0)
        log_error("wecom_api: cannot arm the curl timer");
    return 0;
}

/*---- Lifecycle ----*/

static void
destroy(struct wecom_api *api)
{
    upclient_free(api->up); /* its calls all ended with their transfers */
    brk_free(api->origin);
    brk_free(api->up_hdr_get);
    brk_free(api->up_hdr_post);
    if (api->multi != NULL)
        curl_multi_cleanup(api->multi); /* may report sockets removed */
    while (api->socks != NULL)
        sock_ctx_free(api, api->socks);
    brk_free(api->by_fd);
    while (api->npool > 0)
        curl_easy_cleanup(api->pool[--api->npool]);
    curl_slist_free_all(api->hdr_get);
    curl_slist_free_all(api->hdr_post);
    if (api->timer != NULL)
        event_free(api->timer);
    rate_free(api);
    brk_free(api->base_url);
    brk_free(api);
}

static int
base_url_ok(const char *s, size_t len)
{
    size_t i, skip;

    if (strncasecmp(s, "https://", 8) == 0)
        skip = 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        skip = 7;
    else
        return 0;
    if (len <= skip)
        return 0;
    for (i = 0; i < len; i++) {
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f ||
            s[i] == '?' || s[i] == '#')
            return 0;
    }
    return 1;
}

static enum brk_err
header_lists(struct wecom_api *api)
{
    char host[300];
    const char *common[4] = {"Expect:", "Accept: application/json",
                             "User-Agent: " USER_AGENT, host};
    const char *auth = strstr(api->base_url, "://") + 3;
    size_t i, n = 3, alen = strcspn(auth, "/");
    struct curl_slist *l;

    /* Host and User-Agent given here, once, rather than formatted by curl
     * for every request; an authority with user info is left to curl */
    if (memchr(auth, '@', alen) == NULL &&
        (size_t)snprintf(host, sizeof(host), "Host: %.*s", (int)alen, auth) <
            sizeof(host))
        n = 4;
    for (i = 0; i < n; i++) {
        l = curl_slist_append(api->hdr_get, common[i]);
        if (l == NULL)
            return BRK_ERR_NOMEM;
        api->hdr_get = l;
        l = curl_slist_append(api->hdr_post, common[i]);
        if (l == NULL)
            return BRK_ERR_NOMEM;
        api->hdr_post = l;
    }
    l = curl_slist_append(api->hdr_post, "Content-Type: application/json");
    if (l == NULL)
        return BRK_ERR_NOMEM;
    api->hdr_post = l;
    return BRK_OK;
}

/*
 * The data path's own client, unless the base needs curl: user info in
 * it, or a proxy named in the environment. BRK_OK too when curl keeps the
 * data path.
 */
static enum brk_err
up_setup(struct wecom_api *api)
{
    static const char *const proxies[] = {"http_proxy",  "HTTP_PROXY",
                                          "https_proxy", "HTTPS_PROXY",
                                          "all_proxy",   "ALL_PROXY"};
    static const char get[] =
        "User-Agent: " USER_AGENT "\r\nAccept: application/json\r\n";
    static const char post[] =
        "User-Agent: " USER_AGENT "\r\nAccept: application/json\r\n"
        "Content-Type: application/json\r\n";
    struct upclient_opts o;
    const char *auth, *v;
    size_t i;

    for (i = 0; i < nitems(proxies); i++)
        if ((v = getenv(proxies[i])) != NULL && *v != '\0')
            return BRK_OK;
    auth = strstr(api->base_url, "://") + 3;
    api->origin_len = (size_t)(auth - api->base_url) + strcspn(auth, "/");
    api->origin = brk_strndup(api->base_url, api->origin_len);
    api->up_hdr_get = brk_strdup(get);
    api->up_hdr_post = brk_strdup(post);
    if (api->origin == NULL || api->up_hdr_get == NULL ||
        api->up_hdr_post == NULL)
        return BRK_ERR_NOMEM;
    if (!upclient_origin_ok(api->origin))
        return BRK_OK;
    memset(&o, 0, sizeof(o));
    o.timeout_ms = api->timeout_ms;
    o.max_body = api->max_body;
    return upclient_new(api->base, &o, &api->up);
}

/*
 * Create a client whose calls run on base. opts->base is copied (a trailing
 * '/' is dropped). The program must have called curl_global_init().
 * Returns BRK_OK, BRK_ERR_INVAL for bad options, or BRK_ERR_NOMEM. *out is
 * owned; free it with wecom_api_free.
 */
enum brk_err
wecom_api_new(struct event_base *base, const struct wecom_api_opts *opts,
              struct wecom_api **out)
{
    struct wecom_api *api = NULL;
    enum brk_err err = BRK_ERR_NOMEM;
    size_t len;

    if (base == NULL || opts == NULL || out == NULL || opts->timeout_ms <= 0 ||
        opts->max_body == 0 || opts->rate_per_key < 0)
        return BRK_ERR_INVAL;
    len = opts->base != NULL ? strlen(opts->base) : 0;
    while (len > 0 && opts->base[len - 1] == '/')
        len--;
    if (opts->base != NULL && !base_url_ok(opts->base, len))
        return BRK_ERR_INVAL;

    api = brk_calloc(1, sizeof(*api));
    if (api == NULL)
        return BRK_ERR_NOMEM;
    api->base = base;
    api->timeout_ms = opts->timeout_ms;
    api->max_body = opts->max_body;
    api->rate = opts->rate_per_key;
    api->rate_max_keys =
        opts->rate_max_keys ? opts->rate_max_keys : RATE_MAX_KEYS_DEF;
    if (opts->base != NULL) {
        api->base_url = brk_strndup(opts->base, len);
        if (api->base_url == NULL)
            goto out;
    }
    api->base_len = len;
    api->tls =
        opts->base != NULL && strncasecmp(opts->base, "https://", 8) == 0;
    api->timer = evtimer_new(base, on_timeout, api);
    if (api->timer == NULL)
        goto out;
    /* the same for every call; a POST's empty body too is JSON, where
     * curl would say form-urlencoded */
    if (api->base_url != NULL && header_lists(api) != BRK_OK)
        goto out;
    if (api->base_url != NULL && (err = up_setup(api)) != BRK_OK)
        goto out;
    err = BRK_ERR_NOMEM;
    api->multi = curl_multi_init();
    if (api->multi == NULL)
        goto out;
    if (curl_multi_setopt(api->multi, CURLMOPT_SOCKETFUNCTION, sock_cb) ||
        curl_multi_setopt(api->multi, CURLMOPT_SOCKETDATA, api) ||
        curl_multi_setopt(api->multi, CURLMOPT_TIMERFUNCTION, timer_cb) ||
        curl_multi_setopt(api->multi, CURLMOPT_TIMERDATA, api) ||
        curl_multi_setopt(api->multi, CURLMOPT_MAXCONNECTS,
                          (long)MAXCONNECTS) ||
        curl_multi_setopt(api->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                          (long)MAX_HOST_CONNS)) {
        err = BRK_ERR_INVAL;
        goto out;
    }
    *out = api;
    api = NULL;
    err = BRK_OK;
out:
    if (api != NULL)
        destroy(api);
    return err;
}

/*
 * Abort every call still waiting or running: each callback runs once, from
 * in here, with BRK_ERR_SHUTDOWN. Calls started from those callbacks are
 * refused with BRK_ERR_SHUTDOWN. May be called from a result callback (the
 * memory is released when that callback returns). From a chunk callback
 * the abort happens as soon as curl returns, before any other callback.
 * NULL is a no-op.
 */
void
wecom_api_free(struct wecom_api *api)
{
    if (api == NULL || api->freeing)
        return;
    if (api->in_curl || api->in_chunk) {
        /* curl forbids removing handles from its callbacks; an upclient
         * call ends once its chunk callback has returned */
        api->free_pending = 1;
        return;
    }
    api->free_pending = 0;
    api->freeing = 1;
    enter(api);
    while (api->xfers != NULL)
        xfer_complete(api->xfers, BRK_ERR_SHUTDOWN);
    leave(api);
}

/*
 * Start a JSON call: method "GET" or "POST", path_query a path starting
 * with '/' plus an already-encoded query (printable ASCII), json_body sent
 * as application/json (POST only; NULL sends an empty body), rate_key the
 * tenant to rate-limit by (NULL: none; at most 256 bytes). A call over the
 * rate waits for its slot; it is never refused.
 * Returns BRK_OK, and cb then runs exactly once from the event loop, with
 * BRK_OK, BRK_ERR_WECOM (errcode != 0), BRK_ERR_UPSTREAM*,
 * BRK_ERR_NOMEM or BRK_ERR_SHUTDOWN. Or returns BRK_ERR_INVAL,
 * BRK_ERR_NOMEM, BRK_ERR_SHUTDOWN (client being freed) or BRK_ERR_IO, and
 * cb never runs. Arguments are copied; res is borrowed for the callback.
 */
enum brk_err
wecom_api_call(struct wecom_api *api, const char *method,
               const char *path_query, const char *json_body,
               const char *rate_key, wecom_api_cb *cb, void *arg)
{
    return xfer_begin(api, method, path_query, json_body, NULL, rate_key, NULL,
                      cb, arg);
}

/*
 * Start a streamed call: like wecom_api_call, but the body goes to on_data
 * chunk by chunk (borrowed for each call) and is not parsed; done gets body
 * NULL and errcode 0. A body chunk is only delivered after a 200 status.
 * on_data may start calls (they start from the event loop) or free the
 * client. Same errors as wecom_api_call; BRK_ERR_INVAL also for a NULL
 * on_data.
 */
enum brk_err
wecom_api_stream(struct wecom_api *api, const char *method,
                 const char *path_query, const char *json_body,
                 const char *rate_key, wecom_api_chunk_cb *on_data,
                 wecom_api_cb *done, void *arg)
{
    if (on_data == NULL)
        return BRK_ERR_INVAL;
    return xfer_begin(api, method, path_query, json_body, NULL, rate_key,
                      on_data, done, arg);
}

/*
 * A streamed POST whose body is not JSON (media/upload's multipart): like
 * wecom_api_stream, with body (len bytes, copied) sent under the header
 * line content_type ("Content-Type: ...", copied).
 */
enum brk_err
wecom_api_stream_body(struct wecom_api *api, const char *path_query,
                      const char *content_type, const char *body, size_t len,
                      const char *rate_key, wecom_api_chunk_cb *on_data,
                      wecom_api_cb *done, void *arg)
{
    struct xfer_body raw = {content_type, body, len};

    if (on_data == NULL || content_type == NULL ||
        strncmp(content_type, "Content-Type: ", 14) != 0 ||
        strpbrk(content_type, "\r\n") != NULL || (body == NULL && len > 0))
        return BRK_ERR_INVAL;
    return xfer_begin(api, "POST", path_query, NULL, &raw, rate_key, on_data,
                      done, arg);
}

/*
 * Start a POST to an absolute URL (see wecom_api.h). The reply of any
 * status is kept, up to p->max_reply bytes; the client's timeout bounds
 * connect and total time. Returns BRK_OK (cb runs exactly once, from the
 * event loop), BRK_ERR_INVAL, BRK_ERR_NOMEM, BRK_ERR_SHUTDOWN or
 * BRK_ERR_IO.
 */
enum brk_err
wecom_api_post(struct wecom_api *api, const struct wecom_api_post *p,
               wecom_api_post_cb *cb, void *arg)
{
    struct xfer *x = NULL;
    struct timeval tv = {0, 0};
    char ct[128];
    enum brk_err err = BRK_ERR_NOMEM;
    size_t i, n;

    if (api == NULL || p == NULL || cb == NULL || p->url == NULL ||
        p->content_type == NULL || p->max_reply == 0 ||
        (p->body == NULL && p->len > 0) ||
        snprintf(ct, sizeof(ct), "Content-Type: %s", p->content_type) >=
            (int)sizeof(ct))
        return BRK_ERR_INVAL;
    if (api->freeing || api->free_pending)
        return BRK_ERR_SHUTDOWN;
    n = strlen(p->url);
    if (!base_url_ok(p->url, strcspn(p->url, "?")))
        return BRK_ERR_INVAL;
    for (i = 0; i < n; i++)
        if ((unsigned char)p->url[i] <= 0x20 ||
            (unsigned char)p->url[i] >= 0x7f || p->url[i] == '#')
            return BRK_ERR_INVAL;
    x = brk_calloc(1, sizeof(*x));
    if (x == NULL)
        return BRK_ERR_NOMEM;
    x->api = api;
    x->method = "POST";
    x->post_cb = cb;
    x->max_reply = p->max_reply;
    x->arg = arg;
    dynbuf_init(&x->resp, p->max_reply + 1);
    x->url = brk_strdup(p->url);
    x->body = brk_malloc(p->len + 1);
    x->timer = evtimer_new(api->base, on_xfer_timer, x);
    if (x->url == NULL || x->body == NULL || x->timer == NULL)
        goto out;
    if (p->len > 0)
        memcpy(x->body, p->body, p->len);
    x->body[p->len] = '\0';
    x->body_len = p->len;
    x->path_len = strcspn(x->url, "?");
    x->headers = curl_slist_append(NULL, ct);
    for (i = 0; x->headers != NULL && i < p->nheaders; i++)
        if (curl_slist_append(x->headers, p->headers[i]) == NULL)
            goto out;
    if (x->headers == NULL)
        goto out;
    err = xfer_setup(x, 1);
    if (err)
        goto out;
    if (!api->in_curl) {
        err = xfer_start(x);
        if (err)
            x->pending_err = err;
    }
    if (!x->running && evtimer_add(x->timer, &tv) != 0) {
        err = BRK_ERR_IO;
        goto out;
    }
    xfer_link(api, x);
    x = NULL;
    err = BRK_OK;
out:
    xfer_free(x);
    return err;
}

/* Calls accepted whose callback has not run yet; cannot fail. */
unsigned
wecom_api_inflight(const struct wecom_api *api)
{
    return api != NULL ? api->inflight : 0;
}
