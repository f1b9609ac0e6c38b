/*
 * Event delivery to services (see delivery.h).
 *
 * The callback chains run here, in order:
 *   fan-out: delivery_route -> delivery_fanout -> on_fan_members ->
 *            on_fan_record (two per service) -> fan_push -> on_fan_pushed
 *            -> fan_end
 *   purge:   delivery_purge_tenant -> on_purge_members -> on_purge_one ->
 *            purge_end
 *   sending: on_tick -> services_list -> on_services -> svc_load ->
 *            on_svc_record (two) -> [datakey_load -> on_svc_dk] ->
 *            svc_claim -> on_claimed -> lane_start -> lane_next_after ->
 *            on_head -> lane_send -> on_sent -> one of
 *              lane_ack -> lane_next_after -> on_head (acknowledged in the
 *                          same script that reads the next entries)
 *              on_attempt -> lane_dead -> on_dead -> lane_next_after
 *                         -> lane_backoff -> on_lane_given (the lane ends)
 *              lane_drop_entry -> lane_ack
 *            on_head (empty) -> lane_release -> on_lane_given
 *   a lane's lease: on_refresh_timer -> on_refreshed
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "audit.h"
#include "config.h"
#include "capability.h"
#include "datakey.h"
#include "delivery.h"
#include "delivery_tenant.h"
#include "evfilter.h"
#include "keyring.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "record.h"
#include "scripts.h"
#include "store.h"
#include "suites.h"
#include "visible_range.h"
#include "wecom_api.h"
#include "wecom_crypto.h"
#include "write_store.h"

#define TICK_MS             100  /* how often ready queues are looked for */
#define SERVICES_MS         1000 /* how often the services are read again */
#define BACKLOG_MS          5000 /* how often the backlog gauges are computed */
#define LEASE_MS            30000 /* a (service, tenant) lease; > a send */
#define REFRESH_MS          10000 /* a lane renews its lease this often */
#define SEEN_TTL_S          (8 * 86400)
#define CLAIM_MAX           16
#define ENTRY_FIELDS        16 /* name/value pairs of a queue entry */
#define HEAD_BATCH          16 /* queue entries read at once by a lane */
#define MAX_SERVICES        4096
#define BACKLOG_PEEK        1000 /* tenants counted per service and round */
#define UNDECODABLE_WAIT_MS 5000
#define STALE_WAIT_MS       200 /* a service read before its entry was queued */
#define WELCOME_MS          WELCOME_WINDOW_MS /* a WelcomeCode lives so long */
/* the decoded tenants kept for sending (delivery_tenant.h) */
#define TENANTS_MAX       256
#define TENANTS_MAX_BYTES ((size_t)256 << 20)

struct dsvc;

/* A queue entry read ahead, not yet sent. */
struct held {
    char id[48];
    char *f[2 * ENTRY_FIELDS]; /* owned */
    size_t nf;
    int bad; /* not of an entry's shape: dropped when its turn comes */
};

/* One (service, tenant) queue this instance is sending. */
struct lane {
    struct dsvc *s;
    struct lane *next, *prev;
    struct delivery_keys k;
    char seq[32];
    char id[48]; /* the head entry being sent */
    char *f[2 * ENTRY_FIELDS];
    size_t nf;
    int attempts;
    int refs;   /* 1 while listed, +1 per step in flight */
    int ending; /* lease lost: no more entries */
    int ended;  /* unlisted */
    struct event *refresh;
    char status[16]; /* the last reply's status, for logs and the audit */
    int data;        /* the head entry is a data callback */
    char *kept;      /* the head entry's field names delivered, removed */
    char *removed;   /* (routed events: owned, for the audit) */
    int prio;        /* the head entry goes ahead of the queue (a
                        WelcomeCode inside its window) */
    /* the SHA-256 of the WelcomeCode the head entry carries to the
     * service ("" when none): recorded once it is delivered */
    char welcome[65];
    /* the entries after the head, in queue order, read with it: sent
     * one by one while the queue's head is still held[next] */
    struct held held[HEAD_BATCH];
    size_t nheld, taken;
    int acking; /* the read also acknowledges the entry sent */
};

/* A service as this instance knows it. */
struct dsvc {
    struct delivery *d;
    struct dsvc *next;
    char id[SERVICE_ID_LEN + 1];
    struct delivery_keys k;
    int listed;    /* in the last listing of the services */
    int loading;   /* its records are being read */
    int claiming;  /* a claim is in flight */
    int reclaimed; /* our leases from before a restart were released */
    int state;     /* 0 not read yet, 1 sendable, -1 off or revoked,
                      -2 does not decode (hold its queues) */
    long long loaded_ms;
    struct record_service *rec;
    unsigned long gen; /* bumped whenever rec is replaced */
    struct record_delivery dlv;
    int have_dlv;
    struct wecom_crypto *crypto; /* of dlv.gen / dlv.token */
    char crypto_token[RECORD_SEALED_MAX + 1];
    unsigned lanes;
    long long backlog;
};

