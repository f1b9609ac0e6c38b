/*
 * The shared upstream budget (see budget.h).
 *
 * Redis holds, per (corpid, API) and per API, a hash of the calls granted
 * in each fixed minute and hour window (<prefix>{<corpid>}:budget:<api>:
 * m<N> and h<N>, and <prefix>{api:<api>}:budget:m<N>, h<N>; fields all
 * and bg). The per-API budget counts every instance as one egress
 * address: right behind one NAT address, conservative otherwise. An
 * instance takes a block of calls at a time with one script that never
 * grants past a limit, and spends the block locally. A take needs a unit
 * of two leases (the tenant's for its class, and the API's); when one
 * leaves a quarter of its block or less, the next block is asked for in
 * the background and takes go on from what is left, so a hot key's takes
 * touch no Redis and wait for none. A take waits for a round trip only
 * when it finds no unit: the first of a key or of a minute, or one that
 * outran the refill (a block under four units is asked for only then).
 * A block is twice the last one when that lasted under a second, half
 * when over ten, at most 1/BUDGET_BLOCK_SHARE of a minute's budget.
 * "Spent" marks the lease refused until its window ends; units it still
 * holds were granted within the limit and are spent first. Windows are
 * numbered from the epoch by each instance's clock (keep clocks in
 * step); being fixed, up to twice a minute's budget can pass within a
 * few seconds around an edge. Units unspent when their window ends are
 * lost, which only ever errs low. The keys hold counts only and expire
 * two windows after their last use.
 *
 * A 45009 from WeCom sets {corpid}:budget:<api>:pause for 60 s, which the
 * lease script checks, and announces it on the change-notice channel so
 * instances holding a block stop at once. A 45033 halves what that
 * (corpid, API) may have under way in this process; calls over it are
 * refused at once (BUDGET_BUSY, errcode 45033) rather than queued, like a
 * spent budget. With Redis down every take is refused (fail closed),
 * units at hand or not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "budget.h"
#include "budget_window.h"
#include "errcodes.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "scripts.h"
#include "store.h"

#define MAX_ENTRIES_DEF 32768UL
/* least recently used entries looked at for one that can go */
#define EVICT_SCAN 32
/* Redis keys outlive their window by one more window */
#define TTL_MINUTE_MS (2 * BUDGET_MINUTE_MS)
#define TTL_HOUR_MS   (2 * BUDGET_HOUR_MS)
#define CORP_MAX      64

/* Why a take was refused; the metric's reason label. */
enum why {
    WHY_NONE,
    WHY_CORP_MINUTE,
    WHY_CORP_HOUR,
    WHY_API_MINUTE,
    WHY_API_HOUR,
    WHY_PAUSED,
    WHY_BUSY,
    WHY_UNAVAILABLE
};

static const char *const why_name[] = {
    "",         "corp_minute", "corp_hour", "api_minute",
    "api_hour", "paused",      "busy",      "unavailable",
};

static const char *const class_name[BUDGET__CLASSES] = {"service",
                                                        "background"};

struct take;

/* Takes waiting for a lease, first come first served. */
struct waitq {
    struct take *head, *tail;
    unsigned long n;
};

/* A lease, the takes waiting for it and its request under way. */
struct slot {
    struct budget_lease l;
    enum why spent_why; /* what refused_until stands for */
    struct waitq wq;
    int pending;
};

/*
 * One (corpid, API), or one API over every tenant (corp ""). A tenant
 * entry has a slot per class; an API entry uses slot 0 for both.
 */
struct entry {
    struct entry *hnext;
    struct entry *lprev, *lnext; /* most recently used first */
    struct slot slot[BUDGET__CLASSES];
    long long paused_until; /* monotonic ms */
    struct budget_conc conc;
    long inflight;   /* calls allowed and not yet reported */
    unsigned takes;  /* undecided takes pointing here */
    const char *api; /* in names, after corp */
    char corp[];     /* "<corpid>\0<api>\0" */
};

struct take {
    struct take *next;
    struct entry *ten, *api;
    enum budget_class cls;
    budget_cb *cb;
    void *arg;
    enum budget_result res;
    enum why why;
};

