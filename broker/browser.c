/*
 * Browser flows (see browser.h). Each request is a short chain of
 * asynchronous steps over one context ending in exactly one reply: a 302,
 * a small HTML page, or a 400/429/503 page with a one-line reason.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/rand.h>

#include "browser.h"
#include "cache.h"
#include "codec.h"
#include "config.h"
#include "datakey.h"
#include "dynbuf.h"
#include "httpd.h"
#include "keyring.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "netaddr.h"
#include "oauth.h"
#include "query.h"
#include "record.h"
#include "scripts.h"
#include "service.h"
#include "store.h"
#include "suites.h"
#include "tokens.h"
#include "wecom_api.h"

#define MAX_PARAMS 8

struct browser {
    const struct config *cfg;
    const struct keyring *kr;
    struct store *st;
    struct tokens *tok;
    struct wecom_api *api;
    struct cache *rate;           /* client address key -> struct bucket */
    struct netaddr_list *trusted; /* trusted_proxies */
};

struct bucket {
    double tokens;
    long long at;
};

struct login {
    char code[SERVICE_TOKEN_LEN + 1];
    char ticket[SERVICE_TOKEN_LEN + 1];
};

struct breq {
    struct browser *b;
    struct httpd_req *r;
    struct suite_rt *su;
    struct query *q;
    char state[OAUTH_STATE_LEN + 1];
    char id[OAUTH_ID_LEN + 1];
    char *ret;    /* return URL (owned) */
    char *cstate; /* caller's state (owned) */
    char scope[24];
    char corp[80];
    char userid[80];
    char openid[128];
    char *user_ticket; /* WeCom's (owned, secret) */
    long expires_in;
    json_t *detail;
    unsigned char tdk[KEYRING_KEY_LEN];
    char *pre_auth;    /* owned */
    char *detail_path; /* getuserdetail3rd path with the suite token */
    char stok[1600];   /* the suite token, percent-encoded (secret) */
    struct login *login;
    char client[NETADDR_KEY_MAX]; /* the client's budget key */
    char client_h[65];            /* and its keyed hash, for Redis */
};

/*---- Replies ----*/

static void
breq_free(struct breq *q)
{
    query_free(q->q);
    brk_free(q->ret);
    brk_free(q->cstate);
    brk_free_secret_str(q->user_ticket);
    brk_free_secret_str(q->pre_auth);
    brk_free_secret_str(q->detail_path);
    brk_wipe(q->stok, sizeof(q->stok));
    brk_free_secret(q->login, sizeof(*q->login));
    json_decref(q->detail);
    brk_wipe(q->tdk, sizeof(q->tdk));
    brk_free(q);
}

/* Append s escaped for HTML text; returns nonzero once the buffer failed. */
static int
html_escape(struct dynbuf *d, const char *s)
{
    char c[2] = {0, 0};
    const char *e;

    for (; *s; s++) {
        switch (*s) {
        case '<':
            e = "&lt;";
            break;
        case '>':
            e = "&gt;";
            break;
        case '&':
            e = "&amp;";
            break;
        case '"':
            e = "&quot;";
            break;
        case '\'':
            e = "&#39;";
            break;
        default:
            c[0] = *s;
            e = c;
            break;
        }
        if (dynbuf_add_str(d, e))
            return -1;
    }
    return 0;
}

/* A small page; for refusals, status 400 and a one-line reason. */
static void page(struct breq *q, int status, const char *title, const char *fmt,
                 ...) BRK_PRINTF(4, 5);

static void
page(struct breq *q, int status, const char *title, const char *fmt, ...)
{
    char msg[300], labels[160];
    struct dynbuf d;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (status >= 400) {
        log_req(LOG_LVL_WARN, q->r->id, "browser %s refused: %d: %s",
                q->r->route, status, msg);
        metrics_inc(METRICS_CALLBACK_REJECTIONS,
                    metrics_labels(labels, sizeof(labels), "suite",
                                   q->su->conf->suite_id, "reason", q->r->route,
                                   NULL));
    }
    dynbuf_init(&d, 16384);
    if (dynbuf_add_str(&d, "<!doctype html><meta charset=utf-8><title>") ||
        html_escape(&d, title) || dynbuf_add_str(&d, "</title><h1>") ||
        html_escape(&d, title) || dynbuf_add_str(&d, "</h1><p>") ||
        html_escape(&d, msg) || dynbuf_add_str(&d, "</p>\n"))
        dynbuf_free(&d); /* an empty page still carries the status */
    httpd_reply(q->r, status, "text/html; charset=utf-8", d.buf ? d.buf : "",
                d.buf ? d.len : 0);
    dynbuf_free(&d);
    breq_free(q);
}

static void
redirect(struct breq *q, const char *url)
{
    if (httpd_add_header(q->r, "Location", url) != BRK_OK ||
        httpd_add_header(q->r, "Referrer-Policy", "no-referrer") != BRK_OK) {
        /* a URL that cannot be a header is not followed */
        httpd_reply_text(q->r, 500, "redirect refused\n");
        breq_free(q);
        return;
    }
    httpd_reply(q->r, 302, "text/plain; charset=utf-8", "", 0);
    breq_free(q);
}

/*---- Rate limit and parameters ----*/

static void
bucket_free(void *v)
{
    brk_free(v);
}

