/*
 * Event delivery to services (see delivery.h): the queue engine. Every
 * (service, tenant) pair has its own queue; this instance lists the
 * services, claims ready queues under a lease, and works each as a lane,
 * head first, reading ahead a batch of entries. Which services get an
 * event is delivery_route.c's; sending the head entry, its retries and
 * dead letters are delivery_send.c's; delivery_int.h lists what they share.
 *
 * The callback chains run here, in order:
 *   purge:   delivery_purge_tenant -> on_purge_members -> on_purge_one ->
 *            purge_settle
 *   sending: on_tick -> services_list -> on_services -> svc_load ->
 *            on_svc_record (two) -> [datakey_load -> on_svc_dk] ->
 *            svc_claim -> on_claimed -> lane_start ->
 *            delivery_lane_next_after -> on_head -> delivery_lane_send
 *            (delivery_send.c), which ends in one of
 *              delivery_lane_ack -> delivery_lane_next_after -> on_head
 *                (acknowledged in the same script that reads the next
 *                entries)
 *              delivery_lane_backoff -> on_lane_given (the lane ends)
 *            on_head (empty) -> lane_release -> on_lane_given
 *   a lane's lease: on_refresh_timer -> on_refreshed
 */
#include "delivery_int.h"

#define TICK_MS             100  /* how often ready queues are looked for */
#define SERVICES_MS         1000 /* how often the services are read again */
#define BACKLOG_MS          5000 /* how often the backlog gauges are computed */
#define LEASE_MS            30000 /* a (service, tenant) lease; > a send */
#define REFRESH_MS          10000 /* a lane renews its lease this often */
#define CLAIM_MAX           16
#define BACKLOG_PEEK        1000 /* tenants counted per service and round */
#define UNDECODABLE_WAIT_MS 5000
#define STALE_WAIT_MS       200 /* a service read before its entry was queued */
/* the decoded tenants kept for sending (delivery_tenant.h) */
#define TENANTS_MAX       256
#define TENANTS_MAX_BYTES ((size_t)256 << 20)

static long long
now_ms(void)
{
    return brk_wall_ms();
}

/* EVAL script id with keys then args; at most 64 arguments. */
enum brk_err
delivery_eval(struct delivery *d, store_reply_cb *cb, void *arg,
              enum script_id id, const char *const *keys, int nkeys,
              const char *const *args, size_t nargs)
{
    const char *argv[64];
    char n[8];
    int argc = 0, i;
    size_t a;

    if (3 + (size_t)nkeys + nargs > nitems(argv))
        return BRK_ERR_TOOBIG;
    snprintf(n, sizeof(n), "%d", nkeys);
    argv[argc++] = "EVAL";
    argv[argc++] = scripts_text(id);
    argv[argc++] = n;
    for (i = 0; i < nkeys; i++)
        argv[argc++] = keys[i];
    for (a = 0; a < nargs; a++)
        argv[argc++] = args[a];
    return store_cmd_argv(d->st, cb, arg, argc, argv, NULL);
}

/*---- Purge ----*/

struct purge {
    struct delivery *d;
    char member[DELIVERY_MEMBER_MAX + 1];
    delivery_purged_cb *cb;
    void *arg;
    unsigned pending;
    enum brk_err err;
    long long removed;
};

static void
purge_settle(struct purge *p, enum brk_err err)
{
    if (err && p->err == BRK_OK)
        p->err = err;
    if (--p->pending == 0) {
        delivery_purged_cb *cb = p->cb;
        void *arg = p->arg;
        long long n = p->removed;

        err = p->err;
        brk_free(p);
        cb(err, n, arg);
    }
}

static void
on_purge_one(enum brk_err err, struct redisReply *r, void *arg)
{
    struct purge *p = arg;

    if (!err && r->type == REDIS_REPLY_INTEGER)
        p->removed += r->integer;
    else if (!err)
        err = BRK_ERR_STORE;
    purge_settle(p, err);
}