struct delivery {
    struct event_base *base;
    const struct config *cfg;
    const struct keyring *kr;
    struct store *st;
    struct audit *audit;
    const struct scope_map *scopes;
    struct suites *suites;
    struct wecom_api *http;
    struct delivery_tenants *tens;
    char me[160];
    struct dsvc *svcs;
    size_t nsvcs;
    struct lane *lanes;
    unsigned nlanes;
    struct event *tick;
    long long last_list_ms, last_backlog_ms;
    int listing;
    int running;
    int stopping;
};

static long long
now_ms(void)
{
    return brk_wall_ms();
}

/* EVAL script id with keys then args; at most 64 arguments. */
static enum brk_err
eval(struct delivery *d, store_reply_cb *cb, void *arg, enum script_id id,
     const char *const *keys, int nkeys, const char *const *args, size_t nargs)
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
    snprintf(at, sizeof(at), "%lld", now_ms());
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
    return eval(d, on_fan_pushed, fs, SCRIPT_DLV_PUSH, keys, 8, args, n);
}

/*---- The range of a routed event ----*/

/* Is id of kind in v? Chats and customers are not members: 0. */
static int
range_has(const struct vrange *v, enum scope_record kind, const char *id)
{
    char *end;
    long n;

    if (v == NULL || id == NULL || id[0] == '\0')
        return 0;
    switch (kind) {
    case SCOPE_REC_MEMBER:
    case SCOPE_REC_FOLLOW_USER:
    case SCOPE_REC_CHAT_MEMBER:
        return vrange_has_member(v, id, strlen(id));
    case SCOPE_REC_DEPARTMENT:
    case SCOPE_REC_TAG:
        if (strspn(id, "0123456789") != strlen(id) || strlen(id) > 10)
            return 0;
        n = strtol(id, &end, 10);
        return kind == SCOPE_REC_DEPARTMENT ? vrange_has_department(v, n)
                                            : vrange_has_tag(v, n);
    default:
        return 0;
    }
}

/* At fan-out: the service's range of the tenant as the worker read it;
 * a chat by its owner from the index. */
struct fan_range {
    const struct vrange *v;
    const char *owner;
};

static int
fan_in_range(void *arg, enum scope_record kind, const char *id)
{
    const struct fan_range *r = arg;

    if (kind == SCOPE_REC_CHAT)
        return range_has(r->v, SCOPE_REC_MEMBER, r->owner);
    return range_has(r->v, kind, id);
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
    struct vrange *owned = NULL;
    struct fan_range fr = {NULL, f->owner};
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
    err = record_effective_range(s, f->ten, f->corp, &owned, &fr.v);
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
        vrange_free(owned);
        return 0;
    }
    if (res.reason == EVFILTER_DELIVER) {
        *subj = subjects_encode(&res);
        ok = *subj != NULL;
        /* the WelcomeCode goes ahead of the queue while it is usable */
        *prio = res.welcome_code && (s->caps & CAP_EXTERNAL_WELCOME) &&
                now_ms() - f->received_ms <= WELCOME_MS;
    } else {
        log_debug("delivery: event %s not for service %s: %s", f->event_id,
                  s->name, evfilter_reason_name(res.reason));
    }
    evfilter_result_free(&res);
    vrange_free(owned);
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
        err = eval(d, on_fan_record, fs, SCRIPT_DLV_READ, keys, 2, NULL, 0);
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
        err = eval(p->d, on_purge_one, p, SCRIPT_DLV_PURGE, keys, 7,
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
static void lane_next_after(struct lane *l, const char *ack);

static const char *
svc_name(const struct dsvc *s)
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
                     svc_name(s), brk_strerror(err));
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
                 svc_name(s));
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
    if (eval(d, on_svc_record, s, SCRIPT_DLV_READ, keys, 2, NULL, 0))
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
    metrics_set(
        METRICS_DELIVERY_BACKLOG,
        metrics_labels(labels, sizeof(labels), "service", svc_name(b->s), NULL),
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

static void
lane_clear_entry(struct lane *l)
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

static void
lane_unref(struct lane *l)
{
    if (--l->refs > 0)
        return;
    lane_clear_entry(l);
    lane_clear_held(l);
    if (l->refresh != NULL)
        event_free(l->refresh);
    brk_free(l);
}

/* The lane is over: unlist it; its memory goes with the last step. */
static void
lane_end(struct lane *l)
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
    lane_unref(l);
    if (!d->stopping && d->tick != NULL)
        event_active(d->tick, EV_TIMEOUT, 0);
}