/*
 * The client of q into q->client (its budget key) and q->client_h: the
 * TCP peer, or behind a trusted proxy the address it appended to
 * X-Forwarded-For (every such header, in order). Returns BRK_OK,
 * BRK_ERR_INVAL when the proxy's header names no usable address.
 */
static enum brk_err
client_of(struct breq *q)
{
    size_t salen = 0, pos = 0;
    const struct sockaddr *sa = httpd_peer(q->r, &salen);
    struct netaddr peer, client;
    const char *v;
    struct dynbuf xff;
    const char *parts[2];
    enum brk_err err = BRK_OK;
    int any = 0;

    if (sa == NULL ||
        netaddr_from_sockaddr(sa, (socklen_t)salen, &peer) != BRK_OK) {
        /* no peer to speak of (a unix socket): one shared budget */
        snprintf(q->client, sizeof(q->client), "?");
        goto hash;
    }
    dynbuf_init(&xff, 8192);
    /* every X-Forwarded-For header, in order */
    while (!err && netaddr_list_has(q->b->trusted, &peer) &&
           (v = httpd_header_next(q->r, "X-Forwarded-For", &pos)) != NULL) {
        if (dynbuf_printf(&xff, "%s%s", any ? "," : "", v))
            err = BRK_ERR_INVAL;
        any = 1;
    }
    if (!err)
        err =
            netaddr_client(&peer, any ? xff.buf : NULL, q->b->trusted, &client);
    dynbuf_free(&xff);
    if (err)
        return err;
    netaddr_key(&client, q->client);
hash:
    /* Redis keys name a keyed hash of it, never the address */
    parts[0] = "browser-client";
    parts[1] = q->client;
    keyring_index_hmac_parts(q->b->kr, parts, 2, q->client_h);
    return BRK_OK;
}

/* Nonzero when the client may go on: a token bucket per address. */
static int
rate_ok(struct browser *b, const char *addr)
{
    struct bucket *k;
    long long now = brk_mono_ms();
    double rate = BROWSER_RATE_PER_MIN / 60000.0;

    k = cache_get(b->rate, addr, now);
    if (k == NULL) {
        k = brk_calloc(1, sizeof(*k));
        if (k == NULL)
            return 0;
        k->tokens = BROWSER_RATE_PER_MIN;
        k->at = now;
        if (cache_put(b->rate, addr, k, now) != BRK_OK)
            return 0;
    }
    k->tokens += (double)(now - k->at) * rate;
    if (k->tokens > BROWSER_RATE_PER_MIN)
        k->tokens = BROWSER_RATE_PER_MIN;
    k->at = now;
    if (k->tokens < 1.0)
        return 0;
    k->tokens -= 1.0;
    return 1;
}

/* The value of a parameter given at most once (NULL when absent);
 * *bad set when repeated. */
static const char *
param(struct breq *q, const char *name, int *bad)
{
    size_t n = query_count(q->q, name);

    if (n > 1)
        *bad = 1;
    return n == 1 ? query_get(q->q, name) : NULL;
}

/* ret with params added to its query, before any fragment: a code behind
 * '#' would never reach the caller's server. Nonzero when out is short. */
static int
return_with(char *out, size_t len, const char *ret, const char *params)
{
    const char *hash = strchr(ret, '#');
    size_t base = hash ? (size_t)(hash - ret) : strlen(ret);
    int n =
        snprintf(out, len, "%.*s%c%s%s", (int)base, ret,
                 memchr(ret, '?', base) ? '&' : '?', params, hash ? hash : "");

    return n < 0 || (size_t)n >= len;
}

static int
return_ok(const struct breq *q, const char *url)
{
    return url != NULL && strlen(url) <= OAUTH_RETURN_MAX &&
           oauth_return_allowed(url, q->su->conf->redirect_allow,
                                q->su->conf->nredirect_allow);
}

/*---- State in Redis ----*/

static enum brk_err
state_keys(struct breq *q, char *hkey, char *zkey)
{
    char what[80];

    snprintf(what, sizeof(what), "oauth:state:%s", q->id);
    if (keys_suite(hkey, KEYS_MAX, q->b->cfg->key_prefix, q->su->conf->suite_id,
                   what) ||
        keys_suite(zkey, KEYS_MAX, q->b->cfg->key_prefix, q->su->conf->suite_id,
                   "oauth:live"))
        return BRK_ERR_TOOBIG;
    return BRK_OK;
}

/* The set of live states of the client address whose keyed hash is h
 * ("" : the prefix of such names). */
static enum brk_err
client_states_key(struct breq *q, const char *h, char *out)
{
    char what[96];

    snprintf(what, sizeof(what), "oauth:live:%s", h);
    return keys_suite(out, KEYS_MAX, q->b->cfg->key_prefix,
                      q->su->conf->suite_id, what);
}

typedef void breq_step(struct breq *q, struct redisReply *r);

struct step_ctx {
    struct breq *q;
    breq_step *next;
};

static void
on_redis(enum brk_err err, struct redisReply *r, void *arg)
{
    struct step_ctx *c = arg;
    struct breq *q = c->q;
    breq_step *next = c->next;

    brk_free(c);
    if (err) {
        page(q, 503, "Try again", "the store is unavailable");
        return;
    }
    next(q, r);
}

