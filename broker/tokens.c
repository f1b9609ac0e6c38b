/*
 * Token manager (see tokens.h). Each token has one entry; a request joins
 * the entry's waiter list, and at most one refresh chain runs per entry:
 *
 *   read Redis -> valid? done
 *              -> SET lock NX -> won:  fetch from WeCom, write if the lock
 *                                      is still ours (fencing), done
 *                             -> lost: poll Redis until the winner writes
 *
 * A cached token serves requests until its hard margin (the last eighth
 * of its life, at most TOKENS_REFRESH_MARGIN_S) or cache_max_age. Ahead of
 * either, the request that finds it due starts the same chain in the
 * background and is answered from the cache, as everyone is while the
 * chain runs: past the last quarter of its life the chain wants a newer
 * token than the one it has (Redis's, if another instance renewed it,
 * else WeCom's under the lock); past 3/4 of cache_max_age it reads Redis
 * again. So a hot token is replaced before anyone has to wait for it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/rand.h>

#include "codec.h"
#include "config.h"
#include "datakey.h"
#include "errcodes.h"
#include "keyring.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "scripts.h"
#include "store.h"
#include "suites.h"
#include "tokens.h"
#include "wecom_api.h"

#define POLL_MS     100
#define WAIT_MAX_MS (TOKENS_LOCK_MS + 5000)
#define TOKEN_MAX   2048
/* WeCom's token life (expires_in) until a fetch says otherwise */
#define LIFE_MS (7200 * 1000LL)
/* after a chain in the background, the next not before this (at most) */
#define AHEAD_PAUSE_MS 30000

enum tok_kind { TOK_SUITE, TOK_CORP };

/* What a chain in the background is for (0: a request waits for it). */
enum tok_ahead { AHEAD_NONE, AHEAD_REREAD, AHEAD_RENEW };

struct waiter {
    tokens_cb *cb;
    void *arg;
    struct waiter *next;
};

struct tok_entry {
    struct tokens *t;
    enum tok_kind kind;
    char suite[80];
    char corp[80];
    char key[KEYS_MAX]; /* token hash: tok (sealed), exp (ms), fp */
    char lock[KEYS_MAX];
    char *token;         /* cached plaintext */
    long long exp_ms;    /* wall-clock expiry */
    long long cached_ms; /* monotonic time it was cached */
    struct waiter *waiters;
    int busy;                   /* a refresh chain is running */
    enum tok_ahead ahead;       /* the running chain's, in the background */
    long long ahead_not_before; /* monotonic */
    struct event *serve;        /* answers waiters from the cache */
    int have_lock;
    int suite_retried;
    long long wait_until;
    char fence[33];
    unsigned char dk[KEYRING_KEY_LEN]; /* tenant data key (corp) */
    int dk_ok;
    char *suite_token; /* corp chain: the suite token used */
    struct event *timer;
    struct tok_entry *next;
};

struct tokens {
    struct event_base *base;
    const struct config *cfg;
    const struct keyring *kr;
    struct store *st;
    struct suites *suites;
    struct wecom_api *api;
    struct tok_entry *entries;
    long long life_ms[2]; /* per kind: the last expires_in WeCom gave */
    int freeing;
};

static void read_stored(struct tok_entry *e);
static void fetch(struct tok_entry *e);

static const char *
kind_name(const struct tok_entry *e)
{
    return e->kind == TOK_SUITE ? "suite" : "corp";
}

static void
count_refresh(const struct tok_entry *e, const char *result)
{
    char labels[96];

    metrics_inc(METRICS_TOKEN_REFRESHES,
                metrics_labels(labels, sizeof(labels), "kind", kind_name(e),
                               "result", result, NULL));
}

/* Fingerprint of a token: lets Redis compare tokens it holds sealed. */
static void
fingerprint(const struct tokens *t, const char *token, char out[65])
{
    const char *parts[2] = {"token-fp", token};

    keyring_index_hmac_parts(t->kr, parts, 2, out);
}

static void
cache_clear(struct tok_entry *e)
{
    brk_free_secret_str(e->token);
    e->token = NULL;
    e->exp_ms = 0;
}

/* A token with this little left (ms) is not used: the last eighth of its
 * life, at most TOKENS_REFRESH_MARGIN_S. */