struct budget {
    struct event_base *base;
    struct store *st;
    char *prefix, *channel;
    long per_corp, per_corp_hour, per_api, per_api_hour;
    unsigned long max_entries, count;
    struct entry **tab;
    size_t nbuckets;
    struct entry *lru_head, *lru_tail;
    struct waitq ready; /* decided, callback not yet run */
    struct event *ready_ev;
    unsigned outstanding; /* Redis commands whose callback is due */
    int dispatching;
    int closing;
};

/* A lease request under way. */
struct lreq {
    struct budget *b;
    struct entry *e;
    struct slot *s;
    enum budget_class cls;
    long long window, hour;
};

static void decide(struct budget *b, struct take *t);
static void destroy(struct budget *b);

/*---- Names ----*/

long
budget_errcode(enum budget_result res)
{
    switch (res) {
    case BUDGET_OK:
        return 0;
    case BUDGET_SPENT:
    case BUDGET_PAUSED:
        return WECOM_ERR_FREQ_LIMIT;
    case BUDGET_BUSY:
        return WECOM_ERR_CONCURRENT_LIMIT;
    default:
        return -1;
    }
}

const char *
budget_result_name(enum budget_result res)
{
    static const char *const names[BUDGET__RESULTS] = {"ok", "spent", "paused",
                                                       "busy", "unavailable"};

    return (unsigned)res < BUDGET__RESULTS ? names[res] : "unknown";
}

/* WeCom's API names as the budget keys them: [A-Za-z0-9_/-], no space or
 * brace (they go into key names and notices). */
static int
api_ok(const char *s)
{
    size_t n;

    if (s == NULL || s[0] == '\0' || s[0] == '/')
        return 0;
    for (n = 0; s[n] != '\0'; n++) {
        if (n >= BUDGET_API_MAX)
            return 0;
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
              (s[n] >= '0' && s[n] <= '9') || s[n] == '_' || s[n] == '/' ||
              s[n] == '-'))
            return 0;
    }
    return 1;
}

/*---- The table of entries ----*/

static size_t
entry_hash(const struct budget *b, const char *corp, const char *api)
{
    unsigned long h = 2166136261UL;

    for (; *corp != '\0'; corp++)
        h = (h ^ (unsigned char)*corp) * 16777619UL;
    h = (h ^ ' ') * 16777619UL;
    for (; *api != '\0'; api++)
        h = (h ^ (unsigned char)*api) * 16777619UL;
    return (size_t)(h & (b->nbuckets - 1));
}