static void
on_purge_members(enum brk_err err, struct redisReply *r, void *arg)
{
    struct purge *p = arg;
    struct delivery_keys k;
    const char *keys[7];
    size_t i;

    p->pending = 1;
    if (err || r->type != REDIS_REPLY_ARRAY) {
        purge_settle(p, err ? err : BRK_ERR_STORE);
        return;
    }
    for (i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];

        if (e->type != REDIS_REPLY_STRING ||
            delivery_keys_member(&k, p->d->cfg->key_prefix, e->str, p->member))
            continue;
        keys[0] = k.q;
        keys[1] = k.qa;
        keys[2] = k.dead;
        keys[3] = k.ready;
        keys[4] = k.lease;
        keys[5] = k.seq;
        keys[6] = k.tenants;
        p->pending++;
        err = delivery_eval(p->d, on_purge_one, p, SCRIPT_DLV_PURGE, keys, 7,
                            (const char *const[]){p->member}, 1);
        if (err) {
            p->pending--;
            if (p->err == BRK_OK)
                p->err = err;
            break;
        }
    }
    purge_settle(p, BRK_OK);
}

enum brk_err
delivery_purge_tenant(struct delivery *d, const char *suite, const char *corp,
                      delivery_purged_cb *cb, void *arg)
{
    struct purge *p;
    char key[KEYS_MAX];
    const char *argv[2];
    enum brk_err err;

    if (d == NULL || cb == NULL || !keys_id_ok(suite) || !keys_id_ok(corp))
        return BRK_ERR_INVAL;
    if (keys_services(key, sizeof(key), d->cfg->key_prefix))
        return BRK_ERR_TOOBIG;
    p = brk_calloc(1, sizeof(*p));
    if (p == NULL)
        return BRK_ERR_NOMEM;
    p->d = d;
    snprintf(p->member, sizeof(p->member), "%s:%s", suite, corp);
    p->cb = cb;
    p->arg = arg;
    argv[0] = "SMEMBERS";
    argv[1] = key;
    err = store_cmd_argv(d->st, on_purge_members, p, 2, argv, NULL);
    if (err)
        brk_free(p);
    return err;
}

/*---- Services: the ones whose queues this instance sends ----*/

static void svc_claim(struct dsvc *s);

/* The service's name for logs, metrics and the audit (borrowed). */
const char *
delivery_svc_name(const struct dsvc *s)
{
    return s->rec != NULL ? s->rec->name : s->id;
}