static long long
hard_margin(const struct tok_entry *e)
{
    long long life = e->t->life_ms[e->kind];

    return life / 8 < TOKENS_REFRESH_MARGIN_S * 1000LL
               ? life / 8
               : TOKENS_REFRESH_MARGIN_S * 1000LL;
}

/* The cached token may be handed out: not within its hard margin, never
 * older than cache_max_age. */
static int
cache_fresh(const struct tok_entry *e)
{
    long long age = brk_mono_ms() - e->cached_ms;

    return e->token != NULL && e->exp_ms - brk_wall_ms() > hard_margin(e) &&
           age <= (long long)e->t->cfg->cache_max_age * 1000;
}

/* Whether a fresh cached token is due for a chain in the background, and
 * what for: the last quarter of its life, or 3/4 of cache_max_age. */
static enum tok_ahead
cache_due(const struct tok_entry *e)
{
    long long now = brk_mono_ms();

    if (e->busy || now < e->ahead_not_before)
        return AHEAD_NONE;
    if (e->exp_ms - brk_wall_ms() <= e->t->life_ms[e->kind] / 4)
        return AHEAD_RENEW;
    if ((now - e->cached_ms) * 4 > (long long)e->t->cfg->cache_max_age * 3000)
        return AHEAD_REREAD;
    return AHEAD_NONE;
}

/*---- Completion ----*/

static void answer(struct tok_entry *e, enum brk_err err, long errcode);

/* The chain is over: its state goes, every waiter gets its result. */
static void
deliver(struct tok_entry *e, enum brk_err err, long errcode)
{
    e->busy = 0;
    if (e->ahead != AHEAD_NONE &&
        (err != BRK_OK ||
         (e->ahead == AHEAD_RENEW &&
          e->exp_ms - brk_wall_ms() <= e->t->life_ms[e->kind] / 4))) {
        long long pause = e->t->life_ms[e->kind] / 16;

        /* a chain in the background that failed, or a renewal WeCom
         * answered with the token it had: the requests that follow do
         * not start one each */
        e->ahead_not_before =
            brk_mono_ms() + (pause < AHEAD_PAUSE_MS ? pause : AHEAD_PAUSE_MS);
    }
    e->ahead = AHEAD_NONE;
    e->suite_retried = 0;
    brk_free_secret_str(e->suite_token);
    e->suite_token = NULL;
    brk_wipe(e->dk, sizeof(e->dk));
    e->dk_ok = 0;
    answer(e, err, errcode);
}

/* Answer every waiter: the cached token on BRK_OK. */
static void
answer(struct tok_entry *e, enum brk_err err, long errcode)
{
    struct waiter *w = e->waiters, *next;
    char *tok = NULL;

    e->waiters = NULL;
    /* a waiter may ask again from its callback: hand out a private copy */
    if (err == BRK_OK && e->token != NULL) {
        tok = brk_strdup(e->token);
        if (tok == NULL)
            err = BRK_ERR_NOMEM;
    }
    for (; w != NULL; w = next) {
        next = w->next;
        w->cb(err, err ? NULL : tok, errcode, w->arg);
        brk_free(w);
    }
    brk_free_secret_str(tok);
}

static void
on_released(enum brk_err err, struct redisReply *reply, void *arg)
{
    (void)err;
    (void)reply;
    (void)arg;
}

static void release_lock(struct tok_entry *e);

static void
fail(struct tok_entry *e, enum brk_err err, long errcode, const char *why)
{

    log_warn("%s token for %s%s%s not available: %s (%s%s%ld)", kind_name(e),
             e->suite, e->kind == TOK_CORP ? "/" : "", e->corp, why,
             brk_strerror(err), errcode ? ", errcode " : "", errcode);
    count_refresh(e, "error");
    release_lock(e);
    deliver(e, err, errcode);
}

static void
release_lock(struct tok_entry *e)
{
    const char *argv[5];

    if (!e->have_lock)
        return;
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_TOKEN_LOCK_RELEASE);
    argv[2] = "1";
    argv[3] = e->lock;
    argv[4] = e->fence;
    e->have_lock = 0;
    /* best effort: the lock also expires by itself */
    if (store_cmd_argv(e->t->st, on_released, NULL, 5, argv, NULL) != BRK_OK)
        log_debug("token lock not released; it expires by itself");
}