static const char *
entry_get(const struct lane *l, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < l->nf; i += 2)
        if (strcmp(l->f[i], name) == 0)
            return l->f[i + 1];
    return NULL;
}

/* The entry is a routed event (WeCom's ciphertext), not a notice. */
static int
is_routed(const struct lane *l)
{
    const char *kind = entry_get(l, "kind");

    return kind != NULL && strcmp(kind, "event") == 0;
}

/* Every Redis step of a lane: err, reply, and the lane (one reference). */
typedef void lane_step(struct lane *l, enum brk_err err, redisReply *r);

struct lane_cmd {
    struct lane *l;
    lane_step *next;
};

static void
on_lane_cmd(enum brk_err err, struct redisReply *r, void *arg)
{
    struct lane_cmd *c = arg;
    struct lane *l = c->l;
    lane_step *next = c->next;

    brk_free(c);
    if (!err && r->type == REDIS_REPLY_ERROR)
        err = BRK_ERR_STORE;
    next(l, err, r);
    lane_unref(l);
}

/* Run a script for the lane; on failure to send, next gets the error at
 * once. */
static void
lane_eval(struct lane *l, enum script_id id, const char *const *keys, int nkeys,
          const char *const *args, size_t nargs, lane_step *next)
{
    struct lane_cmd *c = brk_calloc(1, sizeof(*c));
    enum brk_err err = BRK_ERR_NOMEM;

    if (c != NULL) {
        c->l = l;
        c->next = next;
        l->refs++;
        err = eval(l->s->d, on_lane_cmd, c, id, keys, nkeys, args, nargs);
        if (err) {
            l->refs--;
            brk_free(c);
        }
    }
    if (err) {
        l->refs++;
        next(l, err, NULL);
        lane_unref(l);
    }
}

static void
lane_cmd(struct lane *l, int argc, const char **argv, lane_step *next)
{
    struct lane_cmd *c = brk_calloc(1, sizeof(*c));
    enum brk_err err = BRK_ERR_NOMEM;

    if (c != NULL) {
        c->l = l;
        c->next = next;
        l->refs++;
        err = store_cmd_argv(l->s->d->st, on_lane_cmd, c, argc, argv, NULL);
        if (err) {
            l->refs--;
            brk_free(c);
        }
    }
    if (err) {
        l->refs++;
        next(l, err, NULL);
        lane_unref(l);
    }
}

static void
on_lane_given(struct lane *l, enum brk_err err, redisReply *r)
{
    (void)err;
    (void)r;
    lane_end(l);
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
        lane_end(l);
        return;
    }
    lane_eval(l, SCRIPT_DLV_RELEASE, keys, 7, args, 3, on_lane_given);
}

/* Wait out a backoff holding no slot. */
static void
lane_backoff(struct lane *l, long long delay_ms)
{
    const char *keys[2] = {l->k.ready, l->k.lease};
    char ms[24];
    const char *args[3] = {l->k.member, l->s->d->me, ms};

    snprintf(ms, sizeof(ms), "%lld", delay_ms < 0 ? 0 : delay_ms);
    lane_eval(l, SCRIPT_EVQ_BACKOFF, keys, 2, args, 3, on_lane_given);
}

static void
count(struct lane *l, const char *result)
{
    char labels[160];

    metrics_inc(METRICS_DELIVERIES,
                metrics_labels(labels, sizeof(labels), "service",
                               svc_name(l->s), "result", result, NULL));
}