static struct dsvc *
svc_find(struct delivery *d, const char *id)
{
    struct dsvc *s;

    for (s = d->svcs; s != NULL; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static void
svc_set_state(struct dsvc *s, int state, struct record_service *rec,
              const struct record_delivery *dlv)
{
    record_service_unref(s->rec);
    s->rec = rec;
    s->gen++;
    s->have_dlv = dlv != NULL;
    if (dlv != NULL)
        s->dlv = *dlv;
    s->state = state;
    s->loaded_ms = now_ms();
}

static void
on_svc_dk(enum brk_err err, const unsigned char *dk, void *arg)
{
    struct dsvc *s = arg;
    char ctx[KEYS_MAX + 16];
    char *token = NULL, *key = NULL;
    size_t tlen = 0, klen = 0;
    struct wecom_crypto *c = NULL;

    s->loading = 0;
    if (err) {
        if (err != BRK_ERR_SHUTDOWN)
            log_warn("delivery: service %s: its data key does not load (%s)",
                     delivery_svc_name(s), brk_strerror(err));
        s->state = -2;
        return;
    }
    if (keys_seal_ctx(ctx, sizeof(ctx), s->k.dlv, "token") ||
        keyring_open(dk, ctx, s->dlv.token, strlen(s->dlv.token), &token,
                     &tlen) ||
        keys_seal_ctx(ctx, sizeof(ctx), s->k.dlv, "key") ||
        keyring_open(dk, ctx, s->dlv.key, strlen(s->dlv.key), &key, &klen) ||
        wecom_crypto_new(token, key, &c)) {
        log_warn("delivery: service %s: its callback token or key does not "
                 "open; nothing is sent to it",
                 delivery_svc_name(s));
        s->state = -2;
    } else {
        wecom_crypto_free(s->crypto);
        s->crypto = c;
        memcpy(s->crypto_token, s->dlv.token, strlen(s->dlv.token) + 1);
        s->state = 1;
    }
    if (token != NULL)
        brk_free_secret(token, tlen);
    if (key != NULL)
        brk_free_secret(key, klen);
}

/* Both records are in (svc_reply then r): decide what the service is. */
static void
svc_loaded(struct dsvc *s, const redisReply *svc_reply, const redisReply *r)
{
    struct delivery *d = s->d;
    struct record_service *rec = NULL;
    struct record_delivery dlv;
    char ctx[80];
    enum brk_err err;

    err = record_service_decode(s->id, svc_reply, &rec);
    if (err == BRK_OK)
        err = record_delivery_decode(r, &dlv);
    if (err == BRK_ERR_NOTFOUND ||
        (err == BRK_OK && (rec->revoked || !dlv.on))) {
        svc_set_state(s, -1, rec, NULL);
        s->loading = 0;
        return;
    }
    if (err) {
        if (s->state != -2)
            log_warn("delivery: service %s: its record does not decode (%s); "
                     "its queues wait",
                     s->id, brk_strerror(err));
        record_service_unref(rec);
        svc_set_state(s, -2, NULL, NULL);
        s->loading = 0;
        return;
    }
    svc_set_state(s, 0, rec, &dlv);
    if (s->crypto != NULL && strcmp(s->crypto_token, dlv.token) == 0) {
        s->state = 1;
        s->loading = 0;
        return;
    }
    if (delivery_dk_context(ctx, sizeof(ctx), s->id) ||
        datakey_load(d->st, d->kr, s->k.dk, ctx, 0, on_svc_dk, s) != BRK_OK) {
        s->state = -2;
        s->loading = 0;
    }
}

static void
on_svc_record(enum brk_err err, struct redisReply *r, void *arg)
{
    struct dsvc *s = arg;

    if (err || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        s->loading = 0;
        return;
    }
    svc_loaded(s, r->element[0], r->element[1]);
}

/* Read the service and its delivery setting again. */
static void
svc_load(struct dsvc *s)
{
    struct delivery *d = s->d;
    char ksvc[KEYS_MAX];
    const char *keys[2] = {ksvc, s->k.dlv};

    if (s->loading ||
        keys_service(ksvc, sizeof(ksvc), d->cfg->key_prefix, s->id, NULL))
        return;
    s->loading = 1;
    if (delivery_eval(d, on_svc_record, s, SCRIPT_DLV_READ, keys, 2, NULL, 0))
        s->loading = 0;
}

static void
on_services(enum brk_err err, struct redisReply *r, void *arg)
{
    struct delivery *d = arg;
    struct dsvc *s;
    size_t i;

    d->listing = 0;
    if (err || r->type != REDIS_REPLY_ARRAY || d->stopping)
        return;
    for (s = d->svcs; s != NULL; s = s->next)
        s->listed = 0;
    for (i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];

        if (e->type != REDIS_REPLY_STRING || e->len != SERVICE_ID_LEN)
            continue;
        s = svc_find(d, e->str);
        if (s == NULL && d->nsvcs < MAX_SERVICES) {
            s = brk_calloc(1, sizeof(*s));
            if (s == NULL)
                continue;
            if (delivery_keys(&s->k, d->cfg->key_prefix, e->str, NULL, NULL)) {
                brk_free(s);
                continue;
            }
            s->d = d;
            memcpy(s->id, e->str, SERVICE_ID_LEN + 1);
            s->next = d->svcs;
            d->svcs = s;
            d->nsvcs++;
        }
        if (s != NULL)
            s->listed = 1;
    }
    for (s = d->svcs; s != NULL; s = s->next)
        if (s->listed)
            svc_load(s);
}

static void
services_list(struct delivery *d)
{
    char key[KEYS_MAX];
    const char *argv[2];

    if (d->listing || keys_services(key, sizeof(key), d->cfg->key_prefix))
        return;
    argv[0] = "SMEMBERS";
    argv[1] = key;
    if (store_cmd_argv(d->st, on_services, d, 2, argv, NULL) == BRK_OK)
        d->listing = 1;
}

/*---- Backlog gauges ----*/

struct backlog {
    struct dsvc *s;
    unsigned pending;
    long long n;
};

static void
backlog_settle(struct backlog *b)
{
    char labels[160];

    if (--b->pending > 0)
        return;
    b->s->backlog = b->n;
    metrics_set(METRICS_DELIVERY_BACKLOG,
                metrics_labels(labels, sizeof(labels), "service",
                               delivery_svc_name(b->s), NULL),
                (double)b->n);
    brk_free(b);
}

static void
on_backlog_len(enum brk_err err, struct redisReply *r, void *arg)
{
    struct backlog *b = arg;

    if (!err && r->type == REDIS_REPLY_INTEGER)
        b->n += r->integer;
    backlog_settle(b);
}

static void
on_backlog_tenants(enum brk_err err, struct redisReply *r, void *arg)
{
    struct backlog *b = arg;
    struct delivery_keys k;
    const char *argv[2];
    size_t i;

    b->pending = 1;
    for (i = 0; !err && r->type == REDIS_REPLY_ARRAY && i < r->elements &&
                i < BACKLOG_PEEK;
         i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING ||
            delivery_keys_member(&k, b->s->d->cfg->key_prefix, b->s->id,
                                 r->element[i]->str))
            continue;
        argv[0] = "XLEN";
        argv[1] = k.q;
        b->pending++;
        if (store_cmd_argv(b->s->d->st, on_backlog_len, b, 2, argv, NULL)) {
            b->pending--;
            break;
        }
    }
    backlog_settle(b);
}

