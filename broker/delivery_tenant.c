/*
 * The delivery engine's tenants (see delivery_tenant.h).
 *
 * One struct dten per tenant asked for: the copy (if any), the sends
 * waiting for it, the read in flight. The list is kept most recently used
 * first; the bounds are enforced after each copy is kept, never on a
 * tenant being read or waited for.
 */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "delivery_tenant.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "scripts.h"
#include "store.h"
#include "tenant_load.h"
#include "visible_range.h"

#define DTEN_KEY_MAX (2 * RECORD_ID_MAX + 2)

/* A send waiting for the tenant. */
struct dwait {
    struct dwait *next;
    struct record_service *svc; /* one reference */
    unsigned long svc_gen;
    delivery_tenant_cb *cb;
    void *arg;
};

/* A range narrowed for a service (only services with departments of their
 * own: the others see the tenant's range). */
struct drange {
    struct drange *next;
    char svc[RECORD_ID_MAX + 1];
    unsigned long svc_gen;
    struct vrange *range; /* owned */
    size_t bytes;
};

struct dten {
    struct delivery_tenants *c;
    struct dten *prev, *next;
    char suite[RECORD_ID_MAX + 1], corp[RECORD_ID_MAX + 1];
    struct record_tenant *t; /* the copy, one reference; NULL: none */
    size_t bytes;            /* of t and its ranges */
    long long read_ms;       /* when the copy's read started */
    long long dirty_ms;      /* the first notice the copy has not seen */
    long long last_read_ms;  /* when the latest read started */
    unsigned long gen;       /* notices (and clears) received */
    int reading;
    unsigned long read_gen;    /* gen when the read in flight started */
    long long read_start_ms;   /* when it started */
    long long notice_since_ms; /* the first notice since it started */
    struct drange *ranges;
    struct dwait *waiters, **wtail;
};

struct delivery_tenants {
    struct store *st;
    const char *prefix;
    size_t max_entries, max_bytes;
    long long max_age_ms;
    struct dten *head, *tail;
    size_t n, bytes;
    unsigned long reads;
    int freed; /* reads in flight free the entries they hold */
    unsigned inflight;
};

static void
ranges_free(struct dten *e)
{
    struct drange *r;

    while ((r = e->ranges) != NULL) {
        e->ranges = r->next;
        vrange_free(r->range);
        brk_free(r);
    }
}

/* Drop the copy (the entry stays). */
static void
copy_drop(struct dten *e)
{
    ranges_free(e);
    record_tenant_unref(e->t);
    e->t = NULL;
    e->c->bytes -= e->bytes;
    e->bytes = 0;
}

static void
unlink_entry(struct dten *e)
{
    struct delivery_tenants *c = e->c;

    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
    c->n--;
}

static void
push_front(struct dten *e)
{
    struct delivery_tenants *c = e->c;

    e->prev = NULL;
    e->next = c->head;
    if (c->head != NULL)
        c->head->prev = e;
    c->head = e;
    if (c->tail == NULL)
        c->tail = e;
    c->n++;
}

static void
entry_free(struct dten *e)
{
    copy_drop(e);
    brk_free(e);
}

/* Free the least recently used idle entries until the bounds hold; keep
 * is never freed (its copy may be, when it alone is over the budget). */
static void
enforce(struct delivery_tenants *c, struct dten *keep)
{
    struct dten *e = c->tail, *prev;

    while (e != NULL && (c->n > c->max_entries || c->bytes > c->max_bytes)) {
        prev = e->prev;
        if (e != keep && !e->reading && e->waiters == NULL) {
            unlink_entry(e);
            entry_free(e);
        } else if (e->waiters == NULL && c->bytes > c->max_bytes) {
            copy_drop(e);
        }
        e = prev;
    }
}

/* Whether the copy has seen every notice but those of the last
 * DELIVERY_TENANT_STALE_MS. */
static int
fresh(const struct dten *e, long long now)
{
    return e->t != NULL &&
           (e->dirty_ms == 0 || now - e->dirty_ms < DELIVERY_TENANT_STALE_MS);
}

/* Whether the copy may serve a send now. */
static int
usable(const struct dten *e, long long now)
{
    if (now - e->read_ms >= e->c->max_age_ms || now < e->read_ms)
        return 0;
    return fresh(e, now);
}

/* The range svc sees of the copy: from the kept ones, or narrowed now and
 * kept. */
