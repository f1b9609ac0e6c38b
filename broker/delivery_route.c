/*
 * Event delivery: which services get an event (see delivery.c for the
 * queue engine). A lifecycle notice goes to every service whose delivery
 * setting takes it; a routed event (WeCom's ciphertext) to those the event
 * filter lets have it, with the tenant's range as the worker read it.
 * The callback chains run here, in order:
 *   fan-out: delivery_route -> delivery_fanout | fan_start ->
 *            on_fan_members -> on_fan_record (two per service) ->
 *            fan_decide [-> fan_routed_decide] -> fan_push ->
 *            on_fan_pushed -> fan_settle -> fan_end
 *   nothing to decide with: delivery_route -> on_route_done
 */
#include "delivery_int.h"

#define SEEN_TTL_S (8 * 86400)

/*---- Fan-out ----*/

/* One service of a fan-out: its records, then its push. */
struct fan_svc {
    struct fanout *f;
    char id[SERVICE_ID_LEN + 1];
    char *subj; /* routed: the subjects found in range (JSON); owned */
    int prio;   /* it carries the WelcomeCode to this service */
};

struct fanout {
    struct delivery *d;
    /* the event, copied */
    char suite[RECORD_ID_MAX + 1], corp[RECORD_ID_MAX + 1];
    char info_type[48], change_type[48], timestamp[24], src_id[48];
    char removed[256];
    long long received_ms;
    char event_id[DELIVERY_EVENT_ID_LEN + 1];
    delivery_decide_fn *decide;
    void *decide_arg;
    delivery_done_cb *cb;
    void *arg;
    struct fan_svc *svcs;
    size_t nsvcs;
    unsigned pending;
    enum brk_err err;
    unsigned queued;
    /* routed events */
    int routed, data;
    char *enc;   /* WeCom's ciphertext; owned */
    char *plain; /* the inner XML; owned, wiped */
    size_t plain_len;
    struct record_tenant *ten; /* one reference */
    char agentid[24];
    char owner[RECORD_USER_MAX + 1];
};

static void
fan_free(struct fanout *f)
{
    size_t i;

    for (i = 0; f->svcs != NULL && i < f->nsvcs; i++)
        brk_free(f->svcs[i].subj);
    brk_free(f->svcs);
    brk_free(f->enc);
    if (f->plain != NULL)
        brk_free_secret(f->plain, f->plain_len);
    record_tenant_unref(f->ten);
    brk_free(f);
}

static void
fan_end(struct fanout *f)
{
    delivery_done_cb *cb = f->cb;
    void *arg = f->arg;
    enum brk_err err = f->err;

    if (err == BRK_OK && f->queued > 0)
        log_info("delivery: event %s (%s of corp %s) queued for %u "
                 "service(s)",
                 f->event_id, f->info_type, f->corp, f->queued);
    fan_free(f);
    cb(err, arg);
}

static void
fan_settle(struct fanout *f, enum brk_err err)
{
    if (err && f->err == BRK_OK)
        f->err = err;
    if (--f->pending == 0)
        fan_end(f);
}

static void
on_fan_pushed(enum brk_err err, struct redisReply *r, void *arg)
{
    struct fan_svc *fs = arg;
    struct fanout *f = fs->f;

    if (!err && r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
        f->queued++;
        if (!f->d->stopping)
            event_active(f->d->tick, EV_TIMEOUT, 0);
    } else if (!err && r->type == REDIS_REPLY_ERROR) {
        err = BRK_ERR_STORE;
    }
    fan_settle(f, err);
}