/* type=delivery: names only, never a value. */
static void
audit_delivery(struct lane *l, const char *result)
{
    struct delivery *d = l->s->d;
    char now[24], attempts[16];
    const char *kv[30];
    const char *ct = entry_get(l, "ct");
    size_t n = 0;

    if (d->audit == NULL)
        return;
    snprintf(now, sizeof(now), "%lld", now_ms() / 1000);
    snprintf(attempts, sizeof(attempts), "%d", l->attempts + 1);
    kv[n++] = "type";
    kv[n++] = "delivery";
    kv[n++] = "service";
    kv[n++] = svc_name(l->s);
    kv[n++] = "suite";
    kv[n++] = entry_get(l, "suite") ? entry_get(l, "suite") : "";
    kv[n++] = "corpid";
    kv[n++] = entry_get(l, "corp") ? entry_get(l, "corp") : "";
    kv[n++] = "info_type";
    kv[n++] = entry_get(l, "it") ? entry_get(l, "it") : "";
    if (ct != NULL && ct[0] != '\0') {
        kv[n++] = "change_type";
        kv[n++] = ct;
    }
    kv[n++] = "event_id";
    kv[n++] = entry_get(l, "ev") ? entry_get(l, "ev") : "";
    kv[n++] = "result";
    kv[n++] = result;
    kv[n++] = "fields";
    kv[n++] = l->kept != NULL ? l->kept
              : is_routed(l)  ? ""
                              : "SuiteId,AuthCorpId,InfoType,TimeStamp";
    kv[n++] = "removed";
    kv[n++] = l->removed != NULL        ? l->removed
              : entry_get(l, "removed") ? entry_get(l, "removed")
                                        : "";
    kv[n++] = "attempts";
    kv[n++] = attempts;
    kv[n++] = "status";
    kv[n++] = l->status;
    kv[n++] = "at";
    kv[n++] = now;
    audit_append(d->audit, NULL, kv, n);
}

/* Acknowledge the entry sent (or dropped) and go on with the next. */
static void
lane_ack(struct lane *l)
{
    lane_next_after(l, l->id);
}

static void
on_dead(struct lane *l, enum brk_err err, redisReply *r)
{
    (void)r;
    if (err) {
        lane_backoff(l, 1000);
        return;
    }
    lane_clear_entry(l);
    lane_next_after(l, "");
}

static void
lane_dead(struct lane *l, const char *reason)
{
    const char *keys[3] = {l->k.q, l->k.qa, l->k.dead};
    char n[16];
    const char *args[3] = {l->id, reason, n};

    snprintf(n, sizeof(n), "%d", l->attempts);
    count(l, "dead_letter");
    audit_delivery(l, "dead_letter");
    log_warn("delivery: event %s to service %s dead-lettered after %d "
             "attempt(s): corp=%s info_type=%s: %s",
             entry_get(l, "ev") ? entry_get(l, "ev") : "-", svc_name(l->s),
             l->attempts, entry_get(l, "corp") ? entry_get(l, "corp") : "-",
             entry_get(l, "it") ? entry_get(l, "it") : "-", reason);
    lane_eval(l, SCRIPT_DLV_DEAD, keys, 3, args, 3, on_dead);
}

static void
on_attempt(struct lane *l, enum brk_err err, redisReply *r)
{
    const char *at = entry_get(l, "at");
    long long queued = at ? strtoll(at, NULL, 10) : 0, age, left, delay;
    long long max_ms = l->s->d->cfg->delivery_max_age * 1000LL;

    if (!err && r->type == REDIS_REPLY_INTEGER)
        l->attempts = (int)r->integer;
    else
        l->attempts++;
    age = now_ms() - queued;
    if (age >= max_ms) {
        char reason[64];

        snprintf(reason, sizeof(reason), "not delivered within %ld s (%s)",
                 l->s->d->cfg->delivery_max_age, l->status);
        lane_dead(l, reason);
        return;
    }
    count(l, "retry");
    delay = delivery_backoff_ms(l->attempts);
    left = max_ms - age;
    /* one more attempt when the age runs out, then the dead letters */
    if (delay > left)
        delay = left;
    if (l->prio) {
        /* ahead of the queue only while the code is usable: then it waits
         * its turn, without the code */
        const char *rcv = entry_get(l, "rcv");
        long long end = (rcv ? strtoll(rcv, NULL, 10) : 0) + WELCOME_MS;

        if (delay > end - now_ms() + 1)
            delay = end - now_ms() + 1;
        if (delay < 0)
            delay = 0;
    }
    log_info("delivery: event %s to service %s failed (%s), attempt %d; "
             "again in %lld ms",
             entry_get(l, "ev") ? entry_get(l, "ev") : "-", svc_name(l->s),
             l->status, l->attempts, delay);
    lane_backoff(l, delay);
}

static void
lane_failed(struct lane *l)
{
    const char *argv[4] = {"HINCRBY", l->k.qa, l->id, "1"};

    lane_cmd(l, 4, argv, on_attempt);
}

/* Trimmed of ASCII whitespace, body is exactly "success". */
static int
is_success(const char *body, size_t len)
{
    while (len > 0 && strchr(" \t\r\n", body[0]) != NULL) {
        body++;
        len--;
    }
    while (len > 0 && strchr(" \t\r\n", body[len - 1]) != NULL)
        len--;
    return len == 7 && memcmp(body, "success", 7) == 0;
}

