/*
 * The service API (see proxy.h). A request is a chain of steps over one
 * context; every step either continues or ends the request with exactly
 * one reply through reply_error / reply_body. In steady state the chain
 * touches Redis once (the audit entry): tokens, services, grants and
 * ranges come from in-process caches that live at most cache_max_age and
 * are dropped on change notices and reconnects.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/rand.h>

#include "audit.h"
#include "budget.h"
#include "cache.h"
#include "codec.h"
#include "datakey.h"
#include "config.h"
#include "dynbuf.h"
#include "errcodes.h"
#include "filter.h"
#include "grant.h"
#include "httpd.h"
#include "keyring.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "proxy.h"
#include "query.h"
#include "record.h"
#include "scope_map.h"
#include "scripts.h"
#include "service.h"
#include "store.h"
#include "suites.h"
#include "tokens.h"
#include "visible_range.h"
#include "wecom_api.h"

#define MAX_PARAMS     32
#define CACHE_ENTRIES  100000
#define MAX_SUITES_TRY 16

/* A narrowed range shared by the cache and requests in flight. */
struct range_ref {
    int refs;
    struct vrange *v;
};

struct proxy {
    struct event_base *base;
    const struct config *cfg;
    const struct keyring *kr;
    struct store *st;
    struct suites *suites;
    struct tokens *tok;
    struct wecom_api *api;
    struct budget *budget; /* NULL: every WeCom call is refused */
    struct audit *audit;   /* NULL: no audit trail (tests) */
    const struct scope_map *scopes;
    struct cache *tokens;   /* token hash -> record_token */
    struct cache *services; /* id -> record_service */
    struct cache *tenants;  /* "suite corp" -> record_tenant */
    struct cache *ranges;   /* "suite corp svc" -> vrange (narrowed) */
    struct tload *loads;    /* tenant loads under way */
    unsigned inflight;
    /* bumped by every change notice and reconnect: a record read before
     * the latest one may serve the request that read it, but is not
     * cached, so a revoked service or token never serves again */
    unsigned long gen;
};

struct tload;

struct preq {
    struct proxy *p;
    unsigned long gen; /* p->gen when the request arrived */
    struct httpd_req *r;
    const struct scope_map *scopes;
    struct query *q;
    json_t *body;
    char path[256];
    int post;
    int oauth; /* 1 getuserinfo, 2 getuserdetail */
    unsigned char tdk[KEYRING_KEY_LEN];
    /* who */
    struct record_service *svc;
    struct record_tenant *ten;
    const struct vrange *range;
    struct range_ref *narrowed; /* holds range alive when narrowed */
    struct record_token tr;
    char token_hash[65];
    /* what */
    const struct scope_endpoint *ep;
    struct scope_grant grant;
    enum grant_refusal why;
    char *upstream_qs;
    char *upstream_body;
    char *corp_token;
    int retried;
    int budget_held; /* a call the budget allowed, not yet reported */
    struct filter *filter;
    /* a customer or chat subject: in range only if the reply shows a
     * record of this kind in range (a follow user, the chat's owner) */
    enum scope_record must_see;
    int seen;
    /* gettoken */
    size_t suite_i;
    const char *secret;
    size_t secret_len;
};

static void reply_error(struct preq *q, enum errcode e, const char *fmt, ...)
    BRK_PRINTF(3, 4);

/*---- Records ----*/

/* The caches' destructors. */
static void
svc_unref(void *v)
{
    record_service_unref(v);
}

static void
tenant_unref(void *v)
{
    record_tenant_unref(v);
}

static struct range_ref *
range_ref(struct range_ref *r)
{
    r->refs++;
    return r;
}

static void
range_unref(void *v)
{
    struct range_ref *r = v;

    if (r == NULL || --r->refs > 0)
        return;
    vrange_free(r->v);
    brk_free(r);
}

/*---- Replies ----*/

/* Tell the budget how the call it allowed ended (errcode -1: no answer
 * from WeCom, or no call); once per allowed call. */
static void
budget_done(struct preq *q, long errcode)
{
    if (!q->budget_held)
        return;
    q->budget_held = 0;
    budget_report(q->p->budget, q->tr.corp, q->path + strlen("/cgi-bin/"),
                  errcode);
}

static void
preq_free(struct preq *q)
{
    budget_done(q, -1);
    q->p->inflight--;
    query_free(q->q);
    json_decref(q->body);
    record_service_unref(q->svc);
    record_tenant_unref(q->ten);
    range_unref(q->narrowed);
    brk_free(q->upstream_qs);
    if (q->upstream_body != NULL) {
        brk_wipe(q->upstream_body, strlen(q->upstream_body));
        free(q->upstream_body);
    }
    brk_free_secret_str(q->corp_token);
    filter_free(q->filter);
    brk_wipe(q->tdk, sizeof(q->tdk));
    brk_free(q);
}

static void
audit_names(struct preq *q, long errcode, unsigned long stripped,
            unsigned long dropped, const char *returned, const char *removed)
{
    char now[24], code[24], sn[24], dn[24];
    const char *kv[24];
    size_t n = 0;

    snprintf(now, sizeof(now), "%lld", brk_wall_ms() / 1000);
    snprintf(code, sizeof(code), "%ld", errcode);
    snprintf(sn, sizeof(sn), "%lu", stripped);
    snprintf(dn, sizeof(dn), "%lu", dropped);
    kv[n++] = "type";
    kv[n++] = "request";
    kv[n++] = "req";
    kv[n++] = q->r->id;
    kv[n++] = "at";
    kv[n++] = now;
    kv[n++] = "service";
    kv[n++] = q->svc ? q->svc->name : "";
    kv[n++] = "corpid";
    kv[n++] = q->tr.corp;
    kv[n++] = "endpoint";
    kv[n++] = q->path;
    kv[n++] = "errcode";
    kv[n++] = code;
    kv[n++] = "stripped";
    kv[n++] = sn;
    kv[n++] = "dropped";
    kv[n++] = dn;
    if (returned != NULL) {
        kv[n++] = "returned";
        kv[n++] = returned;
        kv[n++] = "removed";
        kv[n++] = removed ? removed : "";
    }
    if (q->p->audit != NULL)
        audit_append(q->p->audit, q->r->id, kv, n);
}

static void
audit(struct preq *q, long errcode, unsigned long stripped,
      unsigned long dropped)
{
    audit_names(q, errcode, stripped, dropped, NULL, NULL);
}

static void
count_request(struct preq *q, long errcode)
{
    char labels[192], code[24];

    snprintf(code, sizeof(code), "%ld", errcode);
    metrics_inc(METRICS_API_REQUESTS,
                metrics_labels(labels, sizeof(labels), "endpoint",
                               q->ep ? q->ep->path : "other", "errcode", code,
                               NULL));
}

/* The one place an error reply is built: errcode and HTTP status from
 * the table (errcodes.h), errmsg from msg. */
static void
reply_send(struct preq *q, int http, long errcode, const char *msg)
{
    char body[400];

    if (errcodes_body(errcode, msg, body, sizeof(body)) != BRK_OK &&
        errcodes_body(errcode, "error", body, sizeof(body)) != BRK_OK)
        snprintf(body, sizeof(body), "{\"errcode\":%ld,\"errmsg\":\"error\"}",
                 errcode);
    log_req(errcode == -1 ? LOG_LVL_WARN : LOG_LVL_INFO, q->r->id,
            "service API %s %s: errcode %ld: %s", q->svc ? q->svc->name : "-",
            q->path, errcode, msg);
    count_request(q, errcode);
    if (q->svc != NULL)
        audit(q, errcode, 0, 0);
    httpd_reply(q->r, http, "application/json; charset=utf-8", body,
                strlen(body));
    preq_free(q);
}

static void
reply_error(struct preq *q, enum errcode e, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply_send(q, errcodes_http(e), errcodes_code(e), msg);
}

/* WeCom's own error, passed on as WeCom answered it. */
static void
reply_relay(struct preq *q, long errcode, const char *msg)
{
    reply_send(q, errcodes_http(ERRCODE_OK), errcode, msg);
}

