/*
 * gettoken: a service's corpid and secret exchanged for a broker token
 * bound to one tenant (see proxy_int.h).
 *
 * The chain, in order:
 *   proxy_gettoken -> proxy_load_service -> on_gettoken_service
 *     -> try_suite -> proxy_load_tenant -> on_gettoken_tenant
 *        (not a tenant there: try_suite with the next suite)
 *     -> proxy_decide -> issue_token -> EVAL token mint (reuse only)
 *        (none to reuse: HSET + EXPIREAT of the token's record -> SADD to
 *        the service's index -> EVAL token mint (write), one slot each)
 *     -> on_gettoken -> the reply
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/rand.h>

#include "codec.h"
#include "config.h"
#include "grant.h"
#include "httpd.h"
#include "keyring.h"
#include "keys.h"
#include "log.h"
#include "proxy_int.h"
#include "query.h"
#include "record.h"
#include "scripts.h"
#include "service.h"
#include "store.h"

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
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
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
        proxy_reply_unusable(q, "current token", BRK_ERR_INVAL);
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
    proxy_count_request(q, 0);
    proxy_audit(q, 0, 0, 0);
    httpd_reply(q->r, 200, "application/json; charset=utf-8", body,
                strlen(body));
    brk_wipe(body, sizeof(body));
    proxy_preq_free(q);
}

/* A mint in steps (see the script): what each step needs. Owned by the
 * chain; freed before the reply. */
struct mint {
    struct preq *q;
    char cur[KEYS_MAX], toks[KEYS_MAX], ttoks[KEYS_MAX], btok[KEYS_MAX];
    char now[24], ttl[24], reuse[24], gen[24], exp[24], keep[24];
    char nonce[33], h[65];
};

static enum brk_err
mint_eval(struct mint *m, int write, store_reply_cb *cb)
{
    const char *argv[12];

    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_SERVICE_TOKEN_MINT);
    argv[2] = "2";
    argv[3] = m->cur;
    argv[4] = m->ttoks;
    argv[5] = m->now;
    argv[6] = m->nonce;
    argv[7] = m->ttl;
    argv[8] = m->reuse;
    argv[9] = m->gen;
    argv[10] = m->h;
    argv[11] = write ? "1" : "0";
    return store_cmd_argv(m->q->p->st, cb, m, 12, argv, NULL);
}

/* The last step: the reply, whatever the mint said. */
static void
on_minted(enum brk_err err, struct redisReply *r, void *arg)
{
    struct mint *m = arg;
    struct preq *q = m->q;

    brk_free(m);
    on_gettoken(err, r, q);
}

static void
mint_fail(struct mint *m, const char *why)
{
    struct preq *q = m->q;

    brk_free(m);
    proxy_reply_error(q, ERRCODE_UNAVAILABLE, "%s", why);
}

static void
on_indexed(enum brk_err err, struct redisReply *r, void *arg)
{
    struct mint *m = arg;

    (void)r;
    if (err || mint_eval(m, 1, on_minted) != BRK_OK)
        mint_fail(m, "store unavailable");
}

static void
on_record_expiry(enum brk_err err, struct redisReply *r, void *arg)
{
    struct mint *m = arg;
    const char *argv[3] = {"SADD", m->toks, m->h};

    /* 1: the record is there (its HSET went first on this connection) */
    if (err || r->type != REDIS_REPLY_INTEGER || r->integer != 1 ||
        store_cmd_argv(m->q->p->st, on_indexed, m, 3, argv, NULL) != BRK_OK)
        mint_fail(m, "store unavailable");
}

static void
on_record_set(enum brk_err err, struct redisReply *r, void *arg)
{
    (void)err;
    (void)r;
    (void)arg; /* judged by the EXPIREAT after it */
}

/* No current token: the record of the one the fresh nonce gives, in its
 * own slot, before the nonce can become current. */
static void
on_mint_checked(enum brk_err err, struct redisReply *r, void *arg)
{
    struct mint *m = arg;
    struct preq *q = m->q;
    const char *hset[12], *expire[3] = {"EXPIREAT", m->btok, m->keep};

    if (err || r->type != REDIS_REPLY_ARRAY || r->elements != 0) {
        brk_free(m);
        on_gettoken(err, r, q);
        return;
    }
    hset[0] = "HSET";
    hset[1] = m->btok;
    hset[2] = "svc";
    hset[3] = q->svc->id;
    hset[4] = "gen";
    hset[5] = m->gen;
    hset[6] = "suite";
    hset[7] = q->tr.suite;
    hset[8] = "corp";
    hset[9] = q->tr.corp;
    hset[10] = "exp";
    hset[11] = m->exp;
    if (store_cmd_argv(q->p->st, on_record_set, m, 12, hset, NULL) != BRK_OK ||
        store_cmd_argv(q->p->st, on_record_expiry, m, 3, expire, NULL) !=
            BRK_OK)
        mint_fail(m, "store unavailable");
}