static void
redis_step(struct breq *q, int argc, const char **argv, breq_step *next)
{
    struct step_ctx *c = brk_calloc(1, sizeof(*c));

    if (c == NULL) {
        page(q, 503, "Try again", "out of memory");
        return;
    }
    c->q = q;
    c->next = next;
    if (store_cmd_argv(q->b->st, on_redis, c, argc, argv, NULL)) {
        brk_free(c);
        page(q, 503, "Try again", "the store is unavailable");
    }
}

/* Save (flow, suite) state with pairs, then next. */
static void
save_state(struct breq *q, const char *flow, const char *const *pairs,
           size_t npairs, breq_step *next)
{
    char hkey[KEYS_MAX], zkey[KEYS_MAX], ckey[KEYS_MAX], now[24], ttl[16];
    char cap[16], acap[16];
    const char *argv[32];
    int argc = 0;
    size_t i;

    if (oauth_state_new(q->b->kr, flow, q->su->conf->suite_id, q->state,
                        q->id) ||
        state_keys(q, hkey, zkey) || client_states_key(q, q->client_h, ckey)) {
        page(q, 503, "Try again", "no state could be made");
        return;
    }
    snprintf(now, sizeof(now), "%lld", brk_wall_ms() / 1000);
    snprintf(ttl, sizeof(ttl), "%d", BROWSER_STATE_TTL);
    snprintf(cap, sizeof(cap), "%d", BROWSER_STATES_MAX);
    snprintf(acap, sizeof(acap), "%d", BROWSER_STATES_PER_ADDR);
    argv[argc++] = "EVAL";
    argv[argc++] = scripts_text(SCRIPT_BROWSER_STATE_SAVE);
    argv[argc++] = "3";
    argv[argc++] = hkey;
    argv[argc++] = zkey;
    argv[argc++] = ckey;
    argv[argc++] = now;
    argv[argc++] = ttl;
    argv[argc++] = cap;
    argv[argc++] = q->id;
    argv[argc++] = acap;
    argv[argc++] = "flow";
    argv[argc++] = flow;
    argv[argc++] = "client";
    argv[argc++] = q->client_h;
    for (i = 0; i < npairs && argc + 2 <= (int)nitems(argv); i++) {
        argv[argc++] = pairs[2 * i];
        argv[argc++] = pairs[2 * i + 1];
    }
    redis_step(q, argc, argv, next);
}

/* The answer of SCRIPT_BROWSER_STATE_SAVE: 0 when saved, else -1 after a
 * 429 page. */
static int
saved_or_refused(struct breq *q, const struct redisReply *r, const char *what)
{
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 1)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER && r->integer == -1)
        page(q, 429, "Slow down",
             "too many %s in progress from this address; finish or wait a "
             "few minutes",
             what);
    else
        page(q, 429, "Try again later",
             "too many %s are in progress; try again in a few minutes", what);
    return -1;
}

/*---- Provider-site install ----*/

static void
on_install_saved(struct breq *q, struct redisReply *r)
{
    const struct config *cfg = q->b->cfg;
    char done[512], *enc_done = NULL;
    struct dynbuf u;

    if (saved_or_refused(q, r, "installs"))
        return;
    snprintf(done, sizeof(done), "%s/wecom/suite/%s/install/done",
             cfg->public_base_url, q->su->conf->suite_id);
    enc_done = brk_malloc(strlen(done) * 3 + 1);
    dynbuf_init(&u, 8192);
    if (enc_done == NULL) {
        page(q, 503, "Try again", "out of memory");
        return;
    }
    codec_pct_encode(done, enc_done);
    if (dynbuf_printf(&u,
                      "%s%csuite_id=%s&pre_auth_code=", cfg->wecom_install_url,
                      strchr(cfg->wecom_install_url, '?') ? '&' : '?',
                      q->su->conf->suite_id)) {
        brk_free(enc_done);
        page(q, 503, "Try again", "out of memory");
        return;
    }
    {
        char *enc = brk_malloc(strlen(q->pre_auth) * 3 + 1);

        if (enc != NULL) {
            codec_pct_encode(q->pre_auth, enc);
            if (dynbuf_add_str(&u, enc))
                (void)0;
            brk_free(enc);
        }
    }
    if (dynbuf_printf(&u, "&redirect_uri=%s&state=%s", enc_done, q->state)) {
        brk_free(enc_done);
        page(q, 503, "Try again", "out of memory");
        return;
    }
    brk_free(enc_done);
    log_req(LOG_LVL_INFO, q->r->id, "install started: suite=%s",
            q->su->conf->suite_id);
    redirect(q, u.buf);
    dynbuf_free(&u);
}

static void
install_redirect(struct breq *q)
{
    const char *pairs[2] = {"return", q->ret ? q->ret : ""};

    save_state(q, "install", pairs, 1, on_install_saved);
}

static void
on_preauth_stored(struct breq *q, struct redisReply *r)
{
    (void)r;
    install_redirect(q);
}

static void
on_session_info(const struct wecom_api_result *res, void *arg)
{
    struct breq *q = arg;
    char key[KEYS_MAX], ctx[KEYS_MAX + 8], ttl[24], *sealed = NULL;
    const char *argv[5];

    if (res->err) {
        page(q, 502, "WeCom is not answering", "set_session_info failed (%s)",
             brk_strerror(res->err));
        return;
    }
    if (keys_suite(key, sizeof(key), q->b->cfg->key_prefix,
                   q->su->conf->suite_id, "preauth") ||
        keys_seal_ctx(ctx, sizeof(ctx), key, "code") || !q->su->dk_loaded ||
        keyring_seal(q->su->dk, ctx, q->pre_auth, strlen(q->pre_auth), &sealed,
                     NULL)) {
        install_redirect(q); /* usable, just not cached */
        return;
    }
    /* cached for its lifetime, less a margin for the admin's clicks */
    snprintf(ttl, sizeof(ttl), "%ld",
             q->expires_in > 120 ? q->expires_in - 60 : 60);
    argv[0] = "SET";
    argv[1] = key;
    argv[2] = sealed;
    argv[3] = "EX";
    argv[4] = ttl;
    redis_step(q, 5, argv, on_preauth_stored);
    brk_free(sealed);
}