static void
on_welcome_recorded(struct lane *l, enum brk_err err, redisReply *r)
{
    (void)r;
    if (err)
        log_warn("delivery: service %s: the WelcomeCode of event %s it got "
                 "is not recorded (%s); send_welcome_msg will refuse it",
                 svc_name(l->s), entry_get(l, "ev") ? entry_get(l, "ev") : "-",
                 brk_strerror(err));
    lane_ack(l);
}

/* The WelcomeCode reached the service: from now on it, and only it, may
 * use it (write_store.h keeps the record). */
static void
lane_welcome_record(struct lane *l)
{
    struct delivery *d = l->s->d;
    const char *rcv = entry_get(l, "rcv");
    struct lane_cmd *c = brk_calloc(1, sizeof(*c));
    enum brk_err err = BRK_ERR_NOMEM;

    if (c != NULL) {
        c->l = l;
        c->next = on_welcome_recorded;
        l->refs++;
        err = welcome_record(d->st, d->cfg->key_prefix, entry_get(l, "suite"),
                             entry_get(l, "corp"), l->welcome, l->s->id,
                             rcv ? strtoll(rcv, NULL, 10) : 0, on_lane_cmd, c);
        if (err) {
            l->refs--;
            brk_free(c);
        }
    }
    if (err) {
        l->refs++;
        on_welcome_recorded(l, err, NULL);
        lane_unref(l);
    }
}

static void
on_sent(enum brk_err err, long status, const char *body, size_t len,
        double seconds, void *arg)
{
    struct lane *l = arg;
    struct delivery *d = l->s->d;
    const char *rcv = entry_get(l, "rcv");
    char labels[160];
    long long rms = rcv ? strtoll(rcv, NULL, 10) : 0;

    (void)seconds;
    if (d->stopping || err == BRK_ERR_SHUTDOWN) {
        lane_end(l);
        lane_unref(l);
        return;
    }
    if (err)
        snprintf(l->status, sizeof(l->status), "%s",
                 err == BRK_ERR_UPSTREAM_TIMEOUT  ? "timeout"
                 : err == BRK_ERR_UPSTREAM_TOOBIG ? "reply_too_long"
                                                  : "no_reply");
    else
        snprintf(l->status, sizeof(l->status), "%ld", status);
    /* a data callback is delivered by any 200, as WeCom's */
    if (!err && status == 200 && (l->data || is_success(body, len))) {
        count(l, "delivered");
        if (rms > 0)
            metrics_observe(METRICS_DELIVERY_SECONDS,
                            metrics_labels(labels, sizeof(labels), "service",
                                           svc_name(l->s), NULL),
                            (double)(now_ms() - rms) / 1000.0);
        audit_delivery(l, "delivered");
        if (l->welcome[0] != '\0')
            lane_welcome_record(l);
        else
            lane_ack(l);
    } else {
        if (!err && status == 200)
            snprintf(l->status, sizeof(l->status), "200_not_success");
        lane_failed(l);
    }
    lane_unref(l);
}

/* The inner XML of a lifecycle notice, as WeCom writes its own. */
static enum brk_err
notice_xml(const struct lane *l, char *out, size_t len)
{
    const char *suite = entry_get(l, "suite"), *corp = entry_get(l, "corp");
    const char *it = entry_get(l, "it"), *ts = entry_get(l, "ts");
    int n;

    if (suite == NULL || corp == NULL || it == NULL || ts == NULL ||
        !keys_id_ok(suite) || !keys_id_ok(corp) || !delivery_is_lifecycle(it) ||
        ts[0] == '\0' || strspn(ts, "0123456789") != strlen(ts))
        return BRK_ERR_INVAL;
    n = snprintf(out, len,
                 "<xml><SuiteId><![CDATA[%s]]></SuiteId>"
                 "<InfoType><![CDATA[%s]]></InfoType>"
                 "<TimeStamp>%s</TimeStamp>"
                 "<AuthCorpId><![CDATA[%s]]></AuthCorpId></xml>",
                 suite, it, ts, corp);
    return n < 0 || (size_t)n >= len ? BRK_ERR_TOOBIG : BRK_OK;
}

static void
lane_drop_entry(struct lane *l, const char *why)
{
    count(l, "dropped");
    audit_delivery(l, "dropped");
    log_warn("delivery: event %s for service %s dropped: %s",
             entry_get(l, "ev") ? entry_get(l, "ev") : "-", svc_name(l->s),
             why);
    lane_ack(l);
}

/*
 * POST inner (the inner XML) to the service, encrypted for receiveid with
 * its key, in WeCom's envelope: ToUserName receiveid, AgentID agentid
 * ("" for a command callback); a fresh timestamp, nonce and signature.
 */