static void
succeed(struct tok_entry *e, const char *token, long long exp_ms)
{
    char *copy = brk_strdup(token);

    if (copy == NULL) {
        fail(e, BRK_ERR_NOMEM, 0, "out of memory");
        return;
    }
    cache_clear(e);
    e->token = copy;
    e->exp_ms = exp_ms;
    e->cached_ms = brk_mono_ms();
    release_lock(e);
    deliver(e, BRK_OK, 0);
}

/* The chain's timer: polling Redis while another instance refreshes. */
static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct tok_entry *e = arg;

    (void)fd;
    (void)what;
    if (e->busy)
        read_stored(e);
}

/* Start the chain: for the waiters (AHEAD_NONE) or in the background. */
static void
chain_start(struct tok_entry *e, enum tok_ahead ahead)
{
    e->busy = 1;
    e->ahead = ahead;
    e->wait_until = brk_mono_ms() + WAIT_MAX_MS;
    read_stored(e);
}

/* Requests are answered from the event loop: from the cache while it may
 * serve (a chain started behind it when it is due), else by the chain
 * they wait for. */
static void
on_serve(evutil_socket_t fd, short what, void *arg)
{
    struct tok_entry *e = arg;
    enum tok_ahead due;

    (void)fd;
    (void)what;
    if (cache_fresh(e)) {
        due = cache_due(e);
        answer(e, BRK_OK, 0);
        if (due != AHEAD_NONE && !e->busy)
            chain_start(e, due);
    } else if (!e->busy && e->waiters != NULL) {
        chain_start(e, AHEAD_NONE);
    }
}

static void
arm(struct tok_entry *e, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    evtimer_add(e->timer, &tv);
}

/*---- Reading what is stored ----*/

static int
open_token(struct tok_entry *e, const unsigned char *dk, const char *sealed,
           size_t len, char **out)
{
    size_t ptlen;

    return keyring_open(dk, e->key, sealed, len, out, &ptlen) == BRK_OK ? 0
                                                                        : -1;
}

static void try_lock(struct tok_entry *e);

/* Nothing usable is stored: fetch if we hold the lock, else try for it. */
static void
on_miss(struct tok_entry *e)
{
    if (e->have_lock)
        fetch(e);
    else
        try_lock(e);
}

static void
use_stored(struct tok_entry *e, const char *sealed, size_t len, long long exp)
{
    struct suite_rt *su;
    char *tok = NULL;
    const unsigned char *dk = NULL;

    if (e->kind == TOK_SUITE) {
        su = suites_find(e->t->suites, e->suite);
        if (su != NULL && su->dk_loaded)
            dk = su->dk;
    } else if (e->dk_ok) {
        dk = e->dk;
    }
    if (dk == NULL || open_token(e, dk, sealed, len, &tok) != 0) {
        /* unreadable: treat as absent and fetch a new one */
        log_warn("%s token for %s: stored value does not open; refreshing",
                 kind_name(e), e->suite);
        on_miss(e);
        return;
    }
    succeed(e, tok, exp);
    brk_free_secret_str(tok);
}

struct stored_ctx {
    struct tok_entry *e;
    char *sealed;
    size_t len;
    long long exp;
};

static void
on_tenant_dk_for_read(enum brk_err err, const unsigned char *dk, void *arg)
{
    struct stored_ctx *c = arg;
    struct tok_entry *e = c->e;

    if (err) {
        fail(e, err, 0, "tenant data key not available");
    } else {
        memcpy(e->dk, dk, KEYRING_KEY_LEN);
        e->dk_ok = 1;
        use_stored(e, c->sealed, c->len, c->exp);
    }
    brk_free(c->sealed);
    brk_free(c);
}

static enum brk_err
load_tenant_dk(struct tok_entry *e, datakey_cb *cb, void *arg)
{
    char key[KEYS_MAX], ctx[KEYS_MAX];
    enum brk_err err;

    err = keys_tenant_sub(key, sizeof(key), e->t->cfg->key_prefix, e->corp,
                          e->suite, "dk");
    if (err)
        return err;
    snprintf(ctx, sizeof(ctx), "tenant:%s:%s", e->suite, e->corp);
    return datakey_load(e->t->st, e->t->kr, key, ctx, 0, cb, arg);
}