static void
backlog_measure(struct dsvc *s)
{
    struct backlog *b;
    const char *argv[2];

    if (s->rec == NULL)
        return;
    b = brk_calloc(1, sizeof(*b));
    if (b == NULL)
        return;
    b->s = s;
    argv[0] = "SMEMBERS";
    argv[1] = s->k.tenants;
    if (store_cmd_argv(s->d->st, on_backlog_tenants, b, 2, argv, NULL))
        brk_free(b);
}

/*---- Lanes: one (service, tenant) queue being sent ----*/

/* Forget the head entry: its fields and what its send kept. */
void
delivery_lane_clear_entry(struct lane *l)
{
    size_t i;

    for (i = 0; i < l->nf; i++)
        brk_free(l->f[i]);
    l->nf = 0;
    l->id[0] = '\0';
    l->data = 0;
    l->prio = 0;
    l->welcome[0] = '\0';
    brk_free(l->kept);
    brk_free(l->removed);
    l->kept = NULL;
    l->removed = NULL;
}

static void
lane_clear_held(struct lane *l)
{
    size_t i, j;

    for (i = 0; i < l->nheld; i++)
        for (j = 0; j < l->held[i].nf; j++)
            brk_free(l->held[i].f[j]);
    l->nheld = 0;
    l->taken = 0;
}

/* Drop one reference; the last frees the lane. */
void
delivery_lane_unref(struct lane *l)
{
    if (--l->refs > 0)
        return;
    delivery_lane_clear_entry(l);
    lane_clear_held(l);
    if (l->refresh != NULL)
        event_free(l->refresh);
    brk_free(l);
}

/* The lane is over: unlist it; its memory goes with the last step. */
void
delivery_lane_end(struct lane *l)
{
    struct delivery *d = l->s->d;

    if (l->ended)
        return;
    l->ended = 1;
    if (l->prev != NULL)
        l->prev->next = l->next;
    else
        d->lanes = l->next;
    if (l->next != NULL)
        l->next->prev = l->prev;
    d->nlanes--;
    l->s->lanes--;
    if (l->refresh != NULL)
        evtimer_del(l->refresh);
    delivery_lane_unref(l);
    if (!d->stopping && d->tick != NULL)
        event_active(d->tick, EV_TIMEOUT, 0);
}

/* The head entry's field name (borrowed, until the entry is cleared);
 * NULL when it has none. */
const char *
delivery_entry_get(const struct lane *l, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < l->nf; i += 2)
        if (strcmp(l->f[i], name) == 0)
            return l->f[i + 1];
    return NULL;
}

/* The reply of a lane's Redis step (arg a struct lane_cmd, consumed):
 * next runs, then the step's reference goes. */
void
delivery_on_lane_cmd(enum brk_err err, struct redisReply *r, void *arg)
{
    struct lane_cmd *c = arg;
    struct lane *l = c->l;
    lane_step *next = c->next;

    brk_free(c);
    if (!err && r->type == REDIS_REPLY_ERROR)
        err = BRK_ERR_STORE;
    next(l, err, r);
    delivery_lane_unref(l);
}

/* Run a script for the lane; on failure to send, next gets the error at
 * once. */