/* Queue the event for one service. */
static enum brk_err
fan_push(struct fan_svc *fs, const struct record_service *s)
{
    struct fanout *f = fs->f;
    struct delivery *d = f->d;
    struct delivery_keys k;
    char seen[KEYS_MAX], ttl[16], rcv[24], at[24];
    const char *keys[8], *args[3 + 2 * ENTRY_FIELDS];
    size_t n = 0;

    if (delivery_keys(&k, d->cfg->key_prefix, s->id, f->suite, f->corp) ||
        delivery_seen_key(seen, sizeof(seen), d->cfg->key_prefix, s->id,
                          f->event_id))
        return BRK_ERR_INVAL;
    snprintf(ttl, sizeof(ttl), "%d", SEEN_TTL_S);
    snprintf(rcv, sizeof(rcv), "%lld", f->received_ms);
    snprintf(at, sizeof(at), "%lld", brk_wall_ms());
    keys[0] = k.dlv;
    keys[1] = seen;
    keys[2] = k.q;
    keys[3] = k.ready;
    keys[4] = k.seq;
    keys[5] = k.tenants;
    keys[6] = k.qa;
    keys[7] = k.lease;
    args[n++] = ttl;
    args[n++] = k.member;
    args[n++] = rcv;
    if (f->routed) {
        /* WeCom's ciphertext and what opens it; no plaintext */
        args[n++] = "kind";
        args[n++] = "event";
        args[n++] = "cb";
        args[n++] = f->data ? "data" : "command";
        args[n++] = "enc";
        args[n++] = f->enc;
        args[n++] = "agent";
        args[n++] = f->agentid;
        args[n++] = "subj";
        args[n++] = fs->subj != NULL ? fs->subj : "[]";
    } else {
        /* a lifecycle notice: its fields, no personal data in any */
        args[n++] = "kind";
        args[n++] = "notice";
    }
    args[n++] = "ev";
    args[n++] = f->event_id;
    args[n++] = "it";
    args[n++] = f->info_type;
    args[n++] = "ct";
    args[n++] = f->change_type;
    args[n++] = "suite";
    args[n++] = f->suite;
    args[n++] = "corp";
    args[n++] = f->corp;
    args[n++] = "ts";
    args[n++] = f->timestamp;
    args[n++] = "rcv";
    args[n++] = rcv;
    args[n++] = "at";
    args[n++] = at;
    if (!f->routed) {
        args[n++] = "removed";
        args[n++] = f->removed;
    }
    if (fs->prio) {
        args[n++] = "prio";
        args[n++] = "1";
    }
    return delivery_eval(d, on_fan_pushed, fs, SCRIPT_DLV_PUSH, keys, 8, args,
                         n);
}

/*---- The range of a routed event ----*/

/* Is id of kind in v, or in w when w is not NULL (a view of v narrowed
 * for the service)? Chats and customers are not members: 0. */
int
delivery_range_has(const struct vrange *v, const struct vrange_view *w,
                   enum scope_record kind, const char *id)
{
    char *end;
    long n;

    if ((v == NULL && w == NULL) || id == NULL || id[0] == '\0')
        return 0;
    switch (kind) {
    case SCOPE_REC_MEMBER:
    case SCOPE_REC_FOLLOW_USER:
    case SCOPE_REC_CHAT_MEMBER:
        return w ? vrange_view_has_member(w, id, strlen(id))
                 : vrange_has_member(v, id, strlen(id));
    case SCOPE_REC_DEPARTMENT:
    case SCOPE_REC_TAG:
        if (strspn(id, "0123456789") != strlen(id) || strlen(id) > 10)
            return 0;
        n = strtol(id, &end, 10);
        if (kind == SCOPE_REC_DEPARTMENT)
            return w ? vrange_view_has_department(w, n)
                     : vrange_has_department(v, n);
        return w ? vrange_view_has_tag(w, n) : vrange_has_tag(v, n);
    default:
        return 0;
    }
}

/* At fan-out: the service's range of the tenant as the worker read it;
 * a chat by its owner from the index. */
struct fan_range {
    const struct vrange *v;
    const struct vrange_view *w; /* narrowed for the service, or NULL */
    const char *owner;
};

static int
fan_in_range(void *arg, enum scope_record kind, const char *id)
{
    const struct fan_range *r = arg;

    if (kind == SCOPE_REC_CHAT)
        return delivery_range_has(r->v, r->w, SCOPE_REC_MEMBER, r->owner);
    return delivery_range_has(r->v, r->w, kind, id);
}

/* The subjects found in range, as stored with the entry: [[kind, id]]. */
static char *
subjects_encode(const struct evfilter_result *res)
{
    json_t *a = json_array();
    char *out = NULL;
    size_t i;

    if (a == NULL)
        return NULL;
    for (i = 0; i < res->nsubjects; i++) {
        if (!res->subjects[i].checked)
            continue;
        if (json_array_append_new(a,
                                  json_pack("[is]", (int)res->subjects[i].kind,
                                            res->subjects[i].id)) != 0)
            goto out;
    }
    out = json_dumps(a, JSON_COMPACT);
out:
    json_decref(a);
    return out;
}