static void
on_stored(enum brk_err err, struct redisReply *r, void *arg)
{
    struct tok_entry *e = arg;
    struct stored_ctx *c;
    long long exp;

    if (err || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        fail(e, err ? err : BRK_ERR_STORE, 0, "cannot read the token");
        return;
    }
    if (r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_STRING) {
        on_miss(e);
        return;
    }
    exp = strtoll(r->element[1]->str, NULL, 10);
    /* a renewal wants a newer token than the one it has */
    if (exp - brk_wall_ms() <= hard_margin(e) ||
        (e->ahead == AHEAD_RENEW && exp <= e->exp_ms)) {
        on_miss(e);
        return;
    }
    if (e->kind == TOK_SUITE || e->dk_ok) {
        use_stored(e, r->element[0]->str, r->element[0]->len, exp);
        return;
    }
    c = brk_calloc(1, sizeof(*c));
    if (c != NULL)
        c->sealed = brk_strndup(r->element[0]->str, r->element[0]->len);
    if (c == NULL || c->sealed == NULL) {
        brk_free(c);
        fail(e, BRK_ERR_NOMEM, 0, "out of memory");
        return;
    }
    c->e = e;
    c->len = r->element[0]->len;
    c->exp = exp;
    err = load_tenant_dk(e, on_tenant_dk_for_read, c);
    if (err) {
        brk_free(c->sealed);
        brk_free(c);
        fail(e, err, 0, "tenant data key not available");
    }
}

static void
read_stored(struct tok_entry *e)
{
    const char *argv[] = {"HMGET", e->key, "tok", "exp"};
    enum brk_err err;

    if (brk_mono_ms() > e->wait_until) {
        fail(e, BRK_ERR_TIMEOUT, 0, "gave up waiting for the refresh");
        return;
    }
    err = store_cmd_argv(e->t->st, on_stored, e, 4, argv, NULL);
    if (err)
        fail(e, err, 0, "store unavailable");
}

/*---- The lock ----*/

static void
on_lock(enum brk_err err, struct redisReply *r, void *arg)
{
    struct tok_entry *e = arg;

    if (err) {
        fail(e, err, 0, "cannot take the refresh lock");
        return;
    }
    if (r->type == REDIS_REPLY_STATUS) {
        /* another instance may have stored a token and released the lock
         * between our read and our lock: read once more before fetching */
        e->have_lock = 1;
        read_stored(e);
        return;
    }
    /* another instance is refreshing: wait for its result */
    arm(e, POLL_MS);
}

static void
try_lock(struct tok_entry *e)
{
    unsigned char rnd[16];
    char px[16];
    const char *argv[6];
    enum brk_err err;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        fail(e, BRK_ERR_CRYPTO, 0, "no randomness");
        return;
    }
    codec_hex_encode(rnd, sizeof(rnd), e->fence);
    snprintf(px, sizeof(px), "%d", TOKENS_LOCK_MS);
    argv[0] = "SET";
    argv[1] = e->lock;
    argv[2] = e->fence;
    argv[3] = "NX";
    argv[4] = "PX";
    argv[5] = px;
    err = store_cmd_argv(e->t->st, on_lock, e, 6, argv, NULL);
    if (err)
        fail(e, err, 0, "store unavailable");
}

/*---- Fetching from WeCom and storing ----*/

struct write_ctx {
    struct tok_entry *e;
    char *token;
    long long exp;
};

static void
on_written(enum brk_err err, struct redisReply *r, void *arg)
{
    struct write_ctx *w = arg;
    struct tok_entry *e = w->e;

    if (err)
        log_warn("%s token for %s: fetched but not stored (%s)", kind_name(e),
                 e->suite, brk_strerror(err));
    else if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
        log_warn("%s token for %s: refresh lock expired before the write; "
                 "token used here only",
                 kind_name(e), e->suite);
    count_refresh(e, "ok");
    succeed(e, w->token, w->exp);
    brk_free_secret_str(w->token);
    brk_free(w);
}