void
delivery_lane_eval(struct lane *l, enum script_id id, const char *const *keys,
                   int nkeys, const char *const *args, size_t nargs,
                   lane_step *next)
{
    struct lane_cmd *c = brk_calloc(1, sizeof(*c));
    enum brk_err err = BRK_ERR_NOMEM;

    if (c != NULL) {
        c->l = l;
        c->next = next;
        l->refs++;
        err = delivery_eval(l->s->d, delivery_on_lane_cmd, c, id, keys, nkeys,
                            args, nargs);
        if (err) {
            l->refs--;
            brk_free(c);
        }
    }
    if (err) {
        l->refs++;
        next(l, err, NULL);
        delivery_lane_unref(l);
    }
}

/* Run a command for the lane; on failure to send, next gets the error at
 * once. */
void
delivery_lane_cmd(struct lane *l, int argc, const char **argv, lane_step *next)
{
    struct lane_cmd *c = brk_calloc(1, sizeof(*c));
    enum brk_err err = BRK_ERR_NOMEM;

    if (c != NULL) {
        c->l = l;
        c->next = next;
        l->refs++;
        err = store_cmd_argv(l->s->d->st, delivery_on_lane_cmd, c, argc, argv,
                             NULL);
        if (err) {
            l->refs--;
            brk_free(c);
        }
    }
    if (err) {
        l->refs++;
        next(l, err, NULL);
        delivery_lane_unref(l);
    }
}

static void
on_lane_given(struct lane *l, enum brk_err err, redisReply *r)
{
    (void)err;
    (void)r;
    delivery_lane_end(l);
}

/* Give the queue back: empty, or the lane must stop. */
static void
lane_release(struct lane *l)
{
    const char *keys[7] = {l->k.ready, l->k.lease, l->k.seq,    l->k.q,
                           l->k.qa,    l->k.dead,  l->k.tenants};
    const char *args[3] = {l->k.member, l->seq, l->s->d->me};

    if (l->s->d->stopping) {
        /* the lease runs out by itself; another instance goes on */
        delivery_lane_end(l);
        return;
    }
    delivery_lane_eval(l, SCRIPT_DLV_RELEASE, keys, 7, args, 3, on_lane_given);
}

/* Wait out a backoff holding no slot. */
void
delivery_lane_backoff(struct lane *l, long long delay_ms)
{
    const char *keys[2] = {l->k.ready, l->k.lease};
    char ms[24];
    const char *args[3] = {l->k.member, l->s->d->me, ms};

    snprintf(ms, sizeof(ms), "%lld", delay_ms < 0 ? 0 : delay_ms);
    delivery_lane_eval(l, SCRIPT_EVQ_BACKOFF, keys, 2, args, 3, on_lane_given);
}

/* Acknowledge the entry sent (or dropped) and go on with the next. */
void
delivery_lane_ack(struct lane *l)
{
    delivery_lane_next_after(l, l->id);
}

/* Copy the entries of an XRANGE reply into the lane's held entries;
 * nonzero when the reply is not of that shape. */
static int
lane_hold(struct lane *l, const redisReply *r)
{
    const redisReply *e, *f;
    struct held *h;
    size_t i, j;

    lane_clear_held(l);
    if (r->type != REDIS_REPLY_ARRAY)
        return -1;
    for (i = 0; i < r->elements && i < HEAD_BATCH; i++) {
        e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING ||
            e->element[0]->len >= sizeof(h->id) ||
            e->element[1]->type != REDIS_REPLY_ARRAY)
            return -1;
        h = &l->held[l->nheld++];
        memcpy(h->id, e->element[0]->str, e->element[0]->len + 1);
        h->nf = 0;
        h->bad = 0;
        f = e->element[1];
        for (j = 0; j < f->elements && h->nf < nitems(h->f); j++) {
            if (f->element[j]->type != REDIS_REPLY_STRING)
                break;
            h->f[h->nf] = brk_strndup(f->element[j]->str, f->element[j]->len);
            if (h->f[h->nf] == NULL)
                break;
            h->nf++;
        }
        h->bad = j < f->elements || h->nf % 2 != 0;
    }
    return 0;
}

/* The next held entry becomes the lane's entry; nonzero when none. */
static int
lane_take(struct lane *l)
{
    struct held *h;

    if (l->taken >= l->nheld)
        return -1;
    h = &l->held[l->taken++];
    delivery_lane_clear_entry(l);
    memcpy(l->id, h->id, sizeof(l->id));
    memcpy(l->f, h->f, h->nf * sizeof(h->f[0]));
    l->nf = h->nf;
    h->nf = 0;
    return h->bad;
}