static void
on_pre_auth_code(const struct wecom_api_result *res, void *arg)
{
    struct breq *q = arg;
    const char *code;
    json_t *req;
    char *body, *path;
    enum brk_err err;

    code = json_string_value(json_object_get(res->body, "pre_auth_code"));
    if (res->err || code == NULL || strlen(code) > 512) {
        page(q, 502, "WeCom is not answering", "no pre_auth_code (%s)",
             brk_strerror(res->err));
        return;
    }
    q->pre_auth = brk_strdup(code);
    q->expires_in =
        (long)json_integer_value(json_object_get(res->body, "expires_in"));
    req = json_pack("{s:s, s:{s:i}}", "pre_auth_code", code, "session_info",
                    "auth_type", q->su->conf->auth_type);
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    /* the suite token rides in the query, as WeCom wants */
    path = q->pre_auth ? brk_malloc(sizeof(q->stok) + 80) : NULL;
    if (body == NULL || path == NULL) {
        free(body);
        brk_free(path);
        page(q, 503, "Try again", "out of memory");
        return;
    }
    snprintf(path, sizeof(q->stok) + 80,
             "/cgi-bin/service/set_session_info?suite_access_token=%s",
             q->stok);
    err =
        wecom_api_call(q->b->api, "POST", path, body, NULL, on_session_info, q);
    free(body);
    brk_free_secret_str(path);
    if (err)
        page(q, 503, "Try again", "cannot call WeCom");
}

static void
on_suite_token_install(enum brk_err err, const char *token, long errcode,
                       void *arg)
{
    struct breq *q = arg;
    char path[1700];

    if (err || strlen(token) > 512) {
        page(q, 502, "WeCom is not answering", "no suite token (%s, %ld)",
             brk_strerror(err), errcode);
        return;
    }
    codec_pct_encode(token, q->stok); /* kept for set_session_info */
    snprintf(path, sizeof(path),
             "/cgi-bin/service/get_pre_auth_code?suite_access_token=%s",
             q->stok);
    if (wecom_api_call(q->b->api, "GET", path, NULL, NULL, on_pre_auth_code, q))
        page(q, 503, "Try again", "cannot call WeCom");
    brk_wipe(path, sizeof(path));
}

static void
on_preauth_cached(struct breq *q, struct redisReply *r)
{
    char key[KEYS_MAX], ctx[KEYS_MAX + 8];
    size_t len;

    if (r->type == REDIS_REPLY_STRING && q->su->dk_loaded &&
        !keys_suite(key, sizeof(key), q->b->cfg->key_prefix,
                    q->su->conf->suite_id, "preauth") &&
        !keys_seal_ctx(ctx, sizeof(ctx), key, "code") &&
        keyring_open(q->su->dk, ctx, r->str, r->len, &q->pre_auth, &len) ==
            BRK_OK) {
        install_redirect(q);
        return;
    }
    if (tokens_suite(q->b->tok, q->su->conf->suite_id, on_suite_token_install,
                     q))
        page(q, 503, "Try again", "no suite token");
}

static void
install_start(struct breq *q)
{
    int bad = 0;
    const char *ret = param(q, "return", &bad);
    char key[KEYS_MAX];
    const char *argv[2];

    if (bad || (ret != NULL && !return_ok(q, ret))) {
        page(q, 400, "Refused", "the return URL is not allowed");
        return;
    }
    if (ret != NULL && (q->ret = brk_strdup(ret)) == NULL) {
        page(q, 503, "Try again", "out of memory");
        return;
    }
    if (keys_suite(key, sizeof(key), q->b->cfg->key_prefix,
                   q->su->conf->suite_id, "preauth")) {
        page(q, 503, "Try again", "key names too long");
        return;
    }
    argv[0] = "GET";
    argv[1] = key;
    redis_step(q, 2, argv, on_preauth_cached);
}

static void
on_install_queued(struct breq *q, struct redisReply *r)
{
    char url[OAUTH_RETURN_MAX + 64];

    (void)r;
    log_req(LOG_LVL_INFO, q->r->id,
            "install confirmed by the browser: suite=%s; queued",
            q->su->conf->suite_id);
    if (q->ret != NULL && q->ret[0] != '\0' &&
        !return_with(url, sizeof(url), q->ret, "installed=1")) {
        redirect(q, url);
        return;
    }
    page(q, 200, "Installed",
         "the app is installed; it is ready within a few seconds");
}

/*
 * The state read back (and deleted) from Redis, for flow: the stored
 * record decoded and its return URL and caller state checked again, since
 * what Redis holds is not trusted to widen anything. Returns 0, or -1
 * after the refusal page.
 */
static int
state_of(struct breq *q, struct redisReply *r, const char *flow,
         struct record_state *st)
{
    enum brk_err err;