static void
lru_unlink(struct budget *b, struct entry *e)
{
    if (e->lprev != NULL)
        e->lprev->lnext = e->lnext;
    else
        b->lru_head = e->lnext;
    if (e->lnext != NULL)
        e->lnext->lprev = e->lprev;
    else
        b->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void
lru_front(struct budget *b, struct entry *e)
{
    e->lprev = NULL;
    e->lnext = b->lru_head;
    if (b->lru_head != NULL)
        b->lru_head->lprev = e;
    b->lru_head = e;
    if (b->lru_tail == NULL)
        b->lru_tail = e;
}

/* In use: something under way would come back to it. */
static int
entry_pinned(const struct entry *e)
{
    size_t i;

    if (e->inflight > 0 || e->takes > 0)
        return 1;
    for (i = 0; i < BUDGET__CLASSES; i++)
        if (e->slot[i].pending || e->slot[i].wq.n > 0)
            return 1;
    return 0;
}

/* Forgetting an entry loses nothing that matters: Redis keeps the counts
 * and the pause, and units it held only err low. */
static void
entry_remove(struct budget *b, struct entry *e)
{
    struct entry **pp = &b->tab[entry_hash(b, e->corp, e->api)];

    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(b, e);
    b->count--;
    brk_free(e);
}

static void
evict_one(struct budget *b)
{
    struct entry *e = b->lru_tail;
    int n;

    /* entries in use are recent; when every one scanned is in use the
     * table grows past max_entries by no more than the work under way */
    for (n = 0; e != NULL && n < EVICT_SCAN; n++, e = e->lprev) {
        if (!entry_pinned(e)) {
            entry_remove(b, e);
            return;
        }
    }
}

/* The entry of (corp, api) (corp "" for the API's own), made when create
 * is set; NULL when absent or out of memory. */
static struct entry *
entry_get(struct budget *b, const char *corp, const char *api, int create)
{
    size_t h = entry_hash(b, corp, api), i, clen = strlen(corp);
    size_t alen = strlen(api);
    struct entry *e;

    for (e = b->tab[h]; e != NULL; e = e->hnext) {
        if (strcmp(e->corp, corp) == 0 && strcmp(e->api, api) == 0) {
            lru_unlink(b, e);
            lru_front(b, e);
            return e;
        }
    }
    if (!create)
        return NULL;
    if (b->count >= b->max_entries)
        evict_one(b);
    e = brk_calloc(1, sizeof(*e) + clen + alen + 2);
    if (e == NULL)
        return NULL;
    for (i = 0; i < BUDGET__CLASSES; i++)
        budget_lease_init(&e->slot[i].l);
    budget_conc_init(&e->conc);
    memcpy(e->corp, corp, clen + 1);
    memcpy(e->corp + clen + 1, api, alen + 1);
    e->api = e->corp + clen + 1;
    e->hnext = b->tab[h];
    b->tab[h] = e;
    lru_front(b, e);
    b->count++;
    return e;
}

/*---- Deciding ----*/

static void
waitq_push(struct waitq *q, struct take *t)
{
    t->next = NULL;
    if (q->tail != NULL)
        q->tail->next = t;
    else
        q->head = t;
    q->tail = t;
    q->n++;
}

static struct take *
waitq_pop(struct waitq *q)
{
    struct take *t = q->head;

    if (t == NULL)
        return NULL;
    q->head = t->next;
    if (q->head == NULL)
        q->tail = NULL;
    q->n--;
    t->next = NULL;
    return t;
}

/* The take is decided; its callback runs from the event loop. */
static void
finish(struct budget *b, struct take *t, enum budget_result res, enum why why)
{
    t->ten->takes--;
    t->api->takes--;
    t->res = res;
    t->why = why;
    if (b->ready.head == NULL)
        event_active(b->ready_ev, EV_TIMEOUT, 0);
    waitq_push(&b->ready, t);
}

static void
on_ready(evutil_socket_t fd, short what, void *arg)
{
    struct budget *b = arg;
    struct waitq q = b->ready;
    char labels[96];
    struct take *t;

    (void)fd;
    (void)what;
    memset(&b->ready, 0, sizeof(b->ready));
    b->dispatching++;
    while ((t = waitq_pop(&q)) != NULL) {
        if (b->closing) {
            /* budget_free ran from an earlier callback */
            t->res = BUDGET_UNAVAILABLE;
            t->why = WHY_UNAVAILABLE;
        }
        if (t->res == BUDGET_OK)
            metrics_inc(METRICS_BUDGET_GRANTS,
                        metrics_labels(labels, sizeof(labels), "class",
                                       class_name[t->cls], NULL));
        else
            metrics_inc(METRICS_BUDGET_REFUSALS,
                        metrics_labels(labels, sizeof(labels), "class",
                                       class_name[t->cls], "reason",
                                       why_name[t->why], NULL));
        t->cb(t->res, t->arg);
        brk_free(t);
    }
    if (--b->dispatching == 0 && b->closing && b->outstanding == 0)
        destroy(b);
}

static void on_lease(enum brk_err err, struct redisReply *r, void *arg);

/* Ask Redis for a block of slot s of entry e (a tenant's when cls is
 * given, else the API's). Returns nonzero when it cannot be sent. */
static int
lease_request(struct budget *b, struct entry *e, struct slot *s,
              enum budget_class cls, long long wall)
{
    char km[KEYS_MAX], kh[KEYS_MAX], kp[KEYS_MAX], wm[32], wh[32];
    char a_want[24], a_lm[24], a_lh[24], a_cm[24], a_ch[24], a_tm[24], a_th[24],
        a_pause[24];
    const char *argv[15];
    struct lreq *rq;
    long lm, lh, limit;
    int tenant = e->corp[0] != '\0';
    enum brk_err err;

    rq = brk_calloc(1, sizeof(*rq));
    if (rq == NULL)
        return -1;
    rq->b = b;
    rq->e = e;
    rq->s = s;
    rq->cls = cls;
    rq->window = budget_window_of(wall, BUDGET_MINUTE_MS);
    rq->hour = budget_window_of(wall, BUDGET_HOUR_MS);
    snprintf(wm, sizeof(wm), "m%lld", rq->window);
    snprintf(wh, sizeof(wh), "h%lld", rq->hour);
    if (tenant) {
        lm = b->per_corp;
        lh = b->per_corp_hour;
        err = keys_budget_corp(km, sizeof(km), b->prefix, e->corp, e->api, wm);
        if (!err)
            err = keys_budget_corp(kh, sizeof(kh), b->prefix, e->corp, e->api,
                                   wh);
        if (!err)
            err = keys_budget_corp(kp, sizeof(kp), b->prefix, e->corp, e->api,
                                   "pause");
    } else {
        lm = b->per_api;
        lh = b->per_api_hour;
        err = keys_budget_api(km, sizeof(km), b->prefix, e->api, wm);
        if (!err)
            err = keys_budget_api(kh, sizeof(kh), b->prefix, e->api, wh);
        if (!err)
            err = keys_budget_api(kp, sizeof(kp), b->prefix, e->api, "pause");
    }
    if (err) {
        brk_free(rq);
        return -1;
    }
    limit = tenant ? budget_class_limit(lm, cls) : lm;
    snprintf(a_want, sizeof(a_want), "%ld",
             budget_lease_want(&s->l, limit, s->wq.n));
    snprintf(a_lm, sizeof(a_lm), "%ld", lm);
    snprintf(a_lh, sizeof(a_lh), "%ld", lh);
    snprintf(a_cm, sizeof(a_cm), "%ld", budget_class_limit(lm, cls));
    snprintf(a_ch, sizeof(a_ch), "%ld", budget_class_limit(lh, cls));
    snprintf(a_tm, sizeof(a_tm), "%lld", TTL_MINUTE_MS);
    snprintf(a_th, sizeof(a_th), "%lld", TTL_HOUR_MS);
    snprintf(a_pause, sizeof(a_pause), "%d", BUDGET_PAUSE_MS);
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_BUDGET_LEASE);
    argv[2] = "3";
    argv[3] = km;
    argv[4] = kh;
    argv[5] = kp;
    argv[6] = a_want;
    argv[7] = a_lm;
    argv[8] = a_lh;
    argv[9] = tenant && cls == BUDGET_BACKGROUND ? "1" : "0";
    argv[10] = a_cm;
    argv[11] = a_ch;
    argv[12] = a_tm;
    argv[13] = a_th;
    argv[14] = a_pause;
    if (store_cmd_argv(b->st, on_lease, rq, 15, argv, NULL) != BRK_OK) {
        brk_free(rq);
        return -1;
    }
    s->pending = 1;
    b->outstanding++;
    return 0;
}