static void
on_head(struct lane *l, enum brk_err err, redisReply *r)
{
    const char *at, *rcv;
    char labels[160];
    long long queued;
    int bad;

    if (err && l->acking && !l->ending && !l->s->d->stopping) {
        /* the entry stays: sent again later (the receiver de-duplicates
         * by X-Broker-Event-Id) */
        delivery_lane_backoff(l, 1000);
        return;
    }
    if (!err && l->acking && (l->ending || l->s->d->stopping)) {
        /* acknowledged; the queue is given back */
        lane_release(l);
        return;
    }
    if (err || l->ending || l->s->d->stopping) {
        if (err)
            log_warn("delivery: service %s: cannot read a queue: %s",
                     delivery_svc_name(l->s), brk_strerror(err));
        delivery_lane_end(l);
        return;
    }
    delivery_lane_clear_entry(l);
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        delivery_lane_end(l);
        return;
    }
    if (r->element[0]->integer != 0) {
        if (r->elements != 2 || lane_hold(l, r->element[1])) {
            lane_clear_held(l);
            delivery_lane_end(l);
            return;
        }
        metrics_inc(METRICS_DELIVERY_HEAD_READS,
                    metrics_labels(labels, sizeof(labels), "service",
                                   delivery_svc_name(l->s), NULL));
    }
    if (l->taken >= l->nheld) {
        if (r->element[0]->integer == 0) {
            /* told to go on with entries it does not hold */
            delivery_lane_end(l);
            return;
        }
        lane_release(l);
        return;
    }
    bad = lane_take(l);
    if (bad) {
        delivery_lane_drop(l, "an entry of an unknown shape");
        return;
    }
    l->attempts = 0;
    l->status[0] = '\0';
    rcv = delivery_entry_get(l, "rcv");
    l->prio = delivery_entry_get(l, "prio") != NULL && rcv != NULL &&
              now_ms() - strtoll(rcv, NULL, 10) <= WELCOME_MS;
    at = delivery_entry_get(l, "at");
    queued = at ? strtoll(at, NULL, 10) : 0;
    switch (l->s->state) {
    case 1:
        delivery_lane_send(l);
        break;
    case -1:
        /* delivery off, or the service revoked, as read after the entry
         * was queued: what waits goes nowhere */
        if (l->s->loaded_ms > queued) {
            delivery_lane_drop(l, "the service's delivery is off or revoked");
            break;
        }
        /* read before: read it again first */
        l->s->loaded_ms = 0;
        delivery_lane_backoff(l, STALE_WAIT_MS);
        break;
    case 0:
        delivery_lane_backoff(l, STALE_WAIT_MS);
        break;
    default:
        /* in doubt: wait without sending */
        delivery_lane_backoff(l, UNDECODABLE_WAIT_MS);
        break;
    }
}

/* Acknowledge ack ("" none), then the next entry: a WelcomeCode inside
 * its window first, else the held entry when it is still the head, else
 * the head and those after it, read again. */
void
delivery_lane_next_after(struct lane *l, const char *ack)
{
    const char *keys[2] = {l->k.q, l->k.qa};
    char win[16], n[16], id[48];
    const char *args[4] = {win, n, id, ""};

    if (ack[0] == '\0' && (l->ending || l->s->d->stopping)) {
        lane_release(l);
        return;
    }
    /* ack may be l->id, which the reply replaces */
    snprintf(id, sizeof(id), "%s", ack);
    snprintf(win, sizeof(win), "%d", WELCOME_MS);
    snprintf(n, sizeof(n), "%d", HEAD_BATCH);
    if (l->taken < l->nheld)
        args[3] = l->held[l->taken].id;
    l->acking = ack[0] != '\0';
    delivery_lane_eval(l, SCRIPT_DLV_HEAD, keys, 2, args, 4, on_head);
}

static void
on_refreshed(struct lane *l, enum brk_err err, redisReply *r)
{
    struct timeval tv = {REFRESH_MS / 1000, 0};

    if (!err && r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        /* another instance has it now: finish this send, then stop */
        l->ending = 1;
        return;
    }
    if (l->refresh != NULL && !l->ending && !l->ended)
        evtimer_add(l->refresh, &tv);
}