static void
issue_token(struct preq *q)
{
    char what[200], token[SERVICE_TOKEN_LEN + 1];
    unsigned char rnd[16];
    const struct config *cfg = q->p->cfg;
    struct mint *m;
    long long now;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "no randomness");
        return;
    }
    m = brk_calloc(1, sizeof(*m));
    if (m == NULL) {
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "out of memory");
        return;
    }
    m->q = q;
    codec_hex_encode(rnd, sizeof(rnd), m->nonce);
    now = brk_wall_ms() / 1000;
    snprintf(m->now, sizeof(m->now), "%lld", now);
    snprintf(m->ttl, sizeof(m->ttl), "%d", PROXY_TOKEN_TTL);
    snprintf(m->reuse, sizeof(m->reuse), "%d", PROXY_TOKEN_REUSE_S);
    snprintf(m->gen, sizeof(m->gen), "%ld", q->svc->gen);
    /* the record outlives exp by another TTL, so that an expired token is
     * told 42001, as WeCom does, rather than 40014 */
    snprintf(m->exp, sizeof(m->exp), "%lld", now + PROXY_TOKEN_TTL);
    snprintf(m->keep, sizeof(m->keep), "%lld", now + 2LL * PROXY_TOKEN_TTL);
    /* the hash of the token a fresh nonce would give, for the index */
    derive_token(q, m->nonce, m->now, token);
    service_token_hash(token, strlen(token), m->h);
    brk_wipe(token, sizeof(token));
    /* the current token and the token index live under the tenant too,
     * so a purge removes them with everything else of the tenant */
    snprintf(what, sizeof(what), "svccur:%s", q->svc->id);
    if (keys_tenant_sub(m->cur, sizeof(m->cur), cfg->key_prefix, q->tr.corp,
                        q->tr.suite, what) ||
        keys_tenant_sub(m->ttoks, sizeof(m->ttoks), cfg->key_prefix, q->tr.corp,
                        q->tr.suite, "btoks") ||
        keys_service(m->toks, sizeof(m->toks), cfg->key_prefix, q->svc->id,
                     "toks") ||
        keys_btoken(m->btok, sizeof(m->btok), cfg->key_prefix, m->h)) {
        mint_fail(m, "key names too long");
        return;
    }
    if (mint_eval(m, 0, on_mint_checked) != BRK_OK)
        mint_fail(m, "store unavailable");
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
    if (proxy_decide(q, -1, SCOPE_PERM_ALWAYS)) {
        proxy_reply_error(
            q, grant_errcode(q->why),
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
        proxy_load_tenant(q, on_gettoken_tenant);
        return;
    }
    proxy_reply_error(q, ERRCODE_INVALID_CORPID,
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
        proxy_reply_error(q, ERRCODE_INVALID_SECRET,
                          "invalid credential: corpsecret");
        return;
    }
    q->suite_i = 0;
    try_suite(q);
}

void
proxy_gettoken(struct preq *q)
{
    const char *corp, *secret;
    char id[SERVICE_ID_LEN + 1];

    if (query_count(q->q, "corpid") != 1 ||
        query_count(q->q, "corpsecret") != 1 || q->q->n != 2) {
        proxy_reply_error(q, ERRCODE_INVALID_PARAMETER,
                          "invalid parameter: gettoken takes corpid and "
                          "corpsecret once each");
        return;
    }
    corp = query_get(q->q, "corpid");
    secret = query_get(q->q, "corpsecret");
    if (!keys_id_ok(corp)) {
        proxy_reply_error(q, ERRCODE_INVALID_CORPID, "invalid corpid");
        return;
    }
    if (service_secret_split(secret, id, &q->secret, &q->secret_len)) {
        proxy_reply_error(q, ERRCODE_INVALID_SECRET,
                          "invalid credential: corpsecret");
        return;
    }
    snprintf(q->tr.corp, sizeof(q->tr.corp), "%s", corp);
    proxy_load_service(q, id, on_gettoken_service);
}