/* Every take waiting on s is refused. */
static void
fail_waiters(struct budget *b, struct slot *s, enum budget_result res,
             enum why why)
{
    struct take *t;

    while ((t = waitq_pop(&s->wq)) != NULL)
        finish(b, t, res, why);
}

/* What is left of s's units for window win is low and nothing stops
 * asking: ask for the next block now, while takes go on from what is left
 * (a failure to send leaves them to the waiting path). */
static void
refill_ahead(struct budget *b, struct entry *e, struct slot *s,
             enum budget_class cls, long long win, long long wall)
{
    if (s->pending || budget_lease_refused(&s->l, wall) ||
        !budget_lease_low(&s->l, win))
        return;
    (void)lease_request(b, e, s, cls, wall);
}

/*
 * Decide t now if the local state allows (a refusal, or a unit of both
 * its leases at hand), else queue it on the first lease it lacks and make
 * sure a request for that lease is under way. A unit at hand is spent
 * even when a refusal came since it was granted: it was within the limit.
 */
static void
decide(struct budget *b, struct take *t)
{
    struct slot *ts = &t->ten->slot[t->cls], *as = &t->api->slot[0], *s;
    long long mono = brk_mono_ms(), wall = brk_wall_ms(), win;
    long allowed;

    if (!store_is_up(b->st)) {
        finish(b, t, BUDGET_UNAVAILABLE, WHY_UNAVAILABLE);
        return;
    }
    if (t->ten->paused_until > mono || t->api->paused_until > mono) {
        finish(b, t, BUDGET_PAUSED, WHY_PAUSED);
        return;
    }
    win = budget_window_of(wall, BUDGET_MINUTE_MS);
    if (budget_lease_spent(&ts->l, win, wall)) {
        finish(b, t, BUDGET_SPENT, ts->spent_why);
        return;
    }
    if (budget_lease_spent(&as->l, win, wall)) {
        finish(b, t, BUDGET_SPENT, as->spent_why);
        return;
    }
    allowed = budget_conc_allowed(&t->ten->conc, mono);
    if (allowed > 0 && t->ten->inflight >= allowed) {
        finish(b, t, BUDGET_BUSY, WHY_BUSY);
        return;
    }
    if (budget_lease_has(&ts->l, win) && budget_lease_has(&as->l, win)) {
        budget_lease_spend(&ts->l, win);
        budget_lease_spend(&as->l, win);
        t->ten->inflight++;
        refill_ahead(b, t->ten, ts, t->cls, win, wall);
        refill_ahead(b, t->api, as, t->cls, win, wall);
        finish(b, t, BUDGET_OK, WHY_NONE);
        return;
    }
    s = budget_lease_has(&ts->l, win) ? as : ts;
    waitq_push(&s->wq, t);
    if (s->pending)
        return;
    if (lease_request(b, s == ts ? t->ten : t->api, s, t->cls, wall) != 0)
        fail_waiters(b, s, BUDGET_UNAVAILABLE, WHY_UNAVAILABLE);
}