static void
on_refresh_timer(evutil_socket_t fd, short what, void *arg)
{
    struct lane *l = arg;
    const char *keys[2] = {l->k.ready, l->k.lease};
    char ms[24];
    const char *args[3] = {l->k.member, l->s->d->me, ms};

    (void)fd;
    (void)what;
    snprintf(ms, sizeof(ms), "%d", LEASE_MS);
    delivery_lane_eval(l, SCRIPT_EVQ_REFRESH, keys, 2, args, 3, on_refreshed);
}

static void
lane_start(struct dsvc *s, const char *member, const char *seq)
{
    struct delivery *d = s->d;
    struct timeval tv = {REFRESH_MS / 1000, 0};
    struct lane *l = brk_calloc(1, sizeof(*l));

    if (l == NULL)
        return;
    if (delivery_keys_member(&l->k, d->cfg->key_prefix, s->id, member)) {
        brk_free(l);
        return;
    }
    l->s = s;
    l->refs = 1;
    snprintf(l->seq, sizeof(l->seq), "%s", seq);
    l->refresh = evtimer_new(d->base, on_refresh_timer, l);
    if (l->refresh == NULL) {
        brk_free(l);
        return;
    }
    evtimer_add(l->refresh, &tv);
    l->next = d->lanes;
    if (d->lanes != NULL)
        d->lanes->prev = l;
    d->lanes = l;
    d->nlanes++;
    s->lanes++;
    delivery_lane_next_after(l, "");
}

static void
on_claimed(enum brk_err err, struct redisReply *r, void *arg)
{
    struct dsvc *s = arg;
    size_t i;

    s->claiming = 0;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements % 3 != 0)
        return;
    for (i = 0; i + 2 < r->elements; i += 3) {
        if (r->element[i]->type != REDIS_REPLY_STRING ||
            r->element[i + 1]->type != REDIS_REPLY_STRING)
            continue;
        if (s->d->stopping) {
            /* the leases run out by themselves */
            continue;
        }
        lane_start(s, r->element[i]->str, r->element[i + 1]->str);
    }
}

static void
on_reclaimed(enum brk_err err, struct redisReply *r, void *arg)
{
    struct dsvc *s = arg;

    (void)r;
    s->claiming = 0;
    if (!err)
        s->reclaimed = 1;
}

static void
svc_claim(struct dsvc *s)
{
    struct delivery *d = s->d;
    const char *keys[3] = {s->k.ready, s->k.lease, s->k.seq};
    char ms[24], n[16];
    const char *args[3] = {ms, d->me, n};
    unsigned room = DELIVERY_SLOTS - d->nlanes;

    if (s->claiming || room == 0)
        return;
    if (!s->reclaimed) {
        /* leases this instance held before a restart: claimable now */
        s->claiming = 1;
        if (delivery_eval(d, on_reclaimed, s, SCRIPT_EVQ_RECLAIM, keys, 2,
                          args + 1, 1) != BRK_OK)
            s->claiming = 0;
        return;
    }
    snprintf(ms, sizeof(ms), "%d", LEASE_MS);
    snprintf(n, sizeof(n), "%u", room < CLAIM_MAX ? room : CLAIM_MAX);
    s->claiming = 1;
    if (delivery_eval(d, on_claimed, s, SCRIPT_EVQ_CLAIM, keys, 3, args, 3) !=
        BRK_OK)
        s->claiming = 0;
}

/*---- The loop ----*/

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct delivery *d = arg;
    struct timeval tv = {0, TICK_MS * 1000};
    long long now = now_ms();
    struct dsvc *s;
    int backlog = 0;

    (void)fd;
    (void)what;
    if (d->stopping || !d->running)
        return;
    if (now - d->last_list_ms >= SERVICES_MS) {
        d->last_list_ms = now;
        services_list(d);
    }
    if (now - d->last_backlog_ms >= BACKLOG_MS) {
        d->last_backlog_ms = now;
        backlog = 1;
    }
    for (s = d->svcs; s != NULL; s = s->next) {
        if (!s->listed)
            continue;
        if (backlog)
            backlog_measure(s);
        if (s->loaded_ms == 0)
            svc_load(s);
        /* a service not read yet, off or in doubt is still claimed: its
         * queues are dropped or held by the lane */
        if (s->state != 0 || s->lanes > 0)
            svc_claim(s);
    }
    evtimer_add(d->tick, &tv);
}