/*
 * The fan-out decision of a routed event for service s: what the
 * lifecycle notices need (s may serve the tenant and takes the event),
 * then the event filter with the effective grant and the range of the
 * tenant as the worker read it. Nonzero to queue; *subj (owned) the
 * subjects found in range.
 */
static int
fan_routed_decide(struct fanout *f, const struct record_service *s,
                  const struct record_delivery *rd, char **subj, int *prio)
{
    struct delivery_event ev;
    const struct scope_map *m = f->d->scopes;
    struct vrange_view *owned = NULL;
    struct fan_range fr = {NULL, NULL, f->owner};
    struct evfilter_ask ask;
    struct evfilter_result res;
    enum brk_err err;
    int ok = 0;

    memset(&ev, 0, sizeof(ev));
    ev.suite = f->suite;
    ev.corp = f->corp;
    ev.info_type = f->info_type;
    ev.change_type = f->change_type;
    if (m == NULL || f->ten == NULL || !f->ten->active ||
        !delivery_decide_lifecycle(&ev, s, rd, NULL))
        return 0;
    /* a view, not a copy: an event is decided once per service */
    err = record_effective_view(s, f->ten, f->corp, &owned);
    fr.v = f->ten->range;
    fr.w = owned;
    if (err) {
        log_warn("delivery: service %s: no range of corp %s (%s); event %s "
                 "not queued for it",
                 s->name, f->corp, brk_strerror(err), f->event_id);
        return 0;
    }
    memset(&ask, 0, sizeof(ask));
    ask.callback = f->data ? SCOPE_CB_DATA : SCOPE_CB_COMMAND;
    ask.corpid = f->corp;
    ask.tenant = &f->ten->grant;
    ask.service = &s->grant;
    ask.caps = s->caps;
    ask.own_range = owned != NULL;
    ask.in_range = fan_in_range;
    ask.arg = &fr;
    err = evfilter_apply(m, f->plain, f->plain_len, &ask, &res);
    if (err) {
        log_warn("delivery: event %s (%s) refused by the event filter: %s",
                 f->event_id, f->info_type, brk_strerror(err));
        vrange_view_free(owned);
        return 0;
    }
    if (res.reason == EVFILTER_DELIVER) {
        *subj = subjects_encode(&res);
        ok = *subj != NULL;
        /* the WelcomeCode goes ahead of the queue while it is usable */
        *prio = res.welcome_code && (s->caps & CAP_EXTERNAL_WELCOME) &&
                brk_wall_ms() - f->received_ms <= WELCOME_MS;
    } else {
        log_debug("delivery: event %s not for service %s: %s", f->event_id,
                  s->name, evfilter_reason_name(res.reason));
    }
    evfilter_result_free(&res);
    vrange_view_free(owned);
    return ok;
}

/* The records of one service are in: decide, and queue when it takes
 * the event. */
static void
fan_decide(struct fan_svc *fs, const redisReply *svc, const redisReply *dlv)
{
    struct fanout *f = fs->f;
    struct record_service *s = NULL;
    struct record_delivery rd;
    struct delivery_event ev;
    enum brk_err err;

    err = record_service_decode(fs->id, svc, &s);
    if (err == BRK_ERR_NOTFOUND) {
        fan_settle(f, BRK_OK);
        return;
    }
    if (err == BRK_OK)
        err = record_delivery_decode(dlv, &rd);
    if (err == BRK_ERR_NOTFOUND) {
        /* no delivery set */
        record_service_unref(s);
        fan_settle(f, BRK_OK);
        return;
    }
    if (err) {
        log_warn("delivery: service %s has a record that does not decode "
                 "(%s); it gets no events until it is set again",
                 fs->id, brk_strerror(err));
        record_service_unref(s);
        fan_settle(f, BRK_OK);
        return;
    }
    memset(&ev, 0, sizeof(ev));
    ev.suite = f->suite;
    ev.corp = f->corp;
    ev.info_type = f->info_type;
    ev.change_type = f->change_type;
    ev.timestamp = f->timestamp;
    ev.src_id = f->src_id;
    ev.received_ms = f->received_ms;
    ev.removed = f->removed;
    if (f->routed ? !fan_routed_decide(f, s, &rd, &fs->subj, &fs->prio)
                  : !f->decide(&ev, s, &rd, f->decide_arg)) {
        record_service_unref(s);
        fan_settle(f, BRK_OK);
        return;
    }
    err = fan_push(fs, s);
    record_service_unref(s);
    if (err)
        fan_settle(f, err);
}