static void
count_lease(const struct entry *e, const char *result)
{
    char labels[96];

    metrics_inc(METRICS_BUDGET_LEASES,
                metrics_labels(labels, sizeof(labels), "scope",
                               e->corp[0] != '\0' ? "corp" : "api", "result",
                               result, NULL));
}

static void
on_lease(enum brk_err err, struct redisReply *r, void *arg)
{
    struct lreq *rq = arg;
    struct budget *b = rq->b;
    struct entry *e = rq->e;
    struct slot *s = rq->s;
    long long window = rq->window, hour = rq->hour, got, why, pause_ms;
    enum budget_class cls = rq->cls;
    int tenant = e->corp[0] != '\0';
    struct waitq q;
    struct take *t;

    brk_free(rq);
    b->outstanding--;
    s->pending = 0;
    if (b->closing) {
        if (b->outstanding == 0 && !b->dispatching)
            destroy(b);
        return;
    }
    if (!err && (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
                 r->element[0]->type != REDIS_REPLY_INTEGER ||
                 r->element[1]->type != REDIS_REPLY_INTEGER ||
                 r->element[2]->type != REDIS_REPLY_INTEGER ||
                 (r->element[0]->integer <= 0 && r->element[1]->integer == 0)))
        err = BRK_ERR_STORE;
    if (err) {
        log_warn("budget: %s %s: no lease (%s)", tenant ? e->corp : "*", e->api,
                 brk_strerror(err));
        count_lease(e, "error");
        fail_waiters(b, s, BUDGET_UNAVAILABLE, WHY_UNAVAILABLE);
        return;
    }
    got = r->element[0]->integer;
    why = r->element[1]->integer;
    pause_ms = r->element[2]->integer;
    if (why == 3) {
        count_lease(e, "paused");
        if (pause_ms > BUDGET_PAUSE_MS)
            pause_ms = BUDGET_PAUSE_MS;
        if (brk_mono_ms() + pause_ms > e->paused_until)
            e->paused_until = brk_mono_ms() + pause_ms;
    } else if (why == 1 || why == 2) {
        count_lease(e, "spent");
        /* counts only grow within a window: spent until it ends */
        budget_lease_refuse(
            &s->l, why == 1 ? budget_window_end(window, BUDGET_MINUTE_MS)
                            : budget_window_end(hour, BUDGET_HOUR_MS));
        s->spent_why = tenant ? (why == 1 ? WHY_CORP_MINUTE : WHY_CORP_HOUR)
                              : (why == 1 ? WHY_API_MINUTE : WHY_API_HOUR);
    } else if (got > 0) {
        count_lease(e, "granted");
        budget_lease_granted(&s->l, window, (long)got,
                             tenant ? budget_class_limit(b->per_corp, cls)
                                    : b->per_api,
                             brk_mono_ms());
    }
    /* decide again in order; a take still short queues again and, when
     * the grant fell short of the queue, asks for another block */
    q = s->wq;
    memset(&s->wq, 0, sizeof(s->wq));
    while ((t = waitq_pop(&q)) != NULL)
        decide(b, t);
}