enum brk_err
delivery_new(struct event_base *base, const struct config *cfg,
             const struct keyring *kr, struct store *st, const char *me,
             struct delivery **out)
{
    struct wecom_api_opts opts;
    struct delivery *d;
    enum brk_err err;

    if (base == NULL || cfg == NULL || kr == NULL || st == NULL || me == NULL ||
        out == NULL)
        return BRK_ERR_INVAL;
    d = brk_calloc(1, sizeof(*d));
    if (d == NULL)
        return BRK_ERR_NOMEM;
    d->base = base;
    d->cfg = cfg;
    d->kr = kr;
    d->st = st;
    snprintf(d->me, sizeof(d->me), "%s", me);
    memset(&opts, 0, sizeof(opts));
    opts.base = NULL;
    opts.timeout_ms = DELIVERY_TIMEOUT_MS;
    opts.max_body = DELIVERY_MAX_REPLY;
    err = wecom_api_new(base, &opts, &d->http);
    if (err) {
        brk_free(d);
        return err;
    }
    err =
        delivery_tenant_new(st, cfg->key_prefix, TENANTS_MAX, TENANTS_MAX_BYTES,
                            cfg->cache_max_age * 1000LL, &d->tens);
    if (err) {
        wecom_api_free(d->http);
        brk_free(d);
        return err;
    }
    d->tick = evtimer_new(base, on_tick, d);
    if (d->tick == NULL) {
        delivery_tenant_free(d->tens);
        wecom_api_free(d->http);
        brk_free(d);
        return BRK_ERR_NOMEM;
    }
    *out = d;
    return BRK_OK;
}

void
delivery_set_audit(struct delivery *d, struct audit *a)
{
    d->audit = a;
}

void
delivery_set_scopes(struct delivery *d, const struct scope_map *m)
{
    d->scopes = m;
}

void
delivery_set_suites(struct delivery *d, struct suites *s)
{
    d->suites = s;
}

void
delivery_set_keyring(struct delivery *d, const struct keyring *kr)
{
    struct dsvc *s;

    d->kr = kr;
    /* open every setting again under the new keys */
    for (s = d->svcs; s != NULL; s = s->next)
        s->crypto_token[0] = '\0';
}

void
delivery_start(struct delivery *d)
{
    struct dsvc *s;

    if (d == NULL || d->stopping)
        return;
    d->running = 1;
    d->last_list_ms = 0;
    /* a lost connection may have lost our leases' state: release ours */
    for (s = d->svcs; s != NULL; s = s->next)
        s->reclaimed = s->lanes > 0;
    event_active(d->tick, EV_TIMEOUT, 0);
}

void
delivery_stop(struct delivery *d)
{
    if (d == NULL)
        return;
    d->stopping = 1;
    d->running = 0;
    if (d->tick != NULL)
        evtimer_del(d->tick);
}

void
delivery_free(struct delivery *d)
{
    struct dsvc *s;

    if (d == NULL)
        return;
    d->stopping = 1;
    /* sends in flight end here (on_sent sees the shutdown) */
    wecom_api_free(d->http);
    while (d->lanes != NULL)
        delivery_lane_end(d->lanes);
    /* sends waiting for a tenant end here, while their services exist */
    delivery_tenant_free(d->tens);
    while ((s = d->svcs) != NULL) {
        d->svcs = s->next;
        record_service_unref(s->rec);
        wecom_crypto_free(s->crypto);
        brk_free(s);
    }
    if (d->tick != NULL)
        event_free(d->tick);
    brk_free(d);
}

void
delivery_notice(struct delivery *d, const char *msg, size_t len)
{
    char buf[200];
    const char *sp;
    struct dsvc *s;

    if (d == NULL || len >= sizeof(buf))
        return;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    if (strncmp(buf, "svc ", 4) == 0) {
        /* read the service now rather than at its next round */
        s = svc_find(d, buf + 4);
        if (s != NULL && d->running && !d->stopping)
            svc_load(s);
        return;
    }
    sp = strchr(buf, ' ');
    if (sp == NULL)
        return;
    buf[sp - buf] = '\0';
    delivery_tenant_changed(d->tens, buf, sp + 1, now_ms());
}

void
delivery_drop_caches(struct delivery *d)
{
    if (d != NULL)
        delivery_tenant_clear(d->tens);
}
