/*
 * Private to event delivery: the engine's types and the steps its sources
 * share. Included only by broker/delivery.c (the queue engine),
 * delivery_route.c (which services get an event) and delivery_send.c (an
 * entry sent, retried, dead-lettered or dropped); everything else goes
 * through delivery.h. Its includes are what the three sources need between
 * them.
 */
#ifndef DELIVERY_INT_H
#define DELIVERY_INT_H

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

#define ENTRY_FIELDS 16 /* name/value pairs of a queue entry */
#define HEAD_BATCH   16 /* queue entries read at once by a lane */
#define MAX_SERVICES 4096
#define WELCOME_MS   WELCOME_WINDOW_MS /* a WelcomeCode lives so long */

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

/* Every Redis step of a lane: err, reply, and the lane (one reference). */
typedef void lane_step(struct lane *l, enum brk_err err, redisReply *r);

struct lane_cmd {
    struct lane *l;
    lane_step *next;
};

/* delivery.c: the engine (services, queues, leases, the lanes' steps) */
enum brk_err delivery_eval(struct delivery *d, store_reply_cb *cb, void *arg,
                           enum script_id id, const char *const *keys,
                           int nkeys, const char *const *args, size_t nargs);
const char *delivery_svc_name(const struct dsvc *s);
const char *delivery_entry_get(const struct lane *l, const char *name);
void delivery_lane_clear_entry(struct lane *l);
void delivery_lane_unref(struct lane *l);
void delivery_lane_end(struct lane *l);
void delivery_on_lane_cmd(enum brk_err err, struct redisReply *r, void *arg);
void delivery_lane_eval(struct lane *l, enum script_id id,
                        const char *const *keys, int nkeys,
                        const char *const *args, size_t nargs, lane_step *next);
void delivery_lane_cmd(struct lane *l, int argc, const char **argv,
                       lane_step *next);
void delivery_lane_backoff(struct lane *l, long long delay_ms);
void delivery_lane_ack(struct lane *l);
void delivery_lane_next_after(struct lane *l, const char *ack);

/* delivery_route.c: fan-out */
int delivery_range_has(const struct vrange *v, const struct vrange_view *w,
                       enum scope_record kind, const char *id);

/* delivery_send.c: the head entry sent, retried, dead-lettered, dropped */
void delivery_lane_send(struct lane *l);
void delivery_lane_drop(struct lane *l, const char *why);

#endif /* DELIVERY_INT_H */