static void
lane_post(struct lane *l, const char *inner, size_t inner_len,
          const char *receiveid, const char *agentid)
{
    struct dsvc *s = l->s;
    struct delivery *d = s->d;
    const char *ev = entry_get(l, "ev");
    char ts[24], nonce[17], sig[WECOM_CRYPTO_SIG_SIZE];
    char hdr[64], *enc = NULL, *url = NULL, *body = NULL;
    const char *headers[1] = {hdr};
    struct wecom_api_post p;
    size_t ulen, blen;
    enum brk_err err;

    snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
    if (delivery_random_alnum(nonce, 16) != BRK_OK ||
        wecom_crypto_encrypt(s->crypto, inner, inner_len, receiveid, &enc) ||
        wecom_crypto_sign(s->crypto, ts, nonce, enc, sig)) {
        err = BRK_ERR_CRYPTO;
        goto fail;
    }
    ulen = strlen(s->dlv.url) + 128;
    blen = strlen(enc) + strlen(receiveid) + strlen(agentid) + 160;
    url = brk_malloc(ulen);
    body = brk_malloc(blen);
    if (url == NULL || body == NULL) {
        err = BRK_ERR_NOMEM;
        goto fail;
    }
    /* the signature and nonce are hex and letters: no encoding needed */
    snprintf(url, ulen, "%s%cmsg_signature=%s&timestamp=%s&nonce=%s",
             s->dlv.url, strchr(s->dlv.url, '?') ? '&' : '?', sig, ts, nonce);
    snprintf(body, blen,
             "<xml><ToUserName><![CDATA[%s]]></ToUserName>"
             "<Encrypt><![CDATA[%s]]></Encrypt>"
             "<AgentID><![CDATA[%s]]></AgentID></xml>",
             receiveid, enc, agentid);
    snprintf(hdr, sizeof(hdr), "X-Broker-Event-Id: %s", ev);
    memset(&p, 0, sizeof(p));
    p.url = url;
    p.content_type = "text/xml";
    p.headers = headers;
    p.nheaders = 1;
    p.body = body;
    p.len = strlen(body);
    p.max_reply = DELIVERY_MAX_REPLY;
    l->refs++;
    err = wecom_api_post(d->http, &p, on_sent, l);
    if (err) {
        l->refs--;
        goto fail;
    }
    brk_free(enc);
    brk_free(url);
    brk_free(body);
    return;
fail:
    brk_free(enc);
    brk_free(url);
    brk_free(body);
    snprintf(l->status, sizeof(l->status), "%s", brk_strerror(err));
    lane_failed(l);
}

/* Whether the comma-separated names list holds name. */
static int
names_have(const char *list, const char *name)
{
    size_t n = strlen(name);
    const char *p = list;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0'))
            return 1;
        p = strchr(p, ',');
        if (p != NULL)
            p++;
    }
    return 0;
}

/* The SHA-256 of the WelcomeCode in the filtered XML (the filter writes
 * strings as CDATA) into out; -1 when there is none. */
static int
welcome_hash(const char *xml, size_t len, char out[65])
{
    static const char open[] = "<WelcomeCode><![CDATA[";
    const char *p, *end;

    p = memmem(xml, len, open, sizeof(open) - 1);
    if (p == NULL)
        return -1;
    p += sizeof(open) - 1;
    end = memmem(p, len - (size_t)(p - xml), "]]>", 3);
    if (end == NULL || end == p ||
        write_store_sha256(p, (size_t)(end - p), out) != BRK_OK)
        return -1;
    return 0;
}

/* At send time: a subject stored with the entry was in range when the
 * event took effect; anything else (list items) by the current range. */
struct send_range {
    json_t *subj;
    const struct vrange *v;
};

static int
send_in_range(void *arg, enum scope_record kind, const char *id)
{
    const struct send_range *r = arg;
    const json_t *e;
    size_t i;

    json_array_foreach(r->subj, i, e)
    {
        if (json_integer_value(json_array_get(e, 0)) == (json_int_t)kind &&
            json_is_string(json_array_get(e, 1)) &&
            strcmp(json_string_value(json_array_get(e, 1)), id) == 0)
            return 1;
    }
    if (kind == SCOPE_REC_CHAT)
        return 0;
    return range_has(r->v, kind, id);
}

/* The tenant as it is now is in (t, and v the range the service sees of
 * it, narrowed when own): decrypt, filter for the service's current grant,
 * and send; or drop the entry when it may not have it. */