/*---- Lifetime ----*/

static void
destroy(struct budget *b)
{
    struct entry *e, *next;

    for (e = b->lru_head; e != NULL; e = next) {
        next = e->lnext;
        brk_free(e);
    }
    if (b->ready_ev != NULL)
        event_free(b->ready_ev);
    brk_free(b->tab);
    brk_free(b->prefix);
    brk_free(b->channel);
    brk_free(b);
}

/*
 * Create the budget: opts' limits must be >= 1 and its strings non-empty
 * (they are copied). Returns BRK_OK, BRK_ERR_INVAL or BRK_ERR_NOMEM.
 * base and st are borrowed and must outlive the budget. *out is owned:
 * budget_free.
 */
enum brk_err
budget_new(struct event_base *base, struct store *st,
           const struct budget_opts *opts, struct budget **out)
{
    struct budget *b = NULL;
    enum brk_err err = BRK_ERR_NOMEM;
    size_t n;

    if (base == NULL || st == NULL || opts == NULL || out == NULL ||
        opts->key_prefix == NULL || opts->key_prefix[0] == '\0' ||
        opts->channel == NULL || opts->channel[0] == '\0' ||
        opts->per_corp < 1 || opts->per_corp_hour < 1 || opts->per_api < 1 ||
        opts->per_api_hour < 1)
        return BRK_ERR_INVAL;
    b = brk_calloc(1, sizeof(*b));
    if (b == NULL)
        return BRK_ERR_NOMEM;
    b->base = base;
    b->st = st;
    b->per_corp = opts->per_corp;
    b->per_corp_hour = opts->per_corp_hour;
    b->per_api = opts->per_api;
    b->per_api_hour = opts->per_api_hour;
    b->max_entries = opts->max_entries ? opts->max_entries : MAX_ENTRIES_DEF;
    for (n = 64; n < b->max_entries / 2 && n < (1UL << 20); n *= 2)
        ;
    b->nbuckets = n;
    b->tab = brk_calloc(n, sizeof(*b->tab));
    b->prefix = brk_strdup(opts->key_prefix);
    b->channel = brk_strdup(opts->channel);
    b->ready_ev = event_new(base, -1, 0, on_ready, b);
    if (b->tab == NULL || b->prefix == NULL || b->channel == NULL ||
        b->ready_ev == NULL)
        goto out;
    *out = b;
    b = NULL;
    err = BRK_OK;
out:
    if (b != NULL)
        destroy(b);
    return err;
}

/*
 * Refuse every take not yet answered (BUDGET_UNAVAILABLE, from in here)
 * and free the budget; the memory goes when the last Redis reply due
 * arrives (store_free delivers them). budget_report must not be called
 * after this. NULL is a no-op.
 */