static void
on_fan_record(enum brk_err err, struct redisReply *r, void *arg)
{
    struct fan_svc *fs = arg;

    if (err || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        fan_settle(fs->f, err ? err : BRK_ERR_STORE);
        return;
    }
    fan_decide(fs, r->element[0], r->element[1]);
}

static void
on_fan_members(enum brk_err err, struct redisReply *r, void *arg)
{
    struct fanout *f = arg;
    struct delivery *d = f->d;
    char ksvc[KEYS_MAX], kdlv[KEYS_MAX];
    const char *keys[2] = {ksvc, kdlv};
    size_t i, n;

    if (err || r->type != REDIS_REPLY_ARRAY) {
        f->err = err ? err : BRK_ERR_STORE;
        fan_end(f);
        return;
    }
    n = r->elements < MAX_SERVICES ? r->elements : MAX_SERVICES;
    f->svcs = brk_calloc(n + 1, sizeof(*f->svcs));
    if (f->svcs == NULL) {
        f->err = BRK_ERR_NOMEM;
        fan_end(f);
        return;
    }
    /* one reference held while commands are being sent */
    f->pending = 1;
    for (i = 0; i < n; i++) {
        struct fan_svc *fs = &f->svcs[f->nsvcs];
        const redisReply *e = r->element[i];

        if (e->type != REDIS_REPLY_STRING || e->len != SERVICE_ID_LEN ||
            keys_service(ksvc, sizeof(ksvc), d->cfg->key_prefix, e->str,
                         NULL) ||
            keys_service(kdlv, sizeof(kdlv), d->cfg->key_prefix, e->str, "dlv"))
            continue;
        fs->f = f;
        memcpy(fs->id, e->str, SERVICE_ID_LEN + 1);
        f->nsvcs++;
        /* one settle per service, after its push if it gets one */
        f->pending++;
        err = delivery_eval(d, on_fan_record, fs, SCRIPT_DLV_READ, keys, 2,
                            NULL, 0);
        if (err) {
            f->nsvcs--;
            fan_settle(f, err);
            break;
        }
    }
    fan_settle(f, BRK_OK);
}