static void
store_fetched(struct tok_entry *e, const char *token, long expires_in)
{
    const unsigned char *dk = NULL;
    struct suite_rt *su;
    struct write_ctx *w = NULL;
    char *sealed = NULL, exp[24], fp[65];
    const char *argv[9];
    long long exp_ms;
    enum brk_err err;

    if (expires_in <= 0 || expires_in > 86400 * 30)
        expires_in = 7200;
    exp_ms = brk_wall_ms() + expires_in * 1000LL;
    /* every token of this kind lives so long: its margins follow */
    e->t->life_ms[e->kind] = expires_in * 1000LL;
    if (e->kind == TOK_SUITE) {
        su = suites_find(e->t->suites, e->suite);
        dk = su && su->dk_loaded ? su->dk : NULL;
    } else {
        dk = e->dk_ok ? e->dk : NULL;
    }
    w = brk_calloc(1, sizeof(*w));
    if (w == NULL || dk == NULL ||
        keyring_seal(dk, e->key, token, strlen(token), &sealed, NULL)) {
        brk_free(w);
        /* usable now even if it cannot be stored */
        count_refresh(e, "ok");
        succeed(e, token, exp_ms);
        return;
    }
    w->e = e;
    w->token = brk_strdup(token);
    w->exp = exp_ms;
    snprintf(exp, sizeof(exp), "%lld", exp_ms);
    fingerprint(e->t, token, fp);
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_ACCESS_TOKEN_STORE);
    argv[2] = "2";
    argv[3] = e->key;
    argv[4] = e->lock;
    argv[5] = e->fence;
    argv[6] = sealed;
    argv[7] = exp;
    argv[8] = fp;
    err = w->token ? store_cmd_argv(e->t->st, on_written, w, 9, argv, NULL)
                   : BRK_ERR_NOMEM;
    brk_free(sealed);
    if (err) {
        count_refresh(e, "ok");
        succeed(e, token, exp_ms);
        brk_free_secret_str(w->token);
        brk_free(w);
    }
}

static void
on_suite_token_api(const struct wecom_api_result *res, void *arg)
{
    struct tok_entry *e = arg;
    json_t *tok, *exp;

    if (res->err) {
        fail(e, res->err, res->errcode, "get_suite_token failed");
        return;
    }
    tok = json_object_get(res->body, "suite_access_token");
    exp = json_object_get(res->body, "expires_in");
    if (!json_is_string(tok) || json_string_length(tok) == 0 ||
        json_string_length(tok) > TOKEN_MAX || !json_is_integer(exp)) {
        fail(e, BRK_ERR_UPSTREAM_BAD, 0, "get_suite_token reply malformed");
        return;
    }
    store_fetched(e, json_string_value(tok), (long)json_integer_value(exp));
}

static void
on_ticket(enum brk_err err, struct redisReply *r, void *arg)
{
    struct tok_entry *e = arg;
    struct suite_rt *su = suites_find(e->t->suites, e->suite);
    char tkey[KEYS_MAX], *ticket = NULL, *body = NULL;
    size_t tlen;
    json_t *req = NULL;

    if (err) {
        fail(e, err, 0, "cannot read the suite_ticket");
        return;
    }
    if (r->type != REDIS_REPLY_STRING) {
        fail(e, BRK_ERR_NOTFOUND, 0,
             "no suite_ticket yet (WeCom pushes one every 10 minutes)");
        return;
    }
    if (su == NULL || !su->dk_loaded ||
        keys_suite_ticket(tkey, sizeof(tkey), e->t->cfg->key_prefix,
                          e->suite) ||
        keyring_open(su->dk, tkey, r->str, r->len, &ticket, &tlen)) {
        fail(e, BRK_ERR_CRYPTO, 0, "stored suite_ticket does not open");
        return;
    }
    req = json_pack("{s:s, s:s, s:s}", "suite_id", e->suite, "suite_secret",
                    su->conf->secret, "suite_ticket", ticket);
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    if (req != NULL) {
        /* jansson keeps copies of the secret: wipe them too */
        json_t *v = json_object_get(req, "suite_secret");
        brk_wipe((void *)(uintptr_t)json_string_value(v),
                 json_string_length(v));
        v = json_object_get(req, "suite_ticket");
        brk_wipe((void *)(uintptr_t)json_string_value(v),
                 json_string_length(v));
        json_decref(req);
    }
    brk_free_secret(ticket, tlen);
    if (body == NULL) {
        fail(e, BRK_ERR_NOMEM, 0, "out of memory");
        return;
    }
    err = wecom_api_call(e->t->api, "POST", "/cgi-bin/service/get_suite_token",
                         body, NULL, on_suite_token_api, e);
    brk_wipe(body, strlen(body));
    free(body);
    if (err)
        fail(e, err, 0, "cannot call get_suite_token");
}