void
budget_free(struct budget *b)
{
    struct entry *e;
    struct take *t;
    size_t i;

    if (b == NULL || b->closing)
        return;
    b->closing = 1;
    for (e = b->lru_head; e != NULL; e = e->lnext)
        for (i = 0; i < BUDGET__CLASSES; i++)
            while ((t = waitq_pop(&e->slot[i].wq)) != NULL)
                finish(b, t, BUDGET_UNAVAILABLE, WHY_UNAVAILABLE);
    b->dispatching++;
    while ((t = waitq_pop(&b->ready)) != NULL) {
        t->cb(BUDGET_UNAVAILABLE, t->arg);
        brk_free(t);
    }
    if (--b->dispatching == 0 && b->outstanding == 0)
        destroy(b);
}

/*---- The interface ----*/

/*
 * Ask for one call of api for corpid (see budget.h). Both strings are
 * copied. Returns BRK_OK (cb then runs exactly once, from the event
 * loop), BRK_ERR_INVAL, BRK_ERR_NOMEM or BRK_ERR_SHUTDOWN (cb never runs).
 */
enum brk_err
budget_take(struct budget *b, const char *corpid, const char *api,
            enum budget_class cls, budget_cb *cb, void *arg)
{
    struct take *t;

    if (b == NULL || cb == NULL || !keys_id_ok(corpid) || !api_ok(api) ||
        (cls != BUDGET_SERVICE && cls != BUDGET_BACKGROUND))
        return BRK_ERR_INVAL;
    if (b->closing)
        return BRK_ERR_SHUTDOWN;
    t = brk_calloc(1, sizeof(*t));
    if (t == NULL)
        return BRK_ERR_NOMEM;
    t->cls = cls;
    t->cb = cb;
    t->arg = arg;
    /* each entry is held (takes) before the next one is made: making
     * one may evict another */
    t->api = entry_get(b, "", api, 1);
    if (t->api == NULL) {
        brk_free(t);
        return BRK_ERR_NOMEM;
    }
    t->api->takes++;
    t->ten = entry_get(b, corpid, api, 1);
    if (t->ten == NULL) {
        t->api->takes--;
        brk_free(t);
        return BRK_ERR_NOMEM;
    }
    t->ten->takes++;
    decide(b, t);
    return BRK_OK;
}

static void
on_pause_sent(enum brk_err err, struct redisReply *r, void *arg)
{
    struct budget *b = arg;

    (void)r;
    if (err && err != BRK_ERR_SHUTDOWN)
        log_warn("budget: pause not shared (%s)", brk_strerror(err));
    b->outstanding--;
    if (b->closing && b->outstanding == 0 && !b->dispatching)
        destroy(b);
}

/* Pause (corpid, api) here and, through Redis, on every instance. */
static void
pause_everywhere(struct budget *b, struct entry *e)
{
    char key[KEYS_MAX], ms[24], msg[CORP_MAX + BUDGET_API_MAX + 64];
    const char *argv[7];
    size_t i;

    e->paused_until = brk_mono_ms() + BUDGET_PAUSE_MS;
    for (i = 0; i < BUDGET__CLASSES; i++)
        budget_lease_drop(&e->slot[i].l);
    snprintf(ms, sizeof(ms), "%d", BUDGET_PAUSE_MS);
    snprintf(msg, sizeof(msg), BUDGET_NOTICE_PREFIX "pause %s %s %d", e->corp,
             e->api, BUDGET_PAUSE_MS);
    if (keys_budget_corp(key, sizeof(key), b->prefix, e->corp, e->api,
                         "pause") != BRK_OK)
        return;
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_BUDGET_PAUSE);
    argv[2] = "1";
    argv[3] = key;
    argv[4] = ms;
    argv[5] = b->channel;
    argv[6] = msg;
    if (store_cmd_argv(b->st, on_pause_sent, b, 7, argv, NULL) != BRK_OK) {
        log_warn("budget: %s %s: pause not shared (Redis unavailable)", e->corp,
                 e->api);
        return;
    }
    b->outstanding++;
}

/*
 * The end of a call budget_take allowed (see budget.h). Unknown corpid or
 * api are ignored. Cannot fail.
 */