    if (r->type == REDIS_REPLY_INTEGER && r->integer == -1) {
        page(q, 429, "Slow down",
             "too many installs from this address; try again later");
        return -1;
    }
    err = record_state_decode(r, st);

    if (err == BRK_ERR_NOTFOUND || (!err && strcmp(st->flow, flow) != 0)) {
        page(q, 400, "Refused", "the state is unknown, expired or used");
        return -1;
    }
    if (err || (st->ret[0] != '\0' && !return_ok(q, st->ret)) ||
        !oauth_caller_state_ok(st->cstate)) {
        log_req(LOG_LVL_WARN, q->r->id, "stored state unusable (%s)",
                brk_strerror(err ? err : BRK_ERR_INVAL));
        page(q, 400, "Refused", "the state is unusable");
        return -1;
    }
    return 0;
}

static void
on_install_state(struct breq *q, struct redisReply *r)
{
    struct record_state st;
    const char *code = query_get(q->q, "auth_code");
    char seen[KEYS_MAX], stream[KEYS_MAX], ctx[KEYS_MAX + 8], h[65], what[80];
    char ts[24], rcv[24], *sealed = NULL;
    const char *parts[3];
    const char *argv[14];

    if (state_of(q, r, "install", &st))
        return;
    if (st.ret[0] != '\0' && (q->ret = brk_strdup(st.ret)) == NULL) {
        page(q, 503, "Try again", "out of memory");
        return;
    }
    parts[0] = "install";
    parts[1] = q->su->conf->suite_id;
    parts[2] = code;
    keyring_index_hmac_parts(q->b->kr, parts, 3, h);
    snprintf(what, sizeof(what), "seen:%s", h);
    if (!q->su->dk_loaded ||
        keys_suite(seen, sizeof(seen), q->b->cfg->key_prefix,
                   q->su->conf->suite_id, what) ||
        keys_suite_events(stream, sizeof(stream), q->b->cfg->key_prefix,
                          q->su->conf->suite_id) ||
        keys_seal_ctx(ctx, sizeof(ctx), stream, "auth") ||
        keyring_seal(q->su->dk, ctx, code, strlen(code), &sealed, NULL)) {
        page(q, 503, "Try again", "the install could not be recorded");
        return;
    }
    snprintf(ts, sizeof(ts), "%lld", brk_wall_ms() / 1000);
    snprintf(rcv, sizeof(rcv), "%lld", brk_wall_ms());
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_AUTHCODE_ENQUEUE);
    argv[2] = "2";
    argv[3] = seen;
    argv[4] = stream;
    argv[5] = "86400";
    argv[6] = "kind";
    argv[7] = "install";
    argv[8] = "auth";
    argv[9] = sealed;
    argv[10] = "ts";
    argv[11] = ts;
    argv[12] = "received_ms";
    argv[13] = rcv;
    redis_step(q, 14, argv, on_install_queued);
    brk_free(sealed);
}

/* Take the state of flow given in the request, then next. Installs are
 * budgeted per client address (the one completing them). */
static void
take_state(struct breq *q, const char *flow, breq_step *next)
{
    char hkey[KEYS_MAX], zkey[KEYS_MAX], ckey[KEYS_MAX], bkey[KEYS_MAX];
    char what[96], cap[16], window[16];
    const char *argv[10];
    int bad = 0, install = strcmp(flow, "install") == 0;
    const char *state = param(q, "state", &bad);

    snprintf(what, sizeof(what), "installs:%s", q->client_h);
    snprintf(cap, sizeof(cap), "%d", BROWSER_INSTALLS_PER_ADDR);
    snprintf(window, sizeof(window), "%d", BROWSER_INSTALLS_WINDOW);
    if (bad || state == NULL ||
        oauth_state_check(q->b->kr, flow, q->su->conf->suite_id, state,
                          q->id) ||
        state_keys(q, hkey, zkey) || client_states_key(q, "", ckey) ||
        keys_suite(bkey, sizeof(bkey), q->b->cfg->key_prefix,
                   q->su->conf->suite_id, what)) {
        page(q, 400, "Refused",
             "the state is missing, forged or of another "
             "flow");
        return;
    }
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_BROWSER_STATE_TAKE);
    argv[2] = "3";
    argv[3] = hkey;
    argv[4] = zkey;
    argv[5] = bkey;
    argv[6] = q->id;
    argv[7] = ckey;
    argv[8] = install ? cap : "";
    argv[9] = window;
    redis_step(q, 10, argv, next);
}

static void
install_done(struct breq *q)
{
    int bad = 0;
    const char *code = param(q, "auth_code", &bad);

    /* WeCom appends expires_in: ignored */
    if (bad || code == NULL || code[0] == '\0' || strlen(code) > 1024) {
        page(q, 400, "Refused", "auth_code missing or repeated");
        return;
    }
    take_state(q, "install", on_install_state);
}

/*---- Member OAuth ----*/

static void
on_authorize_saved(struct breq *q, struct redisReply *r)
{
    const struct config *cfg = q->b->cfg;
    char cb[512], enc[1600];
    struct dynbuf u;

    if (saved_or_refused(q, r, "logins"))
        return;
    snprintf(cb, sizeof(cb), "%s/wecom/suite/%s/oauth/callback",
             cfg->public_base_url, q->su->conf->suite_id);
    codec_pct_encode(cb, enc);
    dynbuf_init(&u, 8192);
    if (dynbuf_printf(&u,
                      "%s%cappid=%s&redirect_uri=%s&response_type=code"
                      "&scope=%s&state=%s#wechat_redirect",
                      cfg->wecom_oauth_url,
                      strchr(cfg->wecom_oauth_url, '?') ? '&' : '?',
                      q->su->conf->suite_id, enc, q->scope, q->state)) {
        page(q, 503, "Try again", "out of memory");
        return;
    }
    redirect(q, u.buf);
    dynbuf_free(&u);
}