static enum brk_err
range_for(struct dten *e, struct record_service *svc, unsigned long svc_gen,
          const struct vrange **range, int *own)
{
    struct drange *r;
    struct vrange *owned = NULL;
    const struct vrange *v = NULL;
    enum brk_err err;

    if (!e->t->active) {
        *range = NULL;
        *own = 0;
        return BRK_OK;
    }
    for (r = e->ranges; r != NULL; r = r->next)
        if (r->svc_gen == svc_gen && strcmp(r->svc, svc->id) == 0) {
            *range = r->range;
            *own = 1;
            return BRK_OK;
        }
    err = record_effective_range(svc, e->t, e->corp, &owned, &v);
    if (err)
        return err;
    if (owned == NULL) {
        *range = v;
        *own = 0;
        return BRK_OK;
    }
    r = brk_calloc(1, sizeof(*r));
    if (r == NULL) {
        vrange_free(owned);
        return BRK_ERR_NOMEM;
    }
    snprintf(r->svc, sizeof(r->svc), "%s", svc->id);
    r->svc_gen = svc_gen;
    r->range = owned;
    r->bytes = vrange_memory(owned) + sizeof(*r);
    r->next = e->ranges;
    e->ranges = r;
    e->bytes += r->bytes;
    e->c->bytes += r->bytes;
    *range = owned;
    *own = 1;
    return BRK_OK;
}

/* Serve one send from the copy (present). */
static void
serve(struct dten *e, struct record_service *svc, unsigned long svc_gen,
      delivery_tenant_cb *cb, void *arg)
{
    const struct vrange *v = NULL;
    int own = 0;
    enum brk_err err = range_for(e, svc, svc_gen, &v, &own);

    if (err)
        cb(err, NULL, NULL, 0, arg);
    else
        cb(BRK_OK, e->t, v, own, arg);
}

/* Hand err to every waiting send. */
static void
fail_waiters(struct dten *e, enum brk_err err)
{
    struct dwait *w;

    while ((w = e->waiters) != NULL) {
        e->waiters = w->next;
        if (e->waiters == NULL)
            e->wtail = &e->waiters;
        w->cb(err, NULL, NULL, 0, w->arg);
        record_service_unref(w->svc);
        brk_free(w);
    }
}

static void read_start(struct dten *e, long long now);

/* A read ended: serve the waiting sends from its copy (read for them,
 * whatever cache_max_age says), unless a notice it has not seen is older
 * than DELIVERY_TENANT_STALE_MS: then read again. */
static void
serve_waiters(struct dten *e, long long now)
{
    struct dwait *w;
    struct record_tenant *t;

    if (e->waiters == NULL)
        return;
    if (!fresh(e, now)) {
        if (!e->reading)
            read_start(e, now);
        return;
    }
    t = record_tenant_ref(e->t); /* the copy stays through the callbacks */
    while ((w = e->waiters) != NULL) {
        e->waiters = w->next;
        if (e->waiters == NULL)
            e->wtail = &e->waiters;
        serve(e, w->svc, w->svc_gen, w->cb, w->arg);
        record_service_unref(w->svc);
        brk_free(w);
    }
    record_tenant_unref(t);
}

static void
on_read(enum brk_err err, struct record_tenant *t, int renewed, void *arg)
{
    struct dten *e = arg;
    struct delivery_tenants *c = e->c;
    long long now = brk_wall_ms();

    e->reading = 0;
    c->inflight--;
    if (c->freed) {
        record_tenant_unref(t);
        fail_waiters(e, BRK_ERR_SHUTDOWN);
        entry_free(e);
        if (c->inflight == 0)
            brk_free(c);
        return;
    }
    if (!err && t == NULL)
        err = BRK_ERR_NOTFOUND;
    metrics_inc(METRICS_DELIVERY_TENANT_READS,
                err == BRK_OK || err == BRK_ERR_NOTFOUND ? "result=\"ok\""
                                                         : "result=\"error\"");
    if (err) {
        /* the sends decide (a tenant gone is dropped, the rest retried) */
        fail_waiters(e, err);
        enforce(c, NULL);
        return;
    }
    if (renewed && e->t == t) {
        /* unchanged: the copy, its range and narrowed ranges stay */
        record_tenant_unref(t);
    } else {
        copy_drop(e);
        e->t = t;
        e->bytes = record_tenant_bytes(t);
        c->bytes += e->bytes;
    }
    e->read_ms = e->read_start_ms;
    e->dirty_ms = e->gen == e->read_gen ? 0 : e->notice_since_ms;
    serve_waiters(e, now);
    if (c->max_age_ms == 0 || e->bytes > c->max_bytes)
        copy_drop(e);
    enforce(c, e);
}

static void
read_start(struct dten *e, long long now)
{
    struct delivery_tenants *c = e->c;
    enum brk_err err;

    e->reading = 1;
    e->read_gen = e->gen;
    e->read_start_ms = now;
    e->last_read_ms = now;
    e->notice_since_ms = 0;
    c->inflight++;
    c->reads++;
    /* a copy no notice has touched is asked about first (its generation);
     * after a notice only a full read will do */
    err = tenant_load_start(c->st, c->prefix, e->suite, e->corp,
                            e->dirty_ms == 0 ? e->t : NULL, on_read, e);
    if (err) {
        e->reading = 0;
        c->inflight--;
        fail_waiters(e, err == BRK_ERR_TOOBIG ? BRK_ERR_INVAL : err);
    }
}