static void
fetch_suite(struct tok_entry *e)
{
    char tkey[KEYS_MAX];
    const char *argv[] = {"HGET", tkey, "ticket"};
    enum brk_err err;

    err =
        keys_suite_ticket(tkey, sizeof(tkey), e->t->cfg->key_prefix, e->suite);
    if (!err)
        err = store_cmd_argv(e->t->st, on_ticket, e, 3, argv, NULL);
    if (err)
        fail(e, err, 0, "store unavailable");
}

static void fetch_corp_with_suite_token(struct tok_entry *e);

static void
on_corp_token_api(const struct wecom_api_result *res, void *arg)
{
    struct tok_entry *e = arg;
    json_t *tok, *exp;

    if (res->err == BRK_ERR_WECOM &&
        errcodes_suite_token_refused(res->errcode) && !e->suite_retried) {
        /* the suite token went bad: forget it and try once more */
        e->suite_retried = 1;
        tokens_suite_rejected(e->t, e->suite, e->suite_token);
        fetch(e);
        return;
    }
    if (res->err) {
        fail(e, res->err, res->errcode, "get_corp_token failed");
        return;
    }
    tok = json_object_get(res->body, "access_token");
    exp = json_object_get(res->body, "expires_in");
    if (!json_is_string(tok) || json_string_length(tok) == 0 ||
        json_string_length(tok) > TOKEN_MAX || !json_is_integer(exp)) {
        fail(e, BRK_ERR_UPSTREAM_BAD, 0, "get_corp_token reply malformed");
        return;
    }
    store_fetched(e, json_string_value(tok), (long)json_integer_value(exp));
}

static void
on_pcode(enum brk_err err, struct redisReply *r, void *arg)
{
    struct tok_entry *e = arg;
    char tkey[KEYS_MAX], ctx[KEYS_MAX + 8], *pcode = NULL, *body = NULL;
    char *path = NULL, *enc = NULL;
    size_t plen, n;
    json_t *req;

    if (err) {
        fail(e, err, 0, "cannot read the permanent code");
        return;
    }
    if (r->type != REDIS_REPLY_STRING) {
        fail(e, BRK_ERR_NOTFOUND, 0, "no permanent code: not a tenant");
        return;
    }
    if (keys_tenant(tkey, sizeof(tkey), e->t->cfg->key_prefix, e->corp,
                    e->suite) ||
        keys_seal_ctx(ctx, sizeof(ctx), tkey, "pcode") ||
        keyring_open(e->dk, ctx, r->str, r->len, &pcode, &plen)) {
        fail(e, BRK_ERR_CRYPTO, 0, "stored permanent code does not open");
        return;
    }
    req = json_pack("{s:s, s:s}", "auth_corpid", e->corp, "permanent_code",
                    pcode);
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    if (req != NULL) {
        json_t *v = json_object_get(req, "permanent_code");
        brk_wipe((void *)(uintptr_t)json_string_value(v),
                 json_string_length(v));
        json_decref(req);
    }
    brk_free_secret(pcode, plen);
    n = strlen(e->suite_token);
    enc = brk_malloc(3 * n + 1);
    path = brk_malloc(3 * n + 96);
    if (body == NULL || enc == NULL || path == NULL) {
        fail(e, BRK_ERR_NOMEM, 0, "out of memory");
        goto out;
    }
    codec_pct_encode(e->suite_token, enc);
    snprintf(path, 3 * n + 96,
             "/cgi-bin/service/get_corp_token?suite_access_token=%s", enc);
    err = wecom_api_call(e->t->api, "POST", path, body, e->corp,
                         on_corp_token_api, e);
    if (err)
        fail(e, err, 0, "cannot call get_corp_token");
out:
    if (body != NULL) {
        brk_wipe(body, strlen(body));
        free(body);
    }
    brk_free_secret_str(enc);
    brk_free_secret_str(path);
}

static void
read_pcode(struct tok_entry *e)
{
    char tkey[KEYS_MAX];
    const char *argv[] = {"HGET", tkey, "pcode"};
    enum brk_err err;

    err = keys_tenant(tkey, sizeof(tkey), e->t->cfg->key_prefix, e->corp,
                      e->suite);
    if (!err)
        err = store_cmd_argv(e->t->st, on_pcode, e, 3, argv, NULL);
    if (err)
        fail(e, err, 0, "store unavailable");
}