static void
authorize(struct breq *q)
{
    int bad = 0;
    const char *scope = param(q, "scope", &bad),
               *ret = param(q, "return", &bad);
    const char *cs = param(q, "state", &bad);
    const char *pairs[6];

    if (bad || scope == NULL ||
        (strcmp(scope, "snsapi_base") && strcmp(scope, "snsapi_privateinfo"))) {
        page(q, 400, "Refused",
             "scope must be snsapi_base or "
             "snsapi_privateinfo, once");
        return;
    }
    if (!return_ok(q, ret)) {
        page(q, 400, "Refused", "the return URL is missing or not allowed");
        return;
    }
    if (!oauth_caller_state_ok(cs)) {
        page(q, 400, "Refused", "state: at most 128 of [A-Za-z0-9_.-]");
        return;
    }
    snprintf(q->scope, sizeof(q->scope), "%s", scope);
    pairs[0] = "return";
    pairs[1] = ret;
    pairs[2] = "cstate";
    pairs[3] = cs ? cs : "";
    pairs[4] = "scope";
    pairs[5] = scope;
    save_state(q, "oauth", pairs, 3, on_authorize_saved);
}

static enum brk_err
tenant_key(struct breq *q, const char *what, const char *h, char *out)
{
    char w[160];

    if (h != NULL)
        snprintf(w, sizeof(w), "%s:%s", what, h);
    else
        snprintf(w, sizeof(w), "%s", what);
    return keys_tenant_sub(out, KEYS_MAX, q->b->cfg->key_prefix, q->corp,
                           q->su->conf->suite_id, w);
}

static void
on_login_saved(struct breq *q, struct redisReply *r)
{
    struct login *l = q->login;
    char url[OAUTH_RETURN_MAX + 512], params[512];

    if (r->type != REDIS_REPLY_INTEGER || r->integer != 1) {
        page(q, 400, "Refused",
             "the app is not installed in this "
             "enterprise");
        return;
    }
    snprintf(params, sizeof(params), "code=%s&corpid=%s%s%s", l->code, q->corp,
             q->cstate && q->cstate[0] ? "&state=" : "",
             q->cstate && q->cstate[0] ? q->cstate : "");
    if (return_with(url, sizeof(url), q->ret, params)) {
        page(q, 503, "Try again", "the return URL is too long");
        return;
    }
    log_req(LOG_LVL_INFO, q->r->id, "member login: suite=%s corp=%s",
            q->su->conf->suite_id, q->corp);
    redirect(q, url);
}

static void
save_login(struct breq *q)
{
    struct login *l;
    char kcode[KEYS_MAX], kticket[KEYS_MAX], kdetail[KEYS_MAX];
    char tkey[KEYS_MAX], ctx[KEYS_MAX + 16], h[65], ttl[24], exp[24];
    char dttl[24], *rec = NULL, *sealed_rec = NULL, *sealed_detail = NULL;
    char *detail = NULL;
    struct record_oauth_code cr;
    const char *argv[16];
    long life =
        q->expires_in > 0 && q->expires_in < 86400 ? q->expires_in : 1800;

    l = brk_calloc(1, sizeof(*l));
    if (l == NULL || service_token_new(l->code) ||
        (q->user_ticket != NULL && service_token_new(l->ticket))) {
        brk_free(l);
        page(q, 503, "Try again", "out of memory");
        return;
    }
    /* the record a service redeems with the code */
    snprintf(cr.userid, sizeof(cr.userid), "%s", q->userid);
    snprintf(cr.openid, sizeof(cr.openid), "%s", q->openid);
    memcpy(cr.user_ticket, l->ticket, sizeof(cr.user_ticket));
    cr.expires_in = q->user_ticket ? life : 0;
    if (record_oauth_code_encode(&cr, &rec) != BRK_OK)
        rec = NULL;
    brk_wipe(&cr, sizeof(cr));
    if (q->detail != NULL)
        detail = json_dumps(q->detail, JSON_COMPACT);
    service_token_hash(l->code, strlen(l->code), h);
    if (rec == NULL || tenant_key(q, "oauth:code", h, kcode) ||
        keys_seal_ctx(ctx, sizeof(ctx), kcode, "rec") ||
        keyring_seal(q->tdk, ctx, rec, strlen(rec), &sealed_rec, NULL))
        goto fail;
    service_token_hash(l->ticket, strlen(l->ticket), h);
    if (tenant_key(q, "oauth:ticket", h, kticket) ||
        tenant_key(q, "oauth:detail", h, kdetail) ||
        keys_tenant(tkey, sizeof(tkey), q->b->cfg->key_prefix, q->corp,
                    q->su->conf->suite_id))
        goto fail;
    if (detail != NULL && (keys_seal_ctx(ctx, sizeof(ctx), kdetail, "fields") ||
                           keyring_seal(q->tdk, ctx, detail, strlen(detail),
                                        &sealed_detail, NULL)))
        goto fail;
    snprintf(ttl, sizeof(ttl), "%d", BROWSER_CODE_TTL);
    snprintf(exp, sizeof(exp), "%lld", brk_wall_ms() / 1000 + life);
    snprintf(dttl, sizeof(dttl), "%ld", life);
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_MEMBER_LOGIN_STORE);
    argv[2] = "4";
    argv[3] = kcode;
    argv[4] = kticket;
    argv[5] = kdetail;
    argv[6] = tkey;
    argv[7] = sealed_rec;
    argv[8] = ttl;
    argv[9] = q->user_ticket ? "1" : "";
    argv[10] = sealed_detail ? sealed_detail : "";
    argv[11] = q->userid;
    argv[12] = exp;
    /* the ticket's marker outlives it a day, to tell expired (84014)
     * from never issued (84015); the fields go with the ticket */
    {
        char mttl[24];

        snprintf(mttl, sizeof(mttl), "%ld", life + 86400);
        argv[13] = mttl;
        argv[14] = dttl;
        q->login = l;
        redis_step(q, 15, argv, on_login_saved);
    }
    goto out;
