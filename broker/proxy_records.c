/*
 * The service API's records (see proxy_int.h): services, tenants and
 * narrowed ranges, read from Redis or from the in-process caches, and
 * the grant's decision over them.
 *
 * The chains, in order:
 *   proxy_load_service -> [cache hit -> next]
 *                       | HGETALL service -> on_service -> next
 *   proxy_load_tenant  -> [cache hit -> next]
 *                       | [a load under way: wait for it]
 *                       | tenant_load -> on_tenant -> each waiter's next
 *   A hit past 3/4 of cache_max_age also starts a read of the same record
 *   in the background (refresh-ahead: HGETALL -> on_refresh, or a tenant
 *   load without waiters that first asks whether the copy's generation is
 *   still the stored one: if so the copy, decoded directory and all, is
 *   kept for another cache_max_age), so that in steady state a request never
 * waits for Redis: when a hot entry would have expired, a newer one is there.
 *   The entry served meanwhile is never older than cache_max_age.
 *   proxy_decide, proxy_effective_range: synchronous, no reply
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cache.h"
#include "config.h"
#include "grant.h"
#include "keys.h"
#include "log.h"
#include "proxy_int.h"
#include "record.h"
#include "scripts.h"
#include "service.h"
#include "store.h"
#include "tenant_load.h"
#include "visible_range.h"

/*---- Records ----*/

/* The caches' destructors. */
void
proxy_svc_unref(void *v)
{
    record_service_unref(v);
}

void
proxy_tenant_unref(void *v)
{
    record_tenant_unref(v);
}

size_t
proxy_svc_size(const void *v)
{
    const struct record_service *s = v;
    size_t n = sizeof(*s) + s->ncorps * sizeof(*s->corps), i;

    for (i = 0; i < s->nparties; i++)
        n += sizeof(s->parties[i]) + s->parties[i].n * sizeof(long);
    return n;
}

size_t
proxy_tenant_size(const void *v)
{
    return record_tenant_bytes(v);
}

size_t
proxy_range_size(const void *v)
{
    const struct range_ref *r = v;

    return sizeof(*r) + (r->v != NULL ? vrange_memory(r->v) : 0);
}

static struct range_ref *
range_ref(struct range_ref *r)
{
    r->refs++;
    return r;
}

void
proxy_range_unref(void *v)
{
    struct range_ref *r = v;

    if (r == NULL || --r->refs > 0)
        return;
    vrange_free(r->v);
    brk_free(r);
}

/*---- Reading ahead of expiry ----*/

/* A background read of a token or a service. */
struct prefresh {
    struct proxy *p; /* NULL once the proxy is gone */
    unsigned long gen;
    int service; /* else a token */
    char key[80];
    struct prefresh *link;
};

/* Past 3/4 of its life: time to read it again. Not earlier: decoding a
 * large tenant's directory holds the loop for a while, and reading at
 * half the age would do it twice as often as expiry did. */
static int
refresh_due(const struct proxy *p, long long age_ms)
{
    return p->cfg->cache_max_age > 0 &&
           age_ms * 4 >= p->cfg->cache_max_age * 3000LL;
}

static void
refresh_unlink(struct prefresh *r)
{
    struct prefresh **pp;

    if (r->p == NULL)
        return;
    for (pp = &r->p->refreshes; *pp != r; pp = &(*pp)->link)
        ;
    *pp = r->link;
}

static void
on_refresh(enum brk_err err, struct redisReply *rep, void *arg)
{
    struct prefresh *r = arg;
    struct proxy *p = r->p;
    struct record_service *s = NULL;
    struct record_token tr, *t;
    long long now = brk_mono_ms();

    refresh_unlink(r);
    /* a notice since the read started: the entry is gone or going */
    if (p == NULL || err || r->gen != p->gen)
        goto out;
    if (r->service) {
        err = record_service_decode(r->key, rep, &s);
        if (err == BRK_OK) {
            if (cache_put(p->services, r->key, s, now))
                log_debug("service cache: entry not kept");
        } else {
            /* gone, or no longer readable: the next request finds out */
            cache_remove(p->services, r->key);
        }
        goto out;
    }
    err = record_token_decode(rep, &tr);
    t = err ? NULL : brk_malloc(sizeof(*t));
    if (t != NULL) {
        *t = tr;
        if (cache_put(p->tokens, r->key, t, now))
            log_debug("token cache: entry not kept");
    } else {
        cache_remove(p->tokens, r->key);
    }
out:
    brk_free(r);
}