void
budget_report(struct budget *b, const char *corpid, const char *api,
              long wecom_errcode)
{
    char labels[BUDGET_API_MAX + 16];
    struct entry *e;
    long was;

    if (b == NULL || b->closing || !keys_id_ok(corpid) || !api_ok(api))
        return;
    e = entry_get(b, corpid, api,
                  wecom_errcode == WECOM_ERR_FREQ_LIMIT ||
                      wecom_errcode == WECOM_ERR_CONCURRENT_LIMIT);
    if (e == NULL)
        return;
    was = e->inflight;
    if (e->inflight > 0)
        e->inflight--;
    if (wecom_errcode == WECOM_ERR_FREQ_LIMIT) {
        log_warn("budget: WeCom answered 45009 for %s %s: paused %d s on "
                 "every instance",
                 corpid, api, BUDGET_PAUSE_MS / 1000);
        metrics_inc(METRICS_BUDGET_PAUSES,
                    metrics_labels(labels, sizeof(labels), "api", api, NULL));
        pause_everywhere(b, e);
    } else if (wecom_errcode == WECOM_ERR_CONCURRENT_LIMIT) {
        budget_conc_lower(&e->conc, was > 0 ? was : 1, brk_mono_ms());
        log_warn("budget: WeCom answered 45033 for %s %s: at most %ld at "
                 "once here",
                 corpid, api, budget_conc_allowed(&e->conc, brk_mono_ms()));
        metrics_inc(METRICS_BUDGET_CONCURRENCY,
                    metrics_labels(labels, sizeof(labels), "api", api, NULL));
    }
}

/*
 * "budget pause <corpid> <api> <ms>" from the change-notice channel: an
 * instance got 45009. Only entries this instance has are paused (one
 * without an entry holds no block and asks Redis, which has the pause).
 * Anything else is ignored. Cannot fail.
 */
void
budget_notice(struct budget *b, const char *msg, size_t len)
{
    char buf[CORP_MAX + BUDGET_API_MAX + 64], corp[CORP_MAX + 1],
        api[BUDGET_API_MAX + 1], *end;
    const char *p, *sp;
    struct entry *e;
    long long ms;
    size_t n, plen = strlen(BUDGET_NOTICE_PREFIX "pause ");

    if (b == NULL || b->closing || len >= sizeof(buf) || len < plen ||
        memcmp(msg, BUDGET_NOTICE_PREFIX "pause ", plen) != 0)
        return;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    p = buf + plen;
    sp = strchr(p, ' ');
    if (sp == NULL || (n = (size_t)(sp - p)) == 0 || n > CORP_MAX)
        return;
    memcpy(corp, p, n);
    corp[n] = '\0';
    p = sp + 1;
    sp = strchr(p, ' ');
    if (sp == NULL || (n = (size_t)(sp - p)) == 0 || n > BUDGET_API_MAX)
        return;
    memcpy(api, p, n);
    api[n] = '\0';
    ms = strtoll(sp + 1, &end, 10);
    if (*end != '\0' || end == sp + 1 || ms <= 0 || ms > BUDGET_PAUSE_MS ||
        !keys_id_ok(corp) || !api_ok(api))
        return;
    e = entry_get(b, corp, api, 0);
    if (e == NULL)
        return;
    if (brk_mono_ms() + ms > e->paused_until)
        e->paused_until = brk_mono_ms() + ms;
    for (n = 0; n < BUDGET__CLASSES; n++)
        budget_lease_drop(&e->slot[n].l);
}

/*
 * Drop every block held, so the next take of each asks Redis (and sees a
 * pause announced while notices were not heard). Cannot fail.
 */
void
budget_reset(struct budget *b)
{
    struct entry *e;
    size_t i;

    if (b == NULL)
        return;
    for (e = b->lru_head; e != NULL; e = e->lnext)
        for (i = 0; i < BUDGET__CLASSES; i++)
            budget_lease_drop(&e->slot[i].l);
}

/* Entries in the table: at most max_entries, plus those in use when the
 * table was full. Cannot fail. */
unsigned long
budget_entries(const struct budget *b)
{
    return b != NULL ? b->count : 0;
}