fail:
    brk_free(l);
    page(q, 503, "Try again", "the login could not be recorded");
out:
    brk_free_secret_str(rec);
    if (detail != NULL)
        brk_wipe(detail, strlen(detail));
    free(detail);
    brk_free(sealed_rec);
    brk_free(sealed_detail);
}

static void
on_tdk(enum brk_err err, const unsigned char *dk, void *arg)
{
    struct breq *q = arg;

    if (err) {
        page(q, 400, "Refused",
             "the app is not installed in this "
             "enterprise");
        return;
    }
    memcpy(q->tdk, dk, KEYRING_KEY_LEN);
    save_login(q);
}

static void
load_tdk(struct breq *q)
{
    char key[KEYS_MAX], ctx[KEYS_MAX];

    if (tenant_key(q, "dk", NULL, key)) {
        page(q, 400, "Refused", "bad corp");
        return;
    }
    snprintf(ctx, sizeof(ctx), "tenant:%s:%s", q->su->conf->suite_id, q->corp);
    if (datakey_load(q->b->st, q->b->kr, key, ctx, 0, on_tdk, q))
        page(q, 503, "Try again", "the store is unavailable");
}

static void
on_detail(const struct wecom_api_result *res, void *arg)
{
    struct breq *q = arg;

    if (res->err) {
        page(q, 400, "Refused",
             "WeCom did not release the member's "
             "details (%s)",
             brk_strerror(res->err));
        return;
    }
    q->detail = json_incref(res->body);
    load_tdk(q);
}

static const char *
either(const json_t *o, const char *a, const char *b)
{
    const char *v = json_string_value(json_object_get(o, a));

    return v ? v : json_string_value(json_object_get(o, b));
}

static void
on_userinfo(const struct wecom_api_result *res, void *arg)
{
    struct breq *q = arg;
    const char *corp, *user, *open, *ticket;
    json_t *req;
    char *body;

    if (res->err) {
        page(q, 400, "Refused", "WeCom rejected the login code (%s%s%ld)",
             brk_strerror(res->err), res->errcode ? ", errcode " : "",
             res->errcode);
        return;
    }
    /* both reply shapes: the current lower-case one and the old one */
    corp = either(res->body, "corpid", "CorpId");
    user = either(res->body, "userid", "UserId");
    /* a member's open_userid (the current reply only); openid and OpenId
     * name a non-member, who is refused below */
    open = json_string_value(json_object_get(res->body, "open_userid"));
    ticket = json_string_value(json_object_get(res->body, "user_ticket"));
    if (user != NULL && (corp == NULL || !keys_id_ok(corp) ||
                         strlen(user) >= sizeof(q->userid))) {
        page(q, 400, "Refused", "WeCom's reply names no usable corp");
        return;
    }
    if (user == NULL) {
        /* a non-member: only an openid, and no corp to bind it to */
        page(q, 400, "Not a member",
             "only members of an enterprise that installed the app can log "
             "in here");
        return;
    }
    snprintf(q->corp, sizeof(q->corp), "%s", corp);
    snprintf(q->userid, sizeof(q->userid), "%s", user);
    if (open != NULL && strlen(open) < sizeof(q->openid))
        snprintf(q->openid, sizeof(q->openid), "%s", open);
    else
        q->openid[0] = '\0';
    q->expires_in =
        (long)json_integer_value(json_object_get(res->body, "expires_in"));
    if (ticket == NULL || strcmp(q->scope, "snsapi_privateinfo") != 0) {
        load_tdk(q);
        return;
    }
    q->user_ticket = brk_strdup(ticket);
    req = json_pack("{s:s}", "user_ticket", ticket);
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (body == NULL || q->user_ticket == NULL) {
        free(body);
        page(q, 503, "Try again", "out of memory");
        return;
    }
    if (wecom_api_call(q->b->api, "POST", q->detail_path, body, q->corp,
                       on_detail, q))
        page(q, 503, "Try again", "cannot call WeCom");
    brk_wipe(body, strlen(body));
    free(body);
}