static void
refresh_start(struct proxy *p, int service, const char *key, const char *rkey)
{
    struct prefresh *r;
    const char *argv[2];

    for (r = p->refreshes; r != NULL; r = r->link)
        if (r->service == service && strcmp(r->key, key) == 0)
            return;
    if (strlen(key) >= sizeof(r->key))
        return;
    r = brk_calloc(1, sizeof(*r));
    if (r == NULL)
        return;
    r->p = p;
    r->gen = p->gen;
    r->service = service;
    snprintf(r->key, sizeof(r->key), "%s", key);
    argv[0] = "HGETALL";
    argv[1] = rkey;
    if (store_cmd_argv(p->st, on_refresh, r, 2, argv, NULL)) {
        brk_free(r);
        return;
    }
    r->link = p->refreshes;
    p->refreshes = r;
}

void
proxy_refresh_token(struct proxy *p, const char *hash, long long age_ms)
{
    char key[KEYS_MAX];

    if (refresh_due(p, age_ms) &&
        keys_btoken(key, sizeof(key), p->cfg->key_prefix, hash) == BRK_OK)
        refresh_start(p, 0, hash, key);
}

static void
refresh_service(struct proxy *p, const char *id, long long age_ms)
{
    char key[KEYS_MAX];

    if (refresh_due(p, age_ms) &&
        keys_service(key, sizeof(key), p->cfg->key_prefix, id, NULL) == BRK_OK)
        refresh_start(p, 1, id, key);
}

/*---- Loading services and tenants ----*/