static void
on_tenant_dk_for_fetch(enum brk_err err, const unsigned char *dk, void *arg)
{
    struct tok_entry *e = arg;

    if (err) {
        fail(e, err, 0, "tenant data key not available");
        return;
    }
    memcpy(e->dk, dk, KEYRING_KEY_LEN);
    e->dk_ok = 1;
    read_pcode(e);
}

static void
fetch_corp_with_suite_token(struct tok_entry *e)
{
    enum brk_err err;

    if (e->dk_ok) {
        read_pcode(e);
        return;
    }
    err = load_tenant_dk(e, on_tenant_dk_for_fetch, e);
    if (err)
        fail(e, err, 0, "tenant data key not available");
}

static void
on_suite_token(enum brk_err err, const char *token, long errcode, void *arg)
{
    struct tok_entry *e = arg;

    if (err) {
        fail(e, err, errcode, "no suite token");
        return;
    }
    brk_free_secret_str(e->suite_token);
    e->suite_token = brk_strdup(token);
    if (e->suite_token == NULL) {
        fail(e, BRK_ERR_NOMEM, 0, "out of memory");
        return;
    }
    fetch_corp_with_suite_token(e);
}

static void
fetch(struct tok_entry *e)
{
    enum brk_err err;

    if (e->kind == TOK_SUITE) {
        fetch_suite(e);
        return;
    }
    err = tokens_suite(e->t, e->suite, on_suite_token, e);
    if (err)
        fail(e, err, 0, "no suite token");
}

/*---- Entries and requests ----*/

static struct tok_entry *
find_entry(struct tokens *t, enum tok_kind kind, const char *suite,
           const char *corp)
{
    struct tok_entry *e;

    for (e = t->entries; e != NULL; e = e->next)
        if (e->kind == kind && strcmp(e->suite, suite) == 0 &&
            strcmp(e->corp, corp) == 0)
            return e;
    return NULL;
}

static enum brk_err
get_entry(struct tokens *t, enum tok_kind kind, const char *suite,
          const char *corp, struct tok_entry **out)
{
    struct tok_entry *e = find_entry(t, kind, suite, corp);
    enum brk_err err;

    if (e != NULL) {
        *out = e;
        return BRK_OK;
    }
    if (strlen(suite) >= sizeof(e->suite) || strlen(corp) >= sizeof(e->corp))
        return BRK_ERR_INVAL;
    e = brk_calloc(1, sizeof(*e));
    if (e == NULL)
        return BRK_ERR_NOMEM;
    e->t = t;
    e->kind = kind;
    memcpy(e->suite, suite, strlen(suite) + 1);
    memcpy(e->corp, corp, strlen(corp) + 1);
    if (kind == TOK_SUITE) {
        err = keys_suite(e->key, sizeof(e->key), t->cfg->key_prefix, suite,
                         "token");
        if (!err)
            err = keys_suite(e->lock, sizeof(e->lock), t->cfg->key_prefix,
                             suite, "lock:token");
    } else {
        err = keys_tenant_sub(e->key, sizeof(e->key), t->cfg->key_prefix, corp,
                              suite, "token");
        if (!err)
            err = keys_tenant_sub(e->lock, sizeof(e->lock), t->cfg->key_prefix,
                                  corp, suite, "lock:token");
    }
    e->timer = err ? NULL : evtimer_new(t->base, on_timer, e);
    e->serve = e->timer == NULL ? NULL : evtimer_new(t->base, on_serve, e);
    if (e->serve == NULL) {
        if (e->timer != NULL)
            event_free(e->timer);
        brk_free(e);
        return err ? err : BRK_ERR_NOMEM;
    }
    e->next = t->entries;
    t->entries = e;
    *out = e;
    return BRK_OK;
}

static enum brk_err
request(struct tokens *t, enum tok_kind kind, const char *suite,
        const char *corp, tokens_cb *cb, void *arg)
{
    struct tok_entry *e;
    struct waiter *w;
    enum brk_err err;

    if (t->freeing)
        return BRK_ERR_SHUTDOWN;
    if (suites_find(t->suites, suite) == NULL)
        return BRK_ERR_NOTFOUND;
    err = get_entry(t, kind, suite, corp, &e);
    if (err)
        return err;
    w = brk_calloc(1, sizeof(*w));
    if (w == NULL)
        return BRK_ERR_NOMEM;
    w->cb = cb;
    w->arg = arg;
    w->next = e->waiters;
    e->waiters = w;
    if (!e->busy || cache_fresh(e)) {
        struct timeval now = {0, 0};

        /* answer from the cache or start a refresh, later */
        evtimer_add(e->serve, &now);
    }
    return BRK_OK;
}