static void
on_suite_token_oauth(enum brk_err err, const char *token, long errcode,
                     void *arg)
{
    struct breq *q = arg;
    char enc[1600], path[2000], *code = NULL;
    size_t n;

    if (err || strlen(token) > 512) {
        page(q, 502, "WeCom is not answering", "no suite token (%s, %ld)",
             brk_strerror(err), errcode);
        return;
    }
    codec_pct_encode(token, enc);
    n = strlen(enc) + 96;
    q->detail_path = brk_malloc(n);
    if (q->detail_path != NULL)
        snprintf(q->detail_path, n,
                 "/cgi-bin/service/auth/getuserdetail3rd?"
                 "suite_access_token=%s",
                 enc);
    code = brk_malloc(strlen(query_get(q->q, "code")) * 3 + 1);
    if (q->detail_path == NULL || code == NULL) {
        brk_free(code);
        page(q, 503, "Try again", "out of memory");
        return;
    }
    codec_pct_encode(query_get(q->q, "code"), code);
    snprintf(path, sizeof(path),
             "/cgi-bin/service/auth/getuserinfo3rd?suite_access_token=%s"
             "&code=%s",
             enc, code);
    brk_free(code);
    if (wecom_api_call(q->b->api, "GET", path, NULL, NULL, on_userinfo, q))
        page(q, 503, "Try again", "cannot call WeCom");
    brk_wipe(path, sizeof(path));
    brk_wipe(enc, sizeof(enc));
}

static void
on_oauth_state(struct breq *q, struct redisReply *r)
{
    struct record_state st;

    if (state_of(q, r, "oauth", &st))
        return;
    q->ret = brk_strdup(st.ret);
    q->cstate = brk_strdup(st.cstate);
    snprintf(q->scope, sizeof(q->scope), "%s", st.scope);
    if (q->ret == NULL || q->cstate == NULL) {
        page(q, 503, "Try again", "out of memory");
        return;
    }
    if (tokens_suite(q->b->tok, q->su->conf->suite_id, on_suite_token_oauth, q))
        page(q, 503, "Try again", "no suite token");
}

static void
oauth_callback(struct breq *q)
{
    int bad = 0;
    const char *code = param(q, "code", &bad);

    if (bad || code == NULL || code[0] == '\0' || strlen(code) > 512) {
        page(q, 400, "Refused", "code missing or repeated");
        return;
    }
    take_state(q, "oauth", on_oauth_state);
}

/*---- Entry ----*/

int
browser_handle(struct browser *b, struct httpd_req *r, struct suite_rt *su,
               const char *rest)
{
    struct breq *q;
    void (*fn)(struct breq *) = NULL;
    int limited = 0;

    if (strcmp(rest, "install") == 0) {
        r->route = "install";
        fn = install_start;
        limited = 1;
    } else if (strcmp(rest, "install/done") == 0) {
        r->route = "install_done";
        fn = install_done;
    } else if (strcmp(rest, "oauth/authorize") == 0) {
        r->route = "oauth_authorize";
        fn = authorize;
        limited = 1;
    } else if (strcmp(rest, "oauth/callback") == 0) {
        r->route = "oauth_callback";
        fn = oauth_callback;
    } else {
        return -1;
    }
    q = brk_calloc(1, sizeof(*q));
    if (q == NULL) {
        httpd_reply_text(r, 503, "busy\n");
        return 0;
    }
    q->b = b;
    q->r = r;
    q->su = su;
    if (strcmp(httpd_method(r), "GET") != 0) {
        page(q, 405, "Refused", "use GET");
        return 0;
    }
    if (client_of(q) != BRK_OK) {
        page(q, 400, "Refused", "X-Forwarded-For names no client address");
        return 0;
    }
    if (limited && !rate_ok(b, q->client)) {
        page(q, 429, "Slow down", "too many requests from this address");
        return 0;
    }
    if (query_parse(httpd_raw_query(r), MAX_PARAMS, &q->q) != BRK_OK) {
        page(q, 400, "Refused", "malformed query string");
        return 0;
    }
    fn(q);
    return 0;
}

void
browser_set_keyring(struct browser *b, const struct keyring *kr)
{
    b->kr = kr;
}

enum brk_err
browser_new(const struct config *cfg, const struct keyring *kr,
            struct store *st, struct tokens *tok, struct wecom_api *api,
            struct browser **out)
{
    struct browser *b = brk_calloc(1, sizeof(*b));
    enum brk_err err;

    if (b == NULL)
        return BRK_ERR_NOMEM;
    b->cfg = cfg;
    b->kr = kr;
    b->st = st;
    b->tok = tok;
    b->api = api;
    err = netaddr_list_parse(cfg->trusted_proxies ? cfg->trusted_proxies : "",
                             &b->trusted, NULL);
    if (err == BRK_ERR_INVAL || err == BRK_ERR_TOOBIG)
        err = BRK_ERR_CONFIG;
    if (!err)
        err = cache_new(100000, 60000, bucket_free, &b->rate);
    if (err) {
        netaddr_list_free(b->trusted);
        brk_free(b);
        return err;
    }
    httpd_set_trusted_proxies(b->trusted);
    if (netaddr_list_count(b->trusted) > 0)
        log_info("browser routes: the client address of requests from %zu "
                 "trusted prox%s is read from X-Forwarded-For",
                 netaddr_list_count(b->trusted),
                 netaddr_list_count(b->trusted) == 1 ? "y" : "ies");
    *out = b;
    return BRK_OK;
}

void
browser_free(struct browser *b)
{
    if (b == NULL)
        return;
    httpd_set_trusted_proxies(NULL);
    netaddr_list_free(b->trusted);
    cache_free(b->rate);
    brk_free(b);
}