static void
lane_send_tenant(struct lane *l, enum brk_err err,
                 const struct record_tenant *t, const struct vrange *v, int own)
{
    struct dsvc *s = l->s;
    struct delivery *d = s->d;
    const char *suite = entry_get(l, "suite"), *corp = entry_get(l, "corp");
    const char *enc = entry_get(l, "enc"), *agent = entry_get(l, "agent");
    const char *rcv = entry_get(l, "rcv");
    const char *rid_ok[1];
    struct suite_rt *su;
    struct send_range sr = {NULL, NULL};
    struct evfilter_ask ask;
    struct evfilter_result res;
    char *plain = NULL, *rid = NULL, why[96];
    size_t plen = 0, which;
    int have_res = 0;

    if (d->stopping || l->ending) {
        lane_end(l);
        return;
    }
    if (err == BRK_ERR_STORE || err == BRK_ERR_SHUTDOWN) {
        snprintf(l->status, sizeof(l->status), "%s", "store");
        lane_failed(l);
        return;
    }
    if (err == BRK_ERR_NOTFOUND || (err == BRK_OK && !t->active)) {
        lane_drop_entry(l, "the tenant is no longer active");
        goto out;
    }
    if (err) {
        snprintf(l->status, sizeof(l->status), "%s", "tenant");
        lane_failed(l);
        goto out;
    }
    l->data = strcmp(entry_get(l, "cb"), "data") == 0;
    rid_ok[0] = l->data ? corp : suite;
    su = d->suites != NULL ? suites_find(d->suites, suite) : NULL;
    if (su == NULL || su->crypto == NULL ||
        wecom_crypto_decrypt(su->crypto, enc, strlen(enc), &plain, &plen,
                             &rid) ||
        wecom_crypto_check_receiveid(rid, rid_ok, 1, &which)) {
        lane_drop_entry(l, "the stored event does not open");
        goto out;
    }
    sr.v = v;
    sr.subj = json_loads(entry_get(l, "subj"), 0, NULL);
    memset(&ask, 0, sizeof(ask));
    ask.callback = l->data ? SCOPE_CB_DATA : SCOPE_CB_COMMAND;
    ask.corpid = corp;
    ask.tenant = &t->grant;
    ask.service = &s->rec->grant;
    ask.caps = s->rec->caps;
    /* a WelcomeCode past its life is delivered without it */
    if (rcv == NULL || now_ms() - strtoll(rcv, NULL, 10) > WELCOME_MS)
        ask.caps &= ~(unsigned)CAP_EXTERNAL_WELCOME;
    ask.own_range = own;
    ask.in_range = send_in_range;
    ask.arg = &sr;
    if (d->scopes == NULL || !json_is_array(sr.subj) ||
        evfilter_apply(d->scopes, plain, plen, &ask, &res) != BRK_OK) {
        lane_drop_entry(l, "the event filter refuses the stored event");
        goto out;
    }
    have_res = 1;
    if (res.reason != EVFILTER_DELIVER) {
        snprintf(why, sizeof(why), "the service may no longer have it (%s)",
                 evfilter_reason_name(res.reason));
        lane_drop_entry(l, why);
        goto out;
    }
    l->kept = res.kept;
    l->removed = res.removed;
    res.kept = NULL;
    res.removed = NULL;
    if (names_have(l->kept, "WelcomeCode") &&
        welcome_hash(res.xml, res.xml_len, l->welcome) != 0)
        l->welcome[0] = '\0';
    lane_post(l, res.xml, res.xml_len, rid_ok[0], l->data ? agent : "");
out:
    if (have_res)
        evfilter_result_free(&res);
    if (plain != NULL)
        brk_free_secret(plain, plen);
    brk_free(rid);
    json_decref(sr.subj);
}

static void
on_send_tenant(enum brk_err err, const struct record_tenant *t,
               const struct vrange *v, int own, void *arg)
{
    struct lane *l = arg;

    lane_send_tenant(l, err, t, v, own);
    lane_unref(l);
}

/* A routed event: the service may still serve the tenant and take the
 * event; then the tenant's current record. */
static void
lane_send_event(struct lane *l)
{
    struct dsvc *s = l->s;
    struct delivery *d = s->d;
    const char *suite = entry_get(l, "suite"), *corp = entry_get(l, "corp");
    const char *it = entry_get(l, "it"), *ct = entry_get(l, "ct");
    const char *cb = entry_get(l, "cb");
    struct delivery_event ev;
    enum brk_err err;

    if (suite == NULL || corp == NULL || it == NULL || cb == NULL ||
        entry_get(l, "enc") == NULL || entry_get(l, "subj") == NULL ||
        entry_get(l, "agent") == NULL || !keys_id_ok(suite) ||
        !keys_id_ok(corp)) {
        lane_drop_entry(l, "an entry of an unknown shape");
        return;
    }
    memset(&ev, 0, sizeof(ev));
    ev.suite = suite;
    ev.corp = corp;
    ev.info_type = it;
    ev.change_type = ct;
    if (!delivery_decide_lifecycle(&ev, s->rec, &s->dlv, NULL)) {
        lane_drop_entry(l, "the service may no longer serve the tenant");
        return;
    }
    /* the tenant from the engine's copies: one read and decode serves
     * every send of it until it changes */
    l->refs++;
    err = delivery_tenant_get(d->tens, suite, corp, s->rec, s->gen,
                              on_send_tenant, l);
    if (err) {
        lane_send_tenant(l, err, NULL, NULL, 0);
        lane_unref(l);
    }
}