enum brk_err
tokens_suite(struct tokens *t, const char *suite_id, tokens_cb *cb, void *arg)
{
    return request(t, TOK_SUITE, suite_id, "", cb, arg);
}

enum brk_err
tokens_corp(struct tokens *t, const char *suite_id, const char *corpid,
            tokens_cb *cb, void *arg)
{
    if (corpid == NULL || corpid[0] == '\0')
        return BRK_ERR_INVAL;
    return request(t, TOK_CORP, suite_id, corpid, cb, arg);
}

int
tokens_is_corp_token_error(long errcode)
{
    return errcode == WECOM_ERR_INVALID_TOKEN ||
           errcode == WECOM_ERR_TOKEN_EXPIRED ||
           errcode == WECOM_ERR_INVALID_SECRET;
}

static void
rejected(struct tokens *t, enum tok_kind kind, const char *suite,
         const char *corp, const char *token)
{
    struct tok_entry *e = find_entry(t, kind, suite, corp);
    char fp[65];
    const char *argv[5];

    if (e == NULL || token == NULL)
        return;
    if (e->token != NULL && strcmp(e->token, token) == 0)
        cache_clear(e);
    fingerprint(t, token, fp);
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_ACCESS_TOKEN_REJECT);
    argv[2] = "1";
    argv[3] = e->key;
    argv[4] = fp;
    if (store_cmd_argv(t->st, on_released, NULL, 5, argv, NULL) != BRK_OK)
        log_warn("%s token for %s: could not expire the rejected token in "
                 "Redis",
                 kind_name(e), suite);
}

void
tokens_corp_rejected(struct tokens *t, const char *suite_id, const char *corpid,
                     const char *token)
{
    rejected(t, TOK_CORP, suite_id, corpid, token);
}

void
tokens_suite_rejected(struct tokens *t, const char *suite_id, const char *token)
{
    rejected(t, TOK_SUITE, suite_id, "", token);
}

void
tokens_drop_cache(struct tokens *t)
{
    struct tok_entry *e;

    for (e = t->entries; e != NULL; e = e->next)
        cache_clear(e);
}

void
tokens_forget_tenant(struct tokens *t, const char *suite_id, const char *corpid)
{
    struct tok_entry *e = find_entry(t, TOK_CORP, suite_id, corpid);

    if (e != NULL)
        cache_clear(e);
}

/*
 * Create the manager (see tokens.h). Returns BRK_OK or BRK_ERR_NOMEM.
 */
enum brk_err
tokens_new(struct event_base *base, const struct config *cfg,
           const struct keyring *kr, struct store *st, struct suites *suites,
           struct wecom_api *api, struct tokens **out)
{
    struct tokens *t = brk_calloc(1, sizeof(*t));

    if (t == NULL)
        return BRK_ERR_NOMEM;
    t->base = base;
    t->cfg = cfg;
    t->kr = kr;
    t->st = st;
    t->suites = suites;
    t->api = api;
    t->life_ms[TOK_SUITE] = LIFE_MS;
    t->life_ms[TOK_CORP] = LIFE_MS;
    *out = t;
    return BRK_OK;
}

/*
 * Use kr (borrowed) from now on, for the configuration reload. Work
 * already started may still hold the previous keyring, so the caller
 * keeps that one alive a while longer. Cannot fail.
 */
void
tokens_set_keyring(struct tokens *t, const struct keyring *kr)
{
    t->kr = kr;
}

void
tokens_free(struct tokens *t)
{
    struct tok_entry *e, *next;

    if (t == NULL)
        return;
    t->freeing = 1;
    for (e = t->entries; e != NULL; e = e->next)
        if (e->waiters != NULL)
            deliver(e, BRK_ERR_SHUTDOWN, 0);
    for (e = t->entries; e != NULL; e = next) {
        next = e->next;
        cache_clear(e);
        event_free(e->timer);
        event_free(e->serve);
        brk_free(e);
    }
    brk_free(t);
}