/*---- Loading services, tokens and tenants ----*/

typedef void preq_step(struct preq *q);

struct load_ctx {
    struct preq *q;
    preq_step *next;
    char key[200];
};

/* A stored record that is damaged or could not be read: the request is
 * refused, never served with a wider default. */
static void
reply_unusable(struct preq *q, const char *what, enum brk_err err)
{
    log_req(LOG_LVL_WARN, q->r->id, "stored %s record unusable (%s)", what,
            brk_strerror(err));
    reply_error(q, ERRCODE_UNAVAILABLE, "stored record unusable");
}

static void
on_service(enum brk_err err, struct redisReply *r, void *arg)
{
    struct load_ctx *c = arg;
    struct preq *q = c->q;
    preq_step *next = c->next;
    struct record_service *s = NULL;
    char id[SERVICE_ID_LEN + 1];

    memcpy(id, c->key, sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    brk_free(c);
    if (err) {
        reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
    err = record_service_decode(id, r, &s);
    if (err && err != BRK_ERR_NOTFOUND) {
        reply_unusable(q, "service", err);
        return;
    }
    /* the cache's own reference: a failed put has dropped it already */
    if (s != NULL && q->gen == q->p->gen &&
        cache_put(q->p->services, id, record_service_ref(s), brk_mono_ms()))
        log_debug("service cache: entry not kept");
    q->svc = s;
    next(q);
}

/* Load the service id into q->svc (NULL when there is none), then next. */
static void
load_service(struct preq *q, const char *id, preq_step *next)
{
    struct record_service *s = cache_get(q->p->services, id, brk_mono_ms());
    struct load_ctx *c;
    char key[KEYS_MAX];
    const char *argv[2];

    if (s != NULL) {
        q->svc = record_service_ref(s);
        next(q);
        return;
    }
    c = brk_calloc(1, sizeof(*c));
    if (c == NULL ||
        keys_service(key, sizeof(key), q->p->cfg->key_prefix, id, NULL)) {
        brk_free(c);
        reply_error(q, ERRCODE_UNAVAILABLE, "out of memory");
        return;
    }
    c->q = q;
    c->next = next;
    snprintf(c->key, sizeof(c->key), "%s", id);
    argv[0] = "HGETALL";
    argv[1] = key;
    if (store_cmd_argv(q->p->st, on_service, c, 2, argv, NULL)) {
        brk_free(c);
        reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
    }
}

/* One load of a tenant at a time: requests that miss the cache while a
 * load is under way wait for it instead of loading it again. */
struct tload_waiter {
    struct preq *q;
    preq_step *next;
    struct tload_waiter *link;
};

struct tload {
    struct proxy *p;
    unsigned long gen; /* p->gen when the load started */
    char key[200];
    struct tload_waiter *waiters;
    struct tload *link;
};

static void
on_tenant(enum brk_err err, struct redisReply *r, void *arg)
{
    struct tload *l = arg, **pp;
    struct proxy *p = l->p;
    struct tload_waiter *w, *next;
    struct record_tenant *t = NULL;
    enum brk_err derr = BRK_OK;

    for (pp = &p->loads; *pp != l; pp = &(*pp)->link)
        ;
    *pp = l->link;
    if (!err) {
        derr = record_tenant_decode(r, brk_wall_ms() / 1000, &t);
        if (derr == BRK_ERR_NOTFOUND)
            derr = BRK_OK;
        else if (derr)
            log_warn("tenant %s: stored record unusable (%s)", l->key,
                     brk_strerror(derr));
    }
    /* the cache's own reference: a failed put has dropped it already */
    if (t != NULL && l->gen == p->gen &&
        cache_put(p->tenants, l->key, record_tenant_ref(t), brk_mono_ms()))
        log_debug("tenant cache: entry not kept");
    for (w = l->waiters; w != NULL; w = next) {
        next = w->link;
        if (err) {
            reply_error(w->q, ERRCODE_UNAVAILABLE, "store unavailable");
        } else if (derr) {
            reply_error(w->q, ERRCODE_UNAVAILABLE, "stored record unusable");
        } else {
            w->q->ten = t != NULL ? record_tenant_ref(t) : NULL;
            w->next(w->q);
        }
        brk_free(w);
    }
    record_tenant_unref(t); /* the load's own reference */
    brk_free(l);
}

/* Load the tenant (suite, corp) of q->tr into q->ten (NULL: none). */
static void
load_tenant(struct preq *q, preq_step *next)
{
    const struct config *cfg = q->p->cfg;
    char ck[200], keys[4][KEYS_MAX];
    struct record_tenant *t;
    struct tload *l;
    struct tload_waiter *w;
    const char *argv[7];

    snprintf(ck, sizeof(ck), "%s %s", q->tr.suite, q->tr.corp);
    t = cache_get(q->p->tenants, ck, brk_mono_ms());
    if (t != NULL) {
        q->ten = record_tenant_ref(t);
        next(q);
        return;
    }
    w = brk_calloc(1, sizeof(*w));
    if (w == NULL) {
        reply_error(q, ERRCODE_UNAVAILABLE, "out of memory");
        return;
    }
    w->q = q;
    w->next = next;
    for (l = q->p->loads; l != NULL; l = l->link)
        if (strcmp(l->key, ck) == 0) {
            w->link = l->waiters;
            l->waiters = w;
            return;
        }
    l = brk_calloc(1, sizeof(*l));
    if (l == NULL ||
        keys_tenant(keys[0], sizeof(keys[0]), cfg->key_prefix, q->tr.corp,
                    q->tr.suite) ||
        keys_tenant_sub(keys[1], sizeof(keys[1]), cfg->key_prefix, q->tr.corp,
                        q->tr.suite, "dir:parents") ||
        keys_tenant_sub(keys[2], sizeof(keys[2]), cfg->key_prefix, q->tr.corp,
                        q->tr.suite, "dir:users") ||
        keys_tenant_sub(keys[3], sizeof(keys[3]), cfg->key_prefix, q->tr.corp,
                        q->tr.suite, "dir:tags")) {
        brk_free(l);
        brk_free(w);
        reply_error(q, ERRCODE_UNAVAILABLE, "out of memory");
        return;
    }
    l->p = q->p;
    l->gen = q->p->gen;
    snprintf(l->key, sizeof(l->key), "%s", ck);
    l->waiters = w;
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_TENANT_LOAD);
    argv[2] = "4";
    argv[3] = keys[0];
    argv[4] = keys[1];
    argv[5] = keys[2];
    argv[6] = keys[3];
    if (store_cmd_argv(q->p->st, on_tenant, l, 7, argv, NULL)) {
        brk_free(l);
        brk_free(w);
        reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
    l->link = q->p->loads;
    q->p->loads = l;
}

/*---- The grant ----*/

/* The grant's decision for q's service and tenant, a token of generation
 * token_gen (-1: none yet) and the scope need: the refusal (also in
 * q->why), and q->grant the effective grant. */
static enum grant_refusal
decide(struct preq *q, long token_gen, int need)
{
    struct grant_ask a = {q->svc,     token_gen, q->tr.suite,
                          q->tr.corp, q->ten,    need};
    struct grant_verdict v;

    grant_decide(&a, &v);
    q->grant = v.effective;
    q->why = v.why;
    return v.why;
}

/*---- gettoken ----*/

/* The token of a (service, gen, suite, corp, nonce, iat): an HMAC under
 * the index key, so every instance derives the same one. */
static void
derive_token(struct preq *q, const char *nonce, const char *iat, char *out)
{
    char gen[24], h[65];
    const char *parts[7];
    unsigned char raw[32];
    size_t i;

    snprintf(gen, sizeof(gen), "%ld", q->svc->gen);
    parts[0] = "broker-token";
    parts[1] = q->svc->id;
    parts[2] = gen;
    parts[3] = q->tr.suite;
    parts[4] = q->tr.corp;
    parts[5] = nonce;
    parts[6] = iat;
    keyring_index_hmac_parts(q->p->kr, parts, 7, h);
    if (codec_hex_decode(h, 64, raw, sizeof(raw)) != BRK_OK)
        memset(raw, 0, sizeof(raw));
    for (i = 0; i < SERVICE_TOKEN_LEN; i++)
        out[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                 "0123456789-_"[(raw[i % 32] >> (i / 32 * 2)) & 63];
    out[SERVICE_TOKEN_LEN] = '\0';
    brk_wipe(raw, sizeof(raw));
    brk_wipe(h, sizeof(h));
}

static void
on_gettoken(enum brk_err err, struct redisReply *r, void *arg)
{
    struct preq *q = arg;
    char token[SERVICE_TOKEN_LEN + 1], body[256];
    long long exp, iat, now = brk_wall_ms() / 1000;

    if (err || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
    /* the current token's nonce (32 hex), issue time and expiry */
    if (r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[2]->type != REDIS_REPLY_STRING || r->element[0]->len != 32 ||
        strspn(r->element[0]->str, "0123456789abcdef") != 32 ||
        record_parse_uint(r->element[1]->str, INT64_MAX / 1000, &iat) !=
            BRK_OK ||
        record_parse_uint(r->element[2]->str, INT64_MAX / 1000, &exp) !=
            BRK_OK) {
        reply_unusable(q, "current token", BRK_ERR_INVAL);
        return;
    }
    derive_token(q, r->element[0]->str, r->element[1]->str, token);
    snprintf(body, sizeof(body),
             "{\"errcode\":0,\"errmsg\":\"ok\",\"access_token\":\"%s\","
             "\"expires_in\":%lld}",
             token, exp - now);
    brk_wipe(token, sizeof(token));
    log_req(LOG_LVL_INFO, q->r->id, "gettoken: service %s corp %s",
            q->svc->name, q->tr.corp);
    count_request(q, 0);
    audit(q, 0, 0, 0);
    httpd_reply(q->r, 200, "application/json; charset=utf-8", body,
                strlen(body));
    brk_wipe(body, sizeof(body));
    preq_free(q);
}

static void
issue_token(struct preq *q)
{
    char cur[KEYS_MAX], toks[KEYS_MAX], ttoks[KEYS_MAX], btok[KEYS_MAX],
        what[200];
    char now[24], ttl[24], reuse[24], gen[24];
    char nonce[33], token[SERVICE_TOKEN_LEN + 1], h[65];
    unsigned char rnd[16];
    const char *argv[16];
    const struct config *cfg = q->p->cfg;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        reply_error(q, ERRCODE_UNAVAILABLE, "no randomness");
        return;
    }
    codec_hex_encode(rnd, sizeof(rnd), nonce);
    snprintf(now, sizeof(now), "%lld", brk_wall_ms() / 1000);
    snprintf(ttl, sizeof(ttl), "%d", PROXY_TOKEN_TTL);
    snprintf(reuse, sizeof(reuse), "%d", PROXY_TOKEN_REUSE_S);
    snprintf(gen, sizeof(gen), "%ld", q->svc->gen);
    /* the hash of the token a fresh nonce would give, for the index */
    derive_token(q, nonce, now, token);
    service_token_hash(token, strlen(token), h);
    brk_wipe(token, sizeof(token));
    /* the current token and the token index live under the tenant too,
     * so a purge removes them with everything else of the tenant */
    snprintf(what, sizeof(what), "svccur:%s", q->svc->id);
    if (keys_tenant_sub(cur, sizeof(cur), cfg->key_prefix, q->tr.corp,
                        q->tr.suite, what) ||
        keys_tenant_sub(ttoks, sizeof(ttoks), cfg->key_prefix, q->tr.corp,
                        q->tr.suite, "btoks") ||
        keys_service(toks, sizeof(toks), cfg->key_prefix, q->svc->id, "toks") ||
        keys_btoken(btok, sizeof(btok), cfg->key_prefix, h)) {
        reply_error(q, ERRCODE_UNAVAILABLE, "key names too long");
        return;
    }
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_SERVICE_TOKEN_MINT);
    argv[2] = "4";
    argv[3] = cur;
    argv[4] = toks;
    argv[5] = btok;
    argv[6] = ttoks;
    argv[7] = now;
    argv[8] = nonce;
    argv[9] = ttl;
    argv[10] = reuse;
    argv[11] = gen;
    argv[12] = q->svc->id;
    argv[13] = q->tr.suite;
    argv[14] = q->tr.corp;
    argv[15] = h;
    if (store_cmd_argv(q->p->st, on_gettoken, q, 16, argv, NULL))
        reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
}

static void try_suite(struct preq *q);

static void
on_gettoken_tenant(struct preq *q)
{
    if (q->ten == NULL) {
        q->suite_i++;
        try_suite(q);
        return;
    }
    if (decide(q, -1, SCOPE_PERM_ALWAYS)) {
        reply_error(q, grant_errcode(q->why),
                    "authorization relation invalid: tenant %s or outside "
                    "the service's corps",
                    q->ten->status);
        return;
    }
    issue_token(q);
}

/* Find the suite in which corpid is a tenant of the service's suite(s). */
static void
try_suite(struct preq *q)
{
    const struct config *cfg = q->p->cfg;

    for (; q->suite_i < cfg->nsuites; q->suite_i++) {
        const char *s = cfg->suites[q->suite_i].suite_id;

        if (q->svc->suite[0] != '\0' && strcmp(q->svc->suite, s) != 0)
            continue;
        snprintf(q->tr.suite, sizeof(q->tr.suite), "%s", s);
        load_tenant(q, on_gettoken_tenant);
        return;
    }
    reply_error(q, ERRCODE_INVALID_CORPID,
                "invalid corpid: not a tenant of the service");
}

static void
on_gettoken_service(struct preq *q)
{
    if (q->svc == NULL || q->svc->revoked ||
        !service_secret_check(q->svc->salt, q->svc->hash, q->secret,
                              q->secret_len)) {
        record_service_unref(q->svc);
        q->svc = NULL; /* no audit entry for unknown callers */
        reply_error(q, ERRCODE_INVALID_SECRET,
                    "invalid credential: corpsecret");
        return;
    }
    q->suite_i = 0;
    try_suite(q);
}

static void
gettoken(struct preq *q)
{
    const char *corp, *secret;
    char id[SERVICE_ID_LEN + 1];

    if (query_count(q->q, "corpid") != 1 ||
        query_count(q->q, "corpsecret") != 1 || q->q->n != 2) {
        reply_error(q, ERRCODE_INVALID_PARAMETER,
                    "invalid parameter: gettoken takes corpid and "
                    "corpsecret once each");
        return;
    }
    corp = query_get(q->q, "corpid");
    secret = query_get(q->q, "corpsecret");
    if (!keys_id_ok(corp)) {
        reply_error(q, ERRCODE_INVALID_CORPID, "invalid corpid");
        return;
    }
    if (service_secret_split(secret, id, &q->secret, &q->secret_len)) {
        reply_error(q, ERRCODE_INVALID_SECRET,
                    "invalid credential: corpsecret");
        return;
    }
    snprintf(q->tr.corp, sizeof(q->tr.corp), "%s", corp);
    load_service(q, id, on_gettoken_service);
}

/*---- The data path ----*/

static int
range_has(const struct vrange *v, enum scope_record kind, const char *id,
          size_t len)
{
    char buf[32], *end;
    long n;

    if (v == NULL)
        return 0;
    switch (kind) {
    case SCOPE_REC_MEMBER:
    case SCOPE_REC_FOLLOW_USER:
    case SCOPE_REC_CHAT_MEMBER:
    case SCOPE_REC_CHAT:
        return vrange_has_member(v, id, len);
    case SCOPE_REC_DEPARTMENT:
    case SCOPE_REC_TAG:
        if (len == 0 || len >= sizeof(buf))
            return 0;
        memcpy(buf, id, len);
        buf[len] = '\0';
        n = strtol(buf, &end, 10);
        if (*end != '\0')
            return 0;
        return kind == SCOPE_REC_DEPARTMENT ? vrange_has_department(v, n)
                                            : vrange_has_tag(v, n);
    default:
        return 0;
    }
}

static int
in_range(enum scope_record kind, const char *id, size_t len, void *arg)
{
    struct preq *q = arg;
    int in = range_has(q->range, kind, id, len);

    if (in && kind == q->must_see)
        q->seen = 1;
    return in;
}

static void start_upstream(struct preq *q);

static void
reply_filtered(struct preq *q)
{
    struct evkeyvalq *hdr = evhttp_request_get_output_headers(q->r->req);
    char *out = NULL, n[24];
    size_t len = 0;
    unsigned long stripped = filter_stripped(q->filter);
    unsigned long dropped = filter_dropped(q->filter);
    long errcode = 0;
    json_t *v;
    json_error_t jerr;

    if (filter_take_output(q->filter, &out, &len) != BRK_OK) {
        reply_error(q, ERRCODE_BAD_GATEWAY,
                    "upstream reply could not be filtered");
        return;
    }
    /* small replies may be WeCom errors: a refused corp token is
     * refreshed and the call repeated once; a reply about a customer or
     * chat that showed nothing of it in range is read whatever its size */
    if (len < 512 || (q->must_see != SCOPE_REC_NONE && !q->seen)) {
        v = json_loadb(out, len, 0, &jerr);
        errcode = (long)json_integer_value(json_object_get(v, "errcode"));
        json_decref(v);
    }
    /* a 45009 or 45033 is the budget's business too */
    budget_done(q, errcode);
    if (tokens_is_corp_token_error(errcode) && !q->retried) {
        q->retried = 1;
        tokens_corp_rejected(q->p->tok, q->tr.suite, q->tr.corp, q->corp_token);
        brk_free(out);
        filter_free(q->filter);
        q->filter = NULL;
        start_upstream(q);
        return;
    }
    if (errcode == 0 && q->must_see != SCOPE_REC_NONE && !q->seen) {
        brk_free(out);
        reply_error(q, ERRCODE_OUT_OF_RANGE,
                    "no privilege to access/modify contact/party/agent");
        return;
    }
    snprintf(n, sizeof(n), "%lu", stripped);
    evhttp_add_header(hdr, "X-Broker-Stripped", n);
    snprintf(n, sizeof(n), "%lu", dropped);
    evhttp_add_header(hdr, "X-Broker-Dropped", n);
    metrics_add(METRICS_FIELDS_STRIPPED, NULL, (double)stripped);
    metrics_add(METRICS_RECORDS_DROPPED, NULL, (double)dropped);
    count_request(q, errcode);
    {
        char *kept = NULL, *removed = NULL;

        /* names of the fields returned and removed, never a value */
        if (filter_names(q->filter, &kept, &removed) != BRK_OK)
            kept = removed = NULL;
        audit_names(q, errcode, stripped, dropped, kept, removed);
        brk_free(kept);
        brk_free(removed);
    }
    httpd_reply(q->r, 200, "application/json; charset=utf-8", out, len);
    brk_free(out);
    preq_free(q);
}

static int
on_chunk(const char *data, size_t len, void *arg)
{
    struct preq *q = arg;
    enum brk_err err = filter_feed(q->filter, data, len);

    return err ? (int)err : 0;
}

static void
on_upstream(const struct wecom_api_result *res, void *arg)
{
    struct preq *q = arg;
    enum brk_err err = res->err;

    if (err == BRK_OK)
        err = filter_finish(q->filter);
    switch (err) {
    case BRK_OK:
        reply_filtered(q);
        return;
    case BRK_ERR_UPSTREAM_TIMEOUT:
        reply_error(q, ERRCODE_GATEWAY_TIMEOUT, "WeCom timed out");
        return;
    case BRK_ERR_UPSTREAM:
        reply_error(q, ERRCODE_BAD_GATEWAY, "WeCom unreachable");
        return;
    case BRK_ERR_SHUTDOWN:
        reply_error(q, ERRCODE_UNAVAILABLE, "shutting down");
        return;
    default:
        /* malformed, not JSON, too big, repeated keys: never the bytes */
        reply_error(q, ERRCODE_BAD_GATEWAY,
                    "WeCom replied with something unusable (%s)",
                    brk_strerror(err));
        return;
    }
}

static void
on_corp_token(enum brk_err err, const char *token, long errcode, void *arg)
{
    struct preq *q = arg;
    char *enc = NULL, *url = NULL;
    size_t n;

    if (err) {
        if (err == BRK_ERR_WECOM)
            reply_relay(q, errcode, "WeCom refused the corp token");
        else
            reply_error(q,
                        err == BRK_ERR_STORE ? ERRCODE_UNAVAILABLE
                                             : ERRCODE_BAD_GATEWAY,
                        "no corp token (%s)", brk_strerror(err));
        return;
    }
    brk_free_secret_str(q->corp_token);
    q->corp_token = brk_strdup(token);
    n = strlen(token) * 3 + strlen(q->path) +
        (q->upstream_qs ? strlen(q->upstream_qs) : 0) + 32;
    enc = brk_malloc(strlen(token) * 3 + 1);
    url = brk_malloc(n);
    if (q->corp_token == NULL || enc == NULL || url == NULL) {
        brk_free(enc);
        brk_free(url);
        reply_error(q, ERRCODE_UNAVAILABLE, "out of memory");
        return;
    }
    codec_pct_encode(token, enc);
    snprintf(url, n, "%s?access_token=%s%s%s", q->path, enc,
             q->upstream_qs && q->upstream_qs[0] ? "&" : "",
             q->upstream_qs ? q->upstream_qs : "");
    q->seen = 0;
    err = filter_new(&q->ep->root, &q->grant, in_range, q, NULL, &q->filter);
    if (!err)
        err =
            wecom_api_stream(q->p->api, q->post ? "POST" : "GET", url,
                             q->upstream_body, NULL, on_chunk, on_upstream, q);
    brk_free_secret_str(enc);
    brk_free_secret_str(url);
    if (err)
        reply_error(q, ERRCODE_UNAVAILABLE, "cannot call WeCom (%s)",
                    brk_strerror(err));
}

static void
on_budget(enum budget_result res, void *arg)
{
    struct preq *q = arg;

    switch (res) {
    case BUDGET_OK:
        q->budget_held = 1;
        if (tokens_corp(q->p->tok, q->tr.suite, q->tr.corp, on_corp_token, q))
            reply_error(q, ERRCODE_UNAVAILABLE, "no corp token");
        return;
    case BUDGET_SPENT:
        reply_error(q, ERRCODE_FREQ_LIMIT, "api freq out of limit");
        return;
    case BUDGET_PAUSED:
        reply_error(q, ERRCODE_FREQ_LIMIT,
                    "api freq out of limit (paused after WeCom's 45009)");
        return;
    case BUDGET_BUSY:
        reply_error(q, ERRCODE_CONCURRENT_LIMIT, "api concurrent out of limit");
        return;
    default:
        reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
}

/* Every WeCom call, a retry too, is first allowed by the shared budget:
 * a spent one is answered at once, without calling WeCom. */
static void
start_upstream(struct preq *q)
{
    if (q->p->budget == NULL ||
        budget_take(q->p->budget, q->tr.corp, q->path + strlen("/cgi-bin/"),
                    BUDGET_SERVICE, on_budget, q) != BRK_OK)
        reply_error(q, ERRCODE_UNAVAILABLE, "no upstream budget");
}

/* What a customer or chat subject must show in range on the reply. */
static void
note_subject(struct preq *q, enum scope_param_kind kind)
{
    if (kind == SCOPE_P_CUSTOMER)
        q->must_see = SCOPE_REC_FOLLOW_USER;
    else if (kind == SCOPE_P_CHAT)
        q->must_see = SCOPE_REC_CHAT;
}

/* Is a subject value in range? kind from the scope file. */
static int
subject_ok(const struct preq *q, enum scope_param_kind kind, const json_t *v)
{
    const struct vrange *r = q->range;
    size_t i;
    const json_t *e;

    if (r == NULL)
        return 0;
    switch (kind) {
    case SCOPE_P_MEMBER:
        return json_is_string(v) && vrange_has_member(r, json_string_value(v),
                                                      json_string_length(v));
    case SCOPE_P_DEPARTMENT:
        return json_is_integer(v) &&
               vrange_has_department(r, (long)json_integer_value(v));
    case SCOPE_P_TAG:
        return json_is_integer(v) &&
               vrange_has_tag(r, (long)json_integer_value(v));
    case SCOPE_P_MEMBER_LIST:
        if (!json_is_array(v))
            return 0;
        json_array_foreach(
            v, i, e) if (!json_is_string(e) ||
                         !vrange_has_member(r, json_string_value(e),
                                            json_string_length(e))) return 0;
        return 1;
    default:
        /* customers and chats: decided on the reply (follow users, owner) */
        return 1;
    }
}

/*
 * A query value as the JSON value its declared type says; NULL if it is
 * not one. An integer must be written the one way it is forwarded ("2";
 * not " 2", "+2", "02" or "-0"), so WeCom is asked about what was
 * checked.
 */
static json_t *
typed_value(const struct scope_param *p, const char *s)
{
    const char *d = s[0] == '-' ? s + 1 : s;
    long long n;

    if (p->type == SCOPE_T_INTEGER) {
        if (*d == '\0' || strlen(d) > 18 ||
            strspn(d, "0123456789") != strlen(d) ||
            (d[0] == '0' && (d[1] != '\0' || d != s)))
            return NULL;
        n = strtoll(s, NULL, 10);
        return json_integer(n);
    }
    if (p->type == SCOPE_T_STRING)
        return json_string(s);
    return NULL;
}

/* GET: every parameter declared, once, well-typed; subjects in range.
 * Builds the query passed upstream from declared parameters only. */
static int
check_query(struct preq *q)
{
    struct dynbuf qs;
    const struct scope_param *p;
    size_t i;
    json_t *v;
    char *enc, num[24] = "";

    dynbuf_init(&qs, 64 * 1024);
    for (i = 0; i < q->q->n; i++) {
        const char *name = q->q->params[i].name;

        if (strcmp(name, "access_token") == 0)
            continue;
        p = scope_endpoint_param(q->ep, name);
        if (p == NULL || query_count(q->q, name) != 1) {
            dynbuf_free(&qs);
            reply_error(q, ERRCODE_INVALID_PARAMETER,
                        "invalid parameter: %s %s",
                        p ? "repeated" : "undeclared", name);
            return -1;
        }
        v = typed_value(p, q->q->params[i].value);
        if (v == NULL) {
            dynbuf_free(&qs);
            reply_error(q, ERRCODE_INVALID_PARAMETER, "invalid parameter: %s",
                        name);
            return -1;
        }
        if (p->kind != SCOPE_P_PLAIN && !subject_ok(q, p->kind, v)) {
            json_decref(v);
            dynbuf_free(&qs);
            reply_error(q, ERRCODE_OUT_OF_RANGE,
                        "no privilege to access/modify contact/party/agent");
            return -1;
        }
        note_subject(q, p->kind);
        /* what goes upstream is the value that was checked */
        if (json_is_integer(v))
            snprintf(num, sizeof(num), "%lld",
                     (long long)json_integer_value(v));
        json_decref(v);
        enc = brk_malloc(strlen(q->q->params[i].value) * 3 + 1);
        if (enc == NULL) {
            dynbuf_free(&qs);
            reply_error(q, ERRCODE_UNAVAILABLE, "out of memory");
            return -1;
        }
        codec_pct_encode(
            p->type == SCOPE_T_INTEGER ? num : q->q->params[i].value, enc);
        if (dynbuf_printf(&qs, "%s%s=%s", qs.len ? "&" : "", name, enc)) {
            brk_free(enc);
            reply_error(q, ERRCODE_INVALID_PARAMETER,
                        "invalid parameter: too long");
            return -1;
        }
        brk_free(enc);
    }
    for (i = 0; i < q->ep->nparams; i++)
        if (q->ep->params[i].required &&
            query_count(q->q, q->ep->params[i].name) == 0 && !q->post) {
            dynbuf_free(&qs);
            reply_error(q, ERRCODE_INVALID_PARAMETER,
                        "invalid parameter: %s missing", q->ep->params[i].name);
            return -1;
        }
    if (dynbuf_take(&qs, &q->upstream_qs, NULL)) {
        reply_error(q, ERRCODE_UNAVAILABLE, "out of memory");
        return -1;
    }
    return 0;
}

static int
type_matches(enum scope_type t, const json_t *v)
{
    switch (t) {
    case SCOPE_T_STRING:
        return json_is_string(v);
    case SCOPE_T_INTEGER:
        return json_is_integer(v);
    case SCOPE_T_NUMBER:
        return json_is_number(v);
    case SCOPE_T_BOOL:
        return json_is_boolean(v);
    case SCOPE_T_OBJECT:
        return json_is_object(v);
    case SCOPE_T_ARRAY: {
        /* a parameter array is a list of strings (scopes/README.md) */
        size_t i;
        const json_t *e;

        if (!json_is_array(v))
            return 0;
        json_array_foreach(v, i, e) if (!json_is_string(e)) return 0;
        return 1;
    }
    }
    return 0;
}

/* POST: the body's keys (one level of nesting, "a.b") declared and typed;
 * subjects in range; the body passed upstream is re-serialised from them. */
static int
check_body(struct preq *q)
{
    const char *k, *k2;
    json_t *v, *v2, *out = json_object(), *sub;
    const struct scope_param *p;
    char name[160];
    size_t i;

    if (out == NULL) {
        reply_error(q, ERRCODE_UNAVAILABLE, "out of memory");
        return -1;
    }
    /* a POST's parameters are its body's keys: nothing else but the
     * token may come in the query */
    if (q->q->n != query_count(q->q, "access_token")) {
        json_decref(out);
        reply_error(q, ERRCODE_INVALID_PARAMETER, "invalid parameter: %s",
                    "a POST takes its parameters in the body");
        return -1;
    }
    json_object_foreach(q->body, k, v)
    {
        if (json_is_object(v) && scope_endpoint_param(q->ep, k) == NULL) {
            /* held by out at once, so a refusal below frees it too */
            sub = json_object();
            if (sub == NULL || json_object_set_new(out, k, sub) != 0) {
                json_decref(out);
                reply_error(q, ERRCODE_UNAVAILABLE, "out of memory");
                return -1;
            }
            json_object_foreach(v, k2, v2)
            {
                snprintf(name, sizeof(name), "%s.%s", k, k2);
                p = scope_endpoint_param(q->ep, name);
                if (p == NULL || !type_matches(p->type, v2))
                    goto bad;
                if (p->kind != SCOPE_P_PLAIN && !subject_ok(q, p->kind, v2))
                    goto range;
                note_subject(q, p->kind);
                json_object_set(sub, k2, v2);
            }
            continue;
        }
        snprintf(name, sizeof(name), "%s", k);
        p = scope_endpoint_param(q->ep, k);
        if (p == NULL || !type_matches(p->type, v))
            goto bad;
        if (p->kind != SCOPE_P_PLAIN && !subject_ok(q, p->kind, v))
            goto range;
        note_subject(q, p->kind);
        json_object_set(out, k, v);
    }
    /* a required key must be there, and a required list not empty: an
     * empty owner filter would list every chat of the tenant */
    for (i = 0; i < q->ep->nparams; i++) {
        const struct scope_param *rp = &q->ep->params[i];
        const char *dot = strchr(rp->name, '.');

        if (!rp->required)
            continue;
        snprintf(name, sizeof(name), "%s", rp->name);
        if (dot != NULL) {
            name[dot - rp->name] = '\0';
            v = json_object_get(json_object_get(q->body, name), dot + 1);
            snprintf(name, sizeof(name), "%s", rp->name);
        } else {
            v = json_object_get(q->body, rp->name);
        }
        if (v == NULL || (json_is_array(v) && json_array_size(v) == 0))
            goto bad;
    }
    q->upstream_body = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    if (q->upstream_body == NULL) {
        reply_error(q, ERRCODE_UNAVAILABLE, "out of memory");
        return -1;
    }
    return 0;
bad:
    json_decref(out);
    reply_error(q, ERRCODE_INVALID_PARAMETER, "invalid parameter: %s", name);
    return -1;
range:
    json_decref(out);
    reply_error(q, ERRCODE_OUT_OF_RANGE,
                "no privilege to access/modify contact/party/agent");
    return -1;
}

/*
 * The tenant's range, narrowed by the service's own departments there,
 * into q->range (borrowed from the tenant, or from q->narrowed). Returns
 * BRK_OK, BRK_ERR_INVAL when the service's departments name the corp in
 * other letter cases only, or what building the narrowed range returned
 * (BRK_ERR_NOMEM...): the request is then refused.
 */
static enum brk_err
effective_range(struct preq *q)
{
    const struct record_parties *mine = NULL;
    struct vrange *v = NULL;
    struct range_ref *ref;
    char key[200];
    enum brk_err err;

    err = record_service_parties(q->svc, q->tr.corp, &mine);
    if (err)
        return err;
    if (mine == NULL) {
        q->range = q->ten->range;
        return BRK_OK;
    }
    snprintf(key, sizeof(key), "%s %s %s", q->tr.suite, q->tr.corp, q->svc->id);
    ref = cache_get(q->p->ranges, key, brk_mono_ms());
    if (ref != NULL) {
        q->narrowed = range_ref(ref);
        q->range = ref->v;
        return BRK_OK;
    }
    err = vrange_build(q->ten->priv, q->ten->parents, q->ten->users,
                       q->ten->tags, &v);
    if (!err)
        err = vrange_narrow(v, mine->ids, mine->n);
    ref = err ? NULL : brk_calloc(1, sizeof(*ref));
    if (ref == NULL) {
        vrange_free(v);
        return err ? err : BRK_ERR_NOMEM;
    }
    ref->v = v;
    ref->refs = 1; /* ours */
    q->narrowed = range_ref(ref);
    q->range = v;
    /* the cache's own reference: a failed put has dropped it already */
    if (q->gen == q->p->gen &&
        cache_put(q->p->ranges, key, range_ref(ref), brk_mono_ms()))
        log_debug("range cache: entry not kept");
    range_unref(ref);
    return BRK_OK;
}

/*---- Member OAuth, service side ----*/

/* The fields a member's consent can release, and what each needs. */
static struct scope_node *detail_tree;

static void
node_set(struct scope_node *n, const char *name, enum scope_type t,
         const char *perm)
{
    n->name = brk_strdup(name);
    n->type = t;
    n->perm = strcmp(perm, "always") == 0  ? SCOPE_PERM_ALWAYS
              : strcmp(perm, "never") == 0 ? SCOPE_PERM_NEVER
                                           : scope_perm_id(perm);
    if (n->perm < 0)
        n->perm = SCOPE_PERM_NEVER;
}

/* Built once, in code: these paths exist whatever scopes/ declares. */
static struct scope_node *
detail_root(void)
{
    static const struct {
        const char *name, *perm;
        enum scope_type type;
    } f[] = {
        /* sorted by name, for scope_node_field */
        {"address", "contact:sensitive:address", SCOPE_T_STRING},
        {"avatar", "contact:sensitive:avatar", SCOPE_T_STRING},
        {"biz_mail", "contact:sensitive:biz_mail", SCOPE_T_STRING},
        {"corpid", "always", SCOPE_T_STRING},
        {"email", "contact:sensitive:email", SCOPE_T_STRING},
        {"errcode", "always", SCOPE_T_INTEGER},
        {"errmsg", "always", SCOPE_T_STRING},
        {"gender", "contact:sensitive:gender", SCOPE_T_STRING},
        {"mobile", "contact:sensitive:mobile", SCOPE_T_STRING},
        {"name", "never", SCOPE_T_STRING},
        {"open_userid", "contact:base:base", SCOPE_T_STRING},
        {"qr_code", "contact:sensitive:qrcode", SCOPE_T_STRING},
        {"userid", "contact:base:base", SCOPE_T_STRING},
    };
    struct scope_node *root;
    size_t i;

    if (detail_tree != NULL)
        return detail_tree;
    root = brk_calloc(1, sizeof(*root));
    if (root == NULL)
        return NULL;
    root->type = SCOPE_T_OBJECT;
    root->perm = SCOPE_PERM_ALWAYS;
    root->fields = brk_calloc(nitems(f), sizeof(*root->fields));
    if (root->fields == NULL) {
        brk_free(root);
        return NULL;
    }
    root->nfields = nitems(f);
    for (i = 0; i < nitems(f); i++)
        node_set(&root->fields[i], f[i].name, f[i].type, f[i].perm);
    detail_tree = root;
    return root;
}

static enum brk_err
oauth_key(struct preq *q, const char *what, const char *secret, char *out)
{
    char h[65], w[120];

    service_token_hash(secret, strlen(secret), h);
    snprintf(w, sizeof(w), "%s:%s", what, h);
    return keys_tenant_sub(out, KEYS_MAX, q->p->cfg->key_prefix, q->tr.corp,
                           q->tr.suite, w);
}

/* Is the member userid (len bytes) in the range this request sees? */
static int
member_in_range(const struct preq *q, const char *userid, size_t len)
{
    return q->range != NULL && len > 0 &&
           vrange_has_member(q->range, userid, len);
}

static void
reply_json_body(struct preq *q, const char *body)
{
    count_request(q, 0);
    audit(q, 0, 0, 0);
    httpd_reply(q->r, 200, "application/json; charset=utf-8", body,
                strlen(body));
    preq_free(q);
}

static void
on_code(enum brk_err err, struct redisReply *r, void *arg)
{
    struct preq *q = arg;
    char key[KEYS_MAX], ctx[KEYS_MAX + 8], *rec = NULL, *body = NULL;
    size_t len = 0;
    json_t *out = NULL;
    struct record_oauth_code c;

    if (err) {
        reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
    if (r->type != REDIS_REPLY_STRING ||
        oauth_key(q, "oauth:code", query_get(q->q, "code"), key) ||
        keys_seal_ctx(ctx, sizeof(ctx), key, "rec") ||
        keyring_open(q->tdk, ctx, r->str, r->len, &rec, &len)) {
        brk_free_secret(rec, len);
        /* unknown, used, or another tenant's */
        reply_error(q, ERRCODE_INVALID_CODE, "invalid code");
        return;
    }
    err = record_oauth_code_decode(rec, len, &c);
    brk_free_secret(rec, len);
    if (err) {
        reply_unusable(q, "OAuth code", err);
        return;
    }
    /* a member outside the range this service sees: nothing of them,
     * as for any subject (a non-member has no place in any range) */
    if (c.userid[0] != '\0' &&
        !member_in_range(q, c.userid, strlen(c.userid))) {
        brk_wipe(&c, sizeof(c));
        reply_error(q, ERRCODE_OUT_OF_RANGE,
                    "no privilege to access/modify contact/party/agent");
        return;
    }
    if (c.userid[0] != '\0') {
        out = json_pack("{s:i, s:s, s:s}", "errcode", 0, "errmsg", "ok",
                        "userid", c.userid);
        if (out != NULL && c.user_ticket[0] != '\0' &&
            (json_object_set_new(out, "user_ticket",
                                 json_string(c.user_ticket)) ||
             json_object_set_new(out, "expires_in",
                                 json_integer(c.expires_in)))) {
            json_decref(out);
            out = NULL;
        }
        if (out != NULL && c.openid[0] != '\0' &&
            json_object_set_new(out, "open_userid", json_string(c.openid))) {
            json_decref(out);
            out = NULL;
        }
    } else {
        out = json_pack("{s:i, s:s, s:s}", "errcode", 0, "errmsg", "ok",
                        "openid", c.openid);
    }
    brk_wipe(&c, sizeof(c));
    body = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    if (body == NULL) {
        reply_error(q, ERRCODE_UNAVAILABLE, "out of memory");
        return;
    }
    reply_json_body(q, body);
    brk_wipe(body, strlen(body));
    free(body);
}

static void
on_ticket(enum brk_err err, struct redisReply *r, void *arg)
{
    struct preq *q = arg;
    const char *ticket =
        json_string_value(json_object_get(q->body, "user_ticket"));
    char key[KEYS_MAX], ctx[KEYS_MAX + 8], *fields = NULL;
    size_t len = 0;
    struct scope_node *root = detail_root();

    if (err || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
    if (r->element[0]->integer == 0) {
        reply_error(q, ERRCODE_INVALID_TICKET, "invalid user_ticket");
        return;
    }
    if (r->element[0]->integer == 1) {
        reply_error(q, ERRCODE_TICKET_EXPIRED, "user_ticket expired");
        return;
    }
    if (r->elements != 3 || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[2]->type != REDIS_REPLY_STRING) {
        reply_unusable(q, "user_ticket", BRK_ERR_INVAL);
        return;
    }
    /* the member must be in the range this service sees, like any
     * subject */
    if (!member_in_range(q, r->element[2]->str, r->element[2]->len)) {
        reply_error(q, ERRCODE_OUT_OF_RANGE,
                    "no privilege to access/modify contact/party/agent");
        return;
    }
    if (root == NULL || oauth_key(q, "oauth:detail", ticket, key) ||
        keys_seal_ctx(ctx, sizeof(ctx), key, "fields") ||
        keyring_open(q->tdk, ctx, r->element[1]->str, r->element[1]->len,
                     &fields, &len)) {
        reply_error(q, ERRCODE_INVALID_TICKET, "invalid user_ticket");
        return;
    }
    /* filtered like any response: sensitive fields need the service's
     * member.sensitive and the tenant's contact:sensitive:* grant */
    if (filter_new(root, &q->grant, NULL, NULL, NULL, &q->filter) ||
        filter_feed(q->filter, fields, len) || filter_finish(q->filter)) {
        brk_free_secret(fields, len);
        reply_error(q, ERRCODE_BAD_GATEWAY, "stored details unusable");
        return;
    }
    brk_free_secret(fields, len);
    reply_filtered(q);
}

static void
on_oauth_tdk(enum brk_err err, const unsigned char *dk, void *arg)
{
    struct preq *q = arg;
    char k1[KEYS_MAX], k2[KEYS_MAX], now[24];
    const char *argv[6];
    const char *code, *ticket;

    if (err) {
        reply_error(q, ERRCODE_NOT_AUTHORIZED,
                    "authorization relation invalid");
        return;
    }
    memcpy(q->tdk, dk, KEYRING_KEY_LEN);
    if (q->oauth == 1) {
        code = query_get(q->q, "code");
        if (oauth_key(q, "oauth:code", code, k1)) {
            reply_error(q, ERRCODE_INVALID_CODE, "invalid code");
            return;
        }
        argv[0] = "EVAL";
        argv[1] = scripts_text(SCRIPT_OAUTH_CODE_TAKE);
        argv[2] = "1";
        argv[3] = k1;
        if (store_cmd_argv(q->p->st, on_code, q, 4, argv, NULL))
            reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
    ticket = json_string_value(json_object_get(q->body, "user_ticket"));
    if (oauth_key(q, "oauth:ticket", ticket, k1) ||
        oauth_key(q, "oauth:detail", ticket, k2)) {
        reply_error(q, ERRCODE_INVALID_TICKET, "invalid user_ticket");
        return;
    }
    snprintf(now, sizeof(now), "%lld", brk_wall_ms() / 1000);
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_MEMBER_TICKET_READ);
    argv[2] = "2";
    argv[3] = k1;
    argv[4] = k2;
    argv[5] = now;
    if (store_cmd_argv(q->p->st, on_ticket, q, 6, argv, NULL))
        reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
}

/* getuserinfo / getuserdetail: codes and tickets minted by the broker at
 * the member's login, bound to the tenant (any of its services). */
static void
oauth_service(struct preq *q)
{
    char key[KEYS_MAX], ctx[KEYS_MAX];
    const char *v;

    if (q->oauth == 1) {
        v = query_get(q->q, "code");
        if (query_count(q->q, "code") != 1 || q->q->n != 2 ||
            strlen(v) != SERVICE_TOKEN_LEN) {
            reply_error(q,
                        v && query_count(q->q, "code") == 1 && q->q->n == 2
                            ? ERRCODE_INVALID_CODE
                            : ERRCODE_INVALID_PARAMETER,
                        "invalid code");
            return;
        }
    } else {
        v = json_string_value(json_object_get(q->body, "user_ticket"));
        if (v == NULL || json_object_size(q->body) != 1 || q->q->n != 1) {
            reply_error(q, ERRCODE_INVALID_PARAMETER,
                        "invalid parameter: user_ticket");
            return;
        }
        if (strlen(v) != SERVICE_TOKEN_LEN) {
            reply_error(q, ERRCODE_INVALID_TICKET, "invalid user_ticket");
            return;
        }
    }
    if (keys_tenant_sub(key, sizeof(key), q->p->cfg->key_prefix, q->tr.corp,
                        q->tr.suite, "dk")) {
        reply_error(q, ERRCODE_UNAVAILABLE, "key names too long");
        return;
    }
    snprintf(ctx, sizeof(ctx), "tenant:%s:%s", q->tr.suite, q->tr.corp);
    if (datakey_load(q->p->st, q->p->kr, key, ctx, 0, on_oauth_tdk, q))
        reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
}

static void
on_data_tenant(struct preq *q)
{
    enum brk_err err;

    switch (decide(q, q->tr.gen, q->oauth ? SCOPE_PERM_ALWAYS : q->ep->scope)) {
    case GRANT_ALLOWED:
        break;
    case GRANT_TENANT_LACKS:
    case GRANT_SERVICE_LACKS:
    case GRANT_BOTH_LACK:
        reply_error(q, grant_errcode(q->why),
                    "api forbidden: the grant lacks %s",
                    scope_perm_name(q->ep->scope));
        return;
    default:
        reply_error(q, grant_errcode(q->why), "authorization relation invalid");
        return;
    }
    err = effective_range(q);
    if (err) {
        reply_unusable(q, "service range", err);
        return;
    }
    if (q->oauth) {
        oauth_service(q);
        return;
    }
    if (q->post ? check_body(q) : check_query(q))
        return;
    start_upstream(q);
}

static void
on_data_service(struct preq *q)
{
    struct grant_ask a = {q->svc, q->tr.gen, NULL, NULL, NULL, 0};
    struct grant_verdict v;

    grant_decide(&a, &v);
    if (v.why != GRANT_ALLOWED) {
        record_service_unref(q->svc);
        q->svc = NULL;
        reply_error(q, v.code, "invalid access_token");
        return;
    }
    load_tenant(q, on_data_tenant);
}

static void
have_token(struct preq *q)
{
    if (q->tr.exp <= brk_wall_ms() / 1000) {
        reply_error(q, ERRCODE_TOKEN_EXPIRED, "access_token expired");
        return;
    }
    load_service(q, q->tr.svc, on_data_service);
}

static void
on_btoken(enum brk_err err, struct redisReply *r, void *arg)
{
    struct preq *q = arg;
    struct record_token *t;

    if (err) {
        reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
    err = record_token_decode(r, &q->tr);
    if (err == BRK_ERR_NOTFOUND) {
        reply_error(q, ERRCODE_INVALID_TOKEN, "invalid access_token");
        return;
    }
    if (err) {
        reply_unusable(q, "token", err);
        return;
    }
    t = q->gen == q->p->gen ? brk_malloc(sizeof(*t)) : NULL;
    if (t != NULL) {
        *t = q->tr;
        if (cache_put(q->p->tokens, q->token_hash, t, brk_mono_ms()))
            log_debug("token cache full");
    }
    have_token(q);
}

static void
data_path(struct preq *q)
{
    const char *tok;
    struct record_token *t;
    char key[KEYS_MAX];
    const char *argv[2];

    /* an empty token is none, as at WeCom */
    if (query_count(q->q, "access_token") == 0 ||
        query_get(q->q, "access_token")[0] == '\0') {
        reply_error(q, ERRCODE_TOKEN_MISSING, "access_token missing");
        return;
    }
    if (query_count(q->q, "access_token") > 1) {
        reply_error(q, ERRCODE_INVALID_PARAMETER,
                    "invalid parameter: access_token repeated");
        return;
    }
    tok = query_get(q->q, "access_token");
    if (strlen(tok) != SERVICE_TOKEN_LEN) {
        reply_error(q, ERRCODE_INVALID_TOKEN, "invalid access_token");
        return;
    }
    service_token_hash(tok, strlen(tok), q->token_hash);
    t = cache_get(q->p->tokens, q->token_hash, brk_mono_ms());
    if (t != NULL) {
        q->tr = *t;
        have_token(q);
        return;
    }
    if (keys_btoken(key, sizeof(key), q->p->cfg->key_prefix, q->token_hash)) {
        reply_error(q, ERRCODE_UNAVAILABLE, "key names too long");
        return;
    }
    argv[0] = "HGETALL";
    argv[1] = key;
    if (store_cmd_argv(q->p->st, on_btoken, q, 2, argv, NULL))
        reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
}

void
proxy_handle(struct httpd_req *r, void *arg)
{
    struct proxy *p = arg;
    struct preq *q;
    const char *path = httpd_path(r), *method = httpd_method(r);
    json_error_t jerr;
    size_t blen;

    r->route = "api";
    q = brk_calloc(1, sizeof(*q));
    if (q == NULL) {
        httpd_reply_text(r, 503, "{\"errcode\":-1,\"errmsg\":\"busy\"}");
        return;
    }
    q->p = p;
    q->gen = p->gen;
    q->r = r;
    q->scopes = p->scopes;
    p->inflight++;
    snprintf(q->path, sizeof(q->path), "%s", path);
    if (strlen(path) >= sizeof(q->path) || strncmp(path, "/cgi-bin/", 9)) {
        reply_error(q, ERRCODE_API_FORBIDDEN,
                    "api forbidden: not declared in scopes");
        return;
    }
    if (query_parse(httpd_raw_query(r), MAX_PARAMS, &q->q) != BRK_OK) {
        reply_error(q, ERRCODE_INVALID_PARAMETER,
                    "invalid parameter: malformed query");
        return;
    }
    if (strcmp(q->path, "/cgi-bin/gettoken") == 0) {
        r->route = "gettoken";
        if (strcmp(method, "GET") != 0) {
            reply_error(q, ERRCODE_INVALID_PARAMETER,
                        "invalid parameter: use GET");
            return;
        }
        gettoken(q);
        return;
    }
    q->post = strcmp(method, "POST") == 0;
    if (!q->post && strcmp(method, "GET") != 0) {
        reply_error(q, ERRCODE_API_FORBIDDEN, "api forbidden: read APIs only");
        return;
    }
    if (q->scopes == NULL) {
        reply_error(q, ERRCODE_UNAVAILABLE, "scope maps not loaded");
        return;
    }
    if (strcmp(q->path, "/cgi-bin/auth/getuserinfo") == 0 ||
        strcmp(q->path, "/cgi-bin/auth/getuserdetail") == 0) {
        /* part of the service API whatever scopes/ declares */
        q->oauth = strcmp(q->path, "/cgi-bin/auth/getuserinfo") == 0 ? 1 : 2;
        r->route = q->oauth == 1 ? "getuserinfo" : "getuserdetail";
        if (q->post != (q->oauth == 2)) {
            reply_error(q, ERRCODE_INVALID_PARAMETER,
                        "invalid parameter: wrong method");
            return;
        }
        if (q->post) {
            blen = httpd_body_len(r);
            q->body = blen && blen < 4096
                          ? json_loadb(httpd_body(r), blen,
                                       JSON_REJECT_DUPLICATES, &jerr)
                          : NULL;
            if (!json_is_object(q->body)) {
                reply_error(q, ERRCODE_INVALID_PARAMETER,
                            "invalid parameter: body");
                return;
            }
        }
        data_path(q);
        return;
    }
    /* undeclared paths and write APIs are refused before anything else */
    q->ep = scope_map_find(q->scopes, q->path);
    if (q->ep == NULL || strcmp(q->ep->method, q->post ? "POST" : "GET") != 0) {
        q->ep = NULL;
        reply_error(q, ERRCODE_API_FORBIDDEN,
                    "api forbidden: not declared in scopes");
        return;
    }
    if (q->post) {
        blen = httpd_body_len(r);
        q->body = blen ? json_loadb(httpd_body(r), blen, JSON_REJECT_DUPLICATES,
                                    &jerr)
                       : json_object();
        if (!json_is_object(q->body)) {
            reply_error(q, ERRCODE_INVALID_PARAMETER,
                        "invalid parameter: body is not a "
                        "JSON object");
            return;
        }
    }
    data_path(q);
}

/*---- Notices and lifetime ----*/

void
proxy_notice(struct proxy *p, const char *msg, size_t len)
{
    char buf[200];

    p->gen++;
    if (len >= sizeof(buf))
        return;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    if (strncmp(buf, "svc ", 4) == 0) {
        cache_remove(p->services, buf + 4);
        /* tokens name their service inside the value: start over */
        cache_clear(p->tokens);
        cache_clear(p->ranges);
        return;
    }
    cache_remove(p->tenants, buf);
    cache_remove_prefix(p->ranges, buf);
}

void
proxy_drop_caches(struct proxy *p)
{
    p->gen++;
    cache_clear(p->tokens);
    cache_clear(p->services);
    cache_clear(p->tenants);
    cache_clear(p->ranges);
}

/* Use b (borrowed, must outlive the proxy) for every WeCom call; until
 * set, data calls are refused (-1, 503). Cannot fail. */
void
proxy_set_budget(struct proxy *p, struct budget *b)
{
    p->budget = b;
}

/* Write the audit trail through a (borrowed). Cannot fail. */
void
proxy_set_audit(struct proxy *p, struct audit *a)
{
    p->audit = a;
}

void
proxy_set_scopes(struct proxy *p, const struct scope_map *m)
{
    p->scopes = m;
}

unsigned
proxy_inflight(const struct proxy *p)
{
    return p->inflight;
}

static void
tok_free(void *v)
{
    brk_free(v);
}

enum brk_err
proxy_new(struct event_base *base, const struct config *cfg,
          const struct keyring *kr, struct store *st, struct suites *suites,
          struct tokens *tok, struct wecom_api *api, struct proxy **out)
{
    struct proxy *p = brk_calloc(1, sizeof(*p));
    long long age = cfg->cache_max_age * 1000LL;
    enum brk_err err;

    if (p == NULL)
        return BRK_ERR_NOMEM;
    p->base = base;
    p->cfg = cfg;
    p->kr = kr;
    p->st = st;
    p->suites = suites;
    p->tok = tok;
    p->api = api;
    err = cache_new(CACHE_ENTRIES, age, tok_free, &p->tokens);
    if (!err)
        err = cache_new(10000, age, svc_unref, &p->services);
    if (!err)
        err = cache_new(10000, age, tenant_unref, &p->tenants);
    if (!err)
        err = cache_new(10000, age, range_unref, &p->ranges);
    if (err) {
        proxy_free(p);
        return err;
    }
    *out = p;
    return BRK_OK;
}

/*
 * Use kr (borrowed) from now on, for the configuration reload. Work
 * already started may still hold the previous keyring, so the caller
 * keeps that one alive a while longer. Cannot fail.
 */
void
proxy_set_keyring(struct proxy *p, const struct keyring *kr)
{
    p->kr = kr;
}

void
proxy_free(struct proxy *p)
{
    size_t i;

    if (p == NULL)
        return;
    if (detail_tree != NULL) {
        for (i = 0; i < detail_tree->nfields; i++)
            brk_free(detail_tree->fields[i].name);
        brk_free(detail_tree->fields);
        brk_free(detail_tree);
        detail_tree = NULL;
    }
    cache_free(p->tokens);
    cache_free(p->services);
    cache_free(p->tenants);
    cache_free(p->ranges);
    brk_free(p);
}