enum brk_err
delivery_tenant_new(struct store *st, const char *key_prefix,
                    size_t max_entries, size_t max_bytes, long long max_age_ms,
                    struct delivery_tenants **out)
{
    struct delivery_tenants *c;

    if (st == NULL || key_prefix == NULL || max_entries == 0 ||
        max_bytes == 0 || max_age_ms < 0 || out == NULL)
        return BRK_ERR_INVAL;
    c = brk_calloc(1, sizeof(*c));
    if (c == NULL)
        return BRK_ERR_NOMEM;
    c->st = st;
    c->prefix = key_prefix;
    c->max_entries = max_entries;
    c->max_bytes = max_bytes;
    c->max_age_ms = max_age_ms;
    *out = c;
    return BRK_OK;
}

void
delivery_tenant_free(struct delivery_tenants *c)
{
    struct dten *e;

    if (c == NULL)
        return;
    c->freed = 1;
    while ((e = c->head) != NULL) {
        unlink_entry(e);
        fail_waiters(e, BRK_ERR_SHUTDOWN);
        /* a read in flight frees its entry when it ends */
        if (!e->reading)
            entry_free(e);
        else
            copy_drop(e);
    }
    if (c->inflight == 0)
        brk_free(c);
}

static struct dten *
find(struct delivery_tenants *c, const char *suite, const char *corp)
{
    struct dten *e;

    for (e = c->head; e != NULL; e = e->next)
        if (strcmp(e->corp, corp) == 0 && strcmp(e->suite, suite) == 0)
            return e;
    return NULL;
}

enum brk_err
delivery_tenant_get(struct delivery_tenants *c, const char *suite,
                    const char *corp, struct record_service *svc,
                    unsigned long svc_gen, delivery_tenant_cb *cb, void *arg)
{
    struct dten *e;
    struct dwait *w;
    long long now = brk_wall_ms();

    if (c == NULL || suite == NULL || corp == NULL || svc == NULL ||
        cb == NULL || strlen(suite) > RECORD_ID_MAX ||
        strlen(corp) > RECORD_ID_MAX)
        return BRK_ERR_INVAL;
    if (c->freed)
        return BRK_ERR_SHUTDOWN;
    e = find(c, suite, corp);
    if (e == NULL) {
        e = brk_calloc(1, sizeof(*e));
        if (e == NULL)
            return BRK_ERR_NOMEM;
        e->c = c;
        memcpy(e->suite, suite, strlen(suite) + 1);
        memcpy(e->corp, corp, strlen(corp) + 1);
        e->wtail = &e->waiters;
        push_front(e);
        enforce(c, e);
    } else if (e != c->head) {
        unlink_entry(e);
        push_front(e);
    }
    if (usable(e, now)) {
        /* a copy older than a notice: refresh it behind the sends */
        if (e->dirty_ms != 0 && !e->reading &&
            now - e->last_read_ms >= DELIVERY_TENANT_REFRESH_MS)
            read_start(e, now);
        if (e->t != NULL) {
            struct record_tenant *t = record_tenant_ref(e->t);

            serve(e, svc, svc_gen, cb, arg);
            record_tenant_unref(t);
            return BRK_OK;
        }
    }
    w = brk_calloc(1, sizeof(*w));
    if (w == NULL)
        return BRK_ERR_NOMEM;
    w->svc = record_service_ref(svc);
    w->svc_gen = svc_gen;
    w->cb = cb;
    w->arg = arg;
    *e->wtail = w;
    e->wtail = &w->next;
    if (!e->reading)
        read_start(e, now);
    return BRK_OK;
}

void
delivery_tenant_changed(struct delivery_tenants *c, const char *suite,
                        const char *corp, long long now_ms)
{
    struct dten *e;

    if (c == NULL || suite == NULL || corp == NULL)
        return;
    e = find(c, suite, corp);
    if (e == NULL)
        return;
    e->gen++;
    if (e->dirty_ms == 0)
        e->dirty_ms = now_ms;
    if (e->reading && e->notice_since_ms == 0)
        e->notice_since_ms = now_ms;
}

void
delivery_tenant_clear(struct delivery_tenants *c)
{
    struct dten *e, *next;

    if (c == NULL)
        return;
    for (e = c->head; e != NULL; e = next) {
        next = e->next;
        copy_drop(e);
        e->dirty_ms = 0;
        if (e->reading) {
            /* what it reads is not kept: it ends as an empty copy */
            e->gen++;
            e->notice_since_ms = 1;
        } else if (e->waiters == NULL) {
            unlink_entry(e);
            entry_free(e);
        }
    }
}

size_t
delivery_tenant_count(const struct delivery_tenants *c)
{
    const struct dten *e;
    size_t n = 0;

    for (e = c->head; e != NULL; e = e->next)
        n += e->t != NULL;
    return n;
}

size_t
delivery_tenant_bytes(const struct delivery_tenants *c)
{
    return c->bytes;
}

unsigned long
delivery_tenant_reads(const struct delivery_tenants *c)
{
    return c->reads;
}