struct load_ctx {
    struct preq *q;
    preq_step *next;
    char key[200];
};

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
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
    err = record_service_decode(id, r, &s);
    if (err && err != BRK_ERR_NOTFOUND) {
        proxy_reply_unusable(q, "service", err);
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
void
proxy_load_service(struct preq *q, const char *id, preq_step *next)
{
    long long age = 0;
    struct record_service *s =
        cache_get_age(q->p->services, id, brk_mono_ms(), &age);
    struct load_ctx *c;
    char key[KEYS_MAX];
    const char *argv[2];

    if (s != NULL) {
        q->svc = record_service_ref(s);
        refresh_service(q->p, id, age);
        next(q);
        return;
    }
    c = brk_calloc(1, sizeof(*c));
    if (c == NULL ||
        keys_service(key, sizeof(key), q->p->cfg->key_prefix, id, NULL)) {
        brk_free(c);
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "out of memory");
        return;
    }
    c->q = q;
    c->next = next;
    snprintf(c->key, sizeof(c->key), "%s", id);
    argv[0] = "HGETALL";
    argv[1] = key;
    if (store_cmd_argv(q->p->st, on_service, c, 2, argv, NULL)) {
        brk_free(c);
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
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
    struct proxy *p;   /* NULL once the proxy is gone */
    unsigned long gen; /* p->gen when the load started */
    char key[200];
    struct tload_waiter *waiters;
    struct tload *link;
};

static void
on_tenant(enum brk_err err, struct record_tenant *t, int renewed, void *arg)
{
    struct tload *l = arg, **pp;
    struct proxy *p = l->p;
    struct tload_waiter *w, *next;

    if (p == NULL) {
        /* the proxy is gone, and what waited with it */
        for (w = l->waiters; w != NULL; w = next) {
            next = w->link;
            brk_free(w);
        }
        record_tenant_unref(t);
        brk_free(l);
        return;
    }
    for (pp = &p->loads; *pp != l; pp = &(*pp)->link)
        ;
    *pp = l->link;
    if (err && err != BRK_ERR_STORE && err != BRK_ERR_TIMEOUT &&
        err != BRK_ERR_SHUTDOWN)
        log_warn("tenant %s: stored record unusable (%s)", l->key,
                 brk_strerror(err));
    /* the cache's own reference: a failed put has dropped it already; a
     * renewed copy keeps its decoded directory and range */
    if (t != NULL && l->gen == p->gen &&
        cache_put(p->tenants, l->key, record_tenant_ref(t), brk_mono_ms()))
        log_debug("tenant cache: entry not kept");
    if (renewed)
        log_debug("tenant %s: unchanged, kept", l->key);
    for (w = l->waiters; w != NULL; w = next) {
        next = w->link;
        if (err == BRK_ERR_STORE || err == BRK_ERR_TIMEOUT ||
            err == BRK_ERR_SHUTDOWN) {
            proxy_reply_error(w->q, ERRCODE_UNAVAILABLE, "store unavailable");
        } else if (err) {
            proxy_reply_error(w->q, ERRCODE_UNAVAILABLE,
                              "stored record unusable");
        } else {
            w->q->ten = t != NULL ? record_tenant_ref(t) : NULL;
            w->next(w->q);
        }
        brk_free(w);
    }
    record_tenant_unref(t); /* the load's own reference */
    brk_free(l);
}

/* Start loading the tenant (suite, corp) under cache key ck, with no
 * waiter yet: copy (borrowed, may be NULL) is revalidated first (see
 * tenant_load.h). NULL when it cannot start. */
static struct tload *
tload_start(struct proxy *p, const char *suite, const char *corp,
            const char *ck, struct record_tenant *copy)
{
    struct tload *l;

    l = brk_calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->p = p;
    l->gen = p->gen;
    snprintf(l->key, sizeof(l->key), "%s", ck);
    if (tenant_load_start(p->st, p->cfg->key_prefix, suite, corp, copy,
                          on_tenant, l)) {
        brk_free(l);
        return NULL;
    }
    l->link = p->loads;
    p->loads = l;
    return l;
}

static struct tload *
tload_find(struct proxy *p, const char *ck)
{
    struct tload *l;

    for (l = p->loads; l != NULL; l = l->link)
        if (strcmp(l->key, ck) == 0)
            return l;
    return NULL;
}

/* Load the tenant (suite, corp) of q->tr into q->ten (NULL: none). */
void
proxy_load_tenant(struct preq *q, preq_step *next)
{
    struct proxy *p = q->p;
    struct record_tenant *t;
    struct tload_waiter *w;
    struct tload *l;
    long long age = 0;
    char ck[200];

    snprintf(ck, sizeof(ck), "%s %s", q->tr.suite, q->tr.corp);
    t = cache_get_age(p->tenants, ck, brk_mono_ms(), &age);
    if (t != NULL) {
        q->ten = record_tenant_ref(t);
        /* a failed start leaves the entry to expire as before */
        if (refresh_due(p, age) && tload_find(p, ck) == NULL &&
            tload_start(p, q->tr.suite, q->tr.corp, ck, t) == NULL)
            log_debug("tenant %s: not read ahead", ck);
        next(q);
        return;
    }
    w = brk_calloc(1, sizeof(*w));
    if (w == NULL) {
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "out of memory");
        return;
    }
    w->q = q;
    w->next = next;
    l = tload_find(p, ck);
    if (l == NULL)
        l = tload_start(p, q->tr.suite, q->tr.corp, ck, NULL);
    if (l == NULL) {
        brk_free(w);
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
    w->link = l->waiters;
    l->waiters = w;
}

/* Reads under way answer into nothing once p is gone. Cannot fail. */
void
proxy_records_orphan(struct proxy *p)
{
    struct prefresh *r;
    struct tload *l;

    for (r = p->refreshes; r != NULL; r = r->link)
        r->p = NULL;
    p->refreshes = NULL;
    for (l = p->loads; l != NULL; l = l->link)
        l->p = NULL;
    p->loads = NULL;
}

/*---- The grant ----*/

/* The grant's decision for q's service and tenant, a token of generation
 * token_gen (-1: none yet) and the scope need: the refusal (also in
 * q->why), and q->grant the effective grant. */
enum grant_refusal
proxy_decide(struct preq *q, long token_gen, int need)
{
    struct grant_ask a = {q->svc,     token_gen, q->tr.suite,
                          q->tr.corp, q->ten,    need};
    struct grant_verdict v;

    grant_decide(&a, &v);
    q->grant = v.effective;
    q->why = v.why;
    return v.why;
}

/*---- The range ----*/

/*
 * The tenant's range, narrowed by the service's own departments there,
 * into q->range (borrowed from the tenant, or from q->narrowed). Returns
 * BRK_OK, BRK_ERR_INVAL when the service's departments name the corp in
 * other letter cases only, or what building the narrowed range returned
 * (BRK_ERR_NOMEM...): the request is then refused.
 */
enum brk_err
proxy_effective_range(struct preq *q)
{
    const struct record_parties *mine = NULL;
    const struct vrange *range = NULL;
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
    err = record_effective_range(q->svc, q->ten, q->tr.corp, &v, &range);
    ref = err || v == NULL ? NULL : brk_calloc(1, sizeof(*ref));
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
    proxy_range_unref(ref);
    return BRK_OK;
}