/* Send the head entry. */
static void
lane_send(struct lane *l)
{
    const char *kind = entry_get(l, "kind"), *ev = entry_get(l, "ev");
    const char *suite = entry_get(l, "suite");
    char inner[1024];

    if (kind == NULL || ev == NULL || strlen(ev) != DELIVERY_EVENT_ID_LEN ||
        suite == NULL) {
        lane_drop_entry(l, "an entry of an unknown shape");
        return;
    }
    if (strcmp(kind, "event") == 0) {
        lane_send_event(l);
        return;
    }
    if (strcmp(kind, "notice") != 0 ||
        notice_xml(l, inner, sizeof(inner)) != BRK_OK) {
        lane_drop_entry(l, "an entry of an unknown shape");
        return;
    }
    lane_post(l, inner, strlen(inner), suite, "");
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
    lane_clear_entry(l);
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
        lane_backoff(l, 1000);
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
                     svc_name(l->s), brk_strerror(err));
        lane_end(l);
        return;
    }
    lane_clear_entry(l);
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        lane_end(l);
        return;
    }
    if (r->element[0]->integer != 0) {
        if (r->elements != 2 || lane_hold(l, r->element[1])) {
            lane_clear_held(l);
            lane_end(l);
            return;
        }
        metrics_inc(METRICS_DELIVERY_HEAD_READS,
                    metrics_labels(labels, sizeof(labels), "service",
                                   svc_name(l->s), NULL));
    }
    if (l->taken >= l->nheld) {
        if (r->element[0]->integer == 0) {
            /* told to go on with entries it does not hold */
            lane_end(l);
            return;
        }
        lane_release(l);
        return;
    }
    bad = lane_take(l);
    if (bad) {
        lane_drop_entry(l, "an entry of an unknown shape");
        return;
    }
    l->attempts = 0;
    l->status[0] = '\0';
    rcv = entry_get(l, "rcv");
    l->prio = entry_get(l, "prio") != NULL && rcv != NULL &&
              now_ms() - strtoll(rcv, NULL, 10) <= WELCOME_MS;
    at = entry_get(l, "at");
    queued = at ? strtoll(at, NULL, 10) : 0;
    switch (l->s->state) {
    case 1:
        lane_send(l);
        break;
    case -1:
        /* delivery off, or the service revoked, as read after the entry
         * was queued: what waits goes nowhere */
        if (l->s->loaded_ms > queued) {
            lane_drop_entry(l, "the service's delivery is off or revoked");
            break;
        }
        /* read before: read it again first */
        l->s->loaded_ms = 0;
        lane_backoff(l, STALE_WAIT_MS);
        break;
    case 0:
        lane_backoff(l, STALE_WAIT_MS);
        break;
    default:
        /* in doubt: wait without sending */
        lane_backoff(l, UNDECODABLE_WAIT_MS);
        break;
    }
}

/* Acknowledge ack ("" none), then the next entry: a WelcomeCode inside
 * its window first, else the held entry when it is still the head, else
 * the head and those after it, read again. */
static void
lane_next_after(struct lane *l, const char *ack)
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
    lane_eval(l, SCRIPT_DLV_HEAD, keys, 2, args, 4, on_head);
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
    lane_eval(l, SCRIPT_EVQ_REFRESH, keys, 2, args, 3, on_refreshed);
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
    lane_next_after(l, "");
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
        if (eval(d, on_reclaimed, s, SCRIPT_EVQ_RECLAIM, keys, 2, args + 1,
                 1) != BRK_OK)
            s->claiming = 0;
        return;
    }
    snprintf(ms, sizeof(ms), "%d", LEASE_MS);
    snprintf(n, sizeof(n), "%u", room < CLAIM_MAX ? room : CLAIM_MAX);
    s->claiming = 1;
    if (eval(d, on_claimed, s, SCRIPT_EVQ_CLAIM, keys, 3, args, 3) != BRK_OK)
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
        lane_end(d->lanes);
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