static enum brk_err
fan_start(struct delivery *d, const struct delivery_event *ev, int routed,
          delivery_decide_fn *decide, void *decide_arg, delivery_done_cb *cb,
          void *arg)
{
    struct fanout *f;
    char key[KEYS_MAX];
    const char *argv[2];
    enum brk_err err;

    if (d == NULL || ev == NULL || (decide == NULL && !routed) || cb == NULL ||
        !keys_id_ok(ev->suite) || !keys_id_ok(ev->corp) ||
        ev->info_type == NULL || ev->timestamp == NULL || ev->src_id == NULL)
        return BRK_ERR_INVAL;
    if (keys_services(key, sizeof(key), d->cfg->key_prefix))
        return BRK_ERR_TOOBIG;
    f = brk_calloc(1, sizeof(*f));
    if (f == NULL)
        return BRK_ERR_NOMEM;
    if (snprintf(f->suite, sizeof(f->suite), "%s", ev->suite) >=
            (int)sizeof(f->suite) ||
        snprintf(f->corp, sizeof(f->corp), "%s", ev->corp) >=
            (int)sizeof(f->corp) ||
        snprintf(f->info_type, sizeof(f->info_type), "%s", ev->info_type) >=
            (int)sizeof(f->info_type) ||
        snprintf(f->change_type, sizeof(f->change_type), "%s",
                 ev->change_type ? ev->change_type : "") >=
            (int)sizeof(f->change_type) ||
        snprintf(f->timestamp, sizeof(f->timestamp), "%s", ev->timestamp) >=
            (int)sizeof(f->timestamp) ||
        snprintf(f->src_id, sizeof(f->src_id), "%s", ev->src_id) >=
            (int)sizeof(f->src_id) ||
        snprintf(f->removed, sizeof(f->removed), "%s",
                 ev->removed ? ev->removed : "") >= (int)sizeof(f->removed)) {
        brk_free(f);
        return BRK_ERR_INVAL;
    }
    f->d = d;
    if (routed) {
        f->routed = 1;
        f->data = ev->data;
        f->ten = record_tenant_ref(ev->tenant);
        f->enc = brk_strdup(ev->encrypt);
        f->plain = brk_malloc(ev->plain_len + 1);
        if (f->enc == NULL || f->plain == NULL) {
            fan_free(f);
            return BRK_ERR_NOMEM;
        }
        memcpy(f->plain, ev->plain, ev->plain_len);
        f->plain[ev->plain_len] = '\0';
        f->plain_len = ev->plain_len;
        if (snprintf(f->agentid, sizeof(f->agentid), "%s",
                     ev->agentid ? ev->agentid : "") >=
                (int)sizeof(f->agentid) ||
            snprintf(f->owner, sizeof(f->owner), "%s",
                     ev->chat_owner ? ev->chat_owner : "") >=
                (int)sizeof(f->owner)) {
            fan_free(f);
            return BRK_ERR_INVAL;
        }
    }
    f->received_ms = ev->received_ms;
    f->decide = decide;
    f->decide_arg = decide_arg;
    f->cb = cb;
    f->arg = arg;
    delivery_event_id(f->suite, f->corp, f->src_id, f->info_type, f->event_id);
    argv[0] = "SMEMBERS";
    argv[1] = key;
    err = store_cmd_argv(d->st, on_fan_members, f, 2, argv, NULL);
    if (err)
        fan_free(f);
    return err;
}

enum brk_err
delivery_fanout(struct delivery *d, const struct delivery_event *ev,
                delivery_decide_fn *decide, void *decide_arg,
                delivery_done_cb *cb, void *arg)
{
    return fan_start(d, ev, 0, decide, decide_arg, cb, arg);
}

int
delivery_decide_lifecycle(const struct delivery_event *ev,
                          const struct record_service *s,
                          const struct record_delivery *d, void *arg)
{
    (void)arg;
    return !s->revoked && d->on &&
           (s->suite[0] == '\0' || strcmp(s->suite, ev->suite) == 0) &&
           (d->suite[0] == '\0' || strcmp(d->suite, ev->suite) == 0) &&
           record_service_allows_corp(s, ev->corp) &&
           delivery_events_match(d->events, ev->info_type, ev->change_type);
}

/* A routed event that needs no work ends from the event loop, as every
 * callback does. */
struct route_done {
    struct event *ev;
    delivery_done_cb *cb;
    void *arg;
};

static void
on_route_done(evutil_socket_t fd, short what, void *arg)
{
    struct route_done *r = arg;
    delivery_done_cb *cb = r->cb;
    void *cbarg = r->arg;

    (void)fd;
    (void)what;
    event_free(r->ev);
    brk_free(r);
    cb(BRK_OK, cbarg);
}

enum brk_err
delivery_route(struct delivery *d, const struct delivery_event *ev,
               delivery_done_cb *cb, void *arg)
{
    struct route_done *r;

    if (d == NULL || ev == NULL || ev->info_type == NULL || cb == NULL)
        return BRK_ERR_INVAL;
    if (delivery_is_lifecycle(ev->info_type))
        return delivery_fanout(d, ev, delivery_decide_lifecycle, NULL, cb, arg);
    if (d->scopes != NULL && ev->encrypt != NULL && ev->plain != NULL &&
        ev->tenant != NULL && ev->plain_len <= EVFILTER_MAX_BYTES)
        return fan_start(d, ev, 1, NULL, NULL, cb, arg);
    /* nothing to decide with: no one gets it */
    r = brk_calloc(1, sizeof(*r));
    if (r == NULL)
        return BRK_ERR_NOMEM;
    r->ev = evtimer_new(d->base, on_route_done, r);
    if (r->ev == NULL) {
        brk_free(r);
        return BRK_ERR_NOMEM;
    }
    r->cb = cb;
    r->arg = arg;
    event_active(r->ev, EV_TIMEOUT, 0);
    return BRK_OK;
}
