/*
 * Private to the event workers: the job and lane types and the steps the
 * worker sources share. Included only by broker/worker.c, worker_install.c,
 * worker_purge.c, worker_events.c and worker_tenant.c; everything else goes
 * through worker.h. Its includes are what the sources need between them.
 */
#ifndef WORKER_INT_H
#define WORKER_INT_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "audit.h"
#include "budget.h"
#include "codec.h"
#include "config.h"
#include "datakey.h"
#include "delivery.h"
#include "directory.h"
#include "dirsync.h"
#include "evqueue.h"
#include "keyring.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "purge.h"
#include "record.h"
#include "scripts.h"
#include "store.h"
#include "suites.h"
#include "tokens.h"
#include "wecom_api.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"
#include "worker.h"

#define POLL_IDLE_MS    200
#define AUTOCLAIM_MS    2000
#define AUTHX_TTL_S     3600 /* an exchange result outlives its AuthCode */
#define BACKOFF_BASE_MS 500
#define USER_PAGE       1000
#define CLAIM_BATCH     16  /* tenants leased per claim */
#define HSET_CHUNK      500 /* field/value pairs per HSET */

struct worker;
struct job;

typedef void job_step(struct job *j);
typedef void job_api_step(struct job *j, json_t *body);
typedef void job_redis_step(struct job *j, struct redisReply *r);

/* One suite: its stream, and the lanes working its tenants' queues. */
struct squeue {
    struct worker *w;
    struct suite_rt *su;
    char stream[KEYS_MAX];
    struct evq_keys k;
    int group_ready;
    char pending_from[48]; /* our own unfinished entries after this id;
                              "" once they are all resumed */
    int reading;           /* a read of the stream is in flight */
    struct job *jobs;      /* suite-stream jobs in flight */
    size_t njobs;
    struct event *poll;
    long long last_autoclaim;
    struct lane *lanes;
    struct event *claim;
    int claiming;  /* a claim is in flight */
    int reclaimed; /* our leases from before a restart were released */
};

/* One leased tenant of a suite: its queue is worked head first. */
struct lane {
    struct squeue *q;
    struct lane *next, *prev;
    struct evq_keys k;
    char corp[80];
    char seq[32]; /* the enqueue count when it was taken */
    struct job *cur;
    struct event *refresh;
    struct event *step; /* a retry of the next step after a Redis error */
    int refs;           /* 1 while listed, +1 per Redis step in flight */
    int waiting;        /* a Redis step of the lane is in flight */
    int ending;         /* given back (backoff or lease lost): no more jobs */
    int dropped;        /* no longer listed */
};

struct worker {
    struct event_base *base;
    const struct config *cfg;
    const struct keyring *kr;
    struct store *st;
    struct suites *suites;
    struct tokens *tok;
    struct wecom_api *api;
    struct budget *budget;     /* NULL: calls are not budgeted */
    struct audit *audit;       /* NULL: no audit trail */
    struct delivery *delivery; /* NULL: events go to no service */
    struct worker_tenants *tens; /* worker_tenant.c */
    char consumer[128];
    struct squeue *q;
    size_t nq;
    size_t nlanes; /* over all suites, <= event_concurrency */
    int running;
    int stopping;
};

enum tok_use { TOK_SUITE_Q, TOK_CORP_Q };

/* One WeCom call of a directory sync (see dir_sync). */
struct sync_call {
    struct job *j;
    unsigned id;
    char api[48];
    char method[8];
    char *path;
    char *body;
    char *token;
    int retried;
    int budgeted; /* a budget grant awaits its report */
    int waits;    /* times it waited for the budget or for WeCom */
    struct event *wait;
    struct sync_call *next_waiting; /* in j->sync_waiting */
};

struct job {
    struct worker *w;
    struct squeue *q;
    struct lane *lane;       /* NULL: a suite-stream job */
    struct job *next, *prev; /* in q->jobs (suite-stream jobs) */
    char id[48];
    char *kind, *sig, *ts, *nonce, *enc; /* the entry, still encrypted */
    char *plain;
    size_t plainlen;
    struct wecom_xml *ev;
    const char *info_type;
    char info_label[32];
    long long event_ts;
    long long received_ms; /* acknowledged to WeCom (0: unknown) */
    char corp[80];
    char tenant_key[KEYS_MAX];
    int reset;         /* reset_permanent_code: replace the code only */
    long long agentid; /* the app's agent id in the corp */
    int first_try;     /* a browser's AuthCode, never sent to WeCom before */
    /* AuthCode exchange */
    char authx_key[KEYS_MAX];
    json_t *exchange; /* the stored result of get_permanent_code */
    char *pcode;      /* plaintext permanent code */
    unsigned char tdk[KEYRING_KEY_LEN];
    int tdk_ok;
    /* re-read grant */
    json_t *auth_info;
    json_t *permissions;
    /* directory */
    struct dirsync *sync;
    struct sync_call *sync_waiting; /* calls waiting to be tried again */
    unsigned sync_inflight;
    int sync_shutdown;
    enum brk_err sync_err; /* the first failure of the sync */
    long sync_errcode;
    char sync_why[200];
    struct dir_pairs parents;
    json_t *users;
    json_t *tags;
    size_t dir_i;
    int dir_phase;
    /* purge */
    char scan_cursor[32];
    int purge_budget; /* scanning the corp's budget counters */
    long purged[6];
    /* a WeCom call in progress */
    char api_name[64];
    char api_method[8];
    char *api_path;
    char *api_body;
    enum tok_use api_tok;
    char *api_token;
    int api_retried;
    int api_budgeted; /* a budget grant awaits its report */
    job_api_step *api_next;
    /* optional: handles a WeCom errcode itself (returns nonzero) */
    int (*api_on_wecom)(struct job *j, long errcode);
    job_redis_step *redis_next;
    struct event *retry;
    struct event *keepalive;
    int attempts;
    const char *deliver_result; /* static: the result once delivered */
    /* the tenant the services' range is decided against (one reference;
     * NULL: not loaded, or no tenant) and whether it was loaded */
    struct record_tenant *ten;
    int ten_loaded;
    job_step *after_tenant;
    char chat_owner[RECORD_USER_MAX + 1]; /* change_external_chat */
};

/* worker.c: job lifetime, shared steps, dispatch */
long long worker_wall_s(void);
const char *worker_prefix(const struct job *j);
const char *worker_suite_id(const struct job *j);
void worker_job_end(struct job *j);
void worker_count_event(struct job *j, const char *result);
void worker_on_redis(enum brk_err err, struct redisReply *r, void *arg);
void worker_job_redis(struct job *j, int argc, const char **argv,
                      const size_t *lens, job_redis_step *next);
void worker_job_api(struct job *j, const char *name, const char *method,
                    const char *path, enum tok_use tok, json_t *req,
                    job_api_step *next);
void worker_job_done(struct job *j, const char *result);
void worker_job_fail(struct job *j, enum brk_err err, long errcode,
                     const char *fmt, ...) BRK_PRINTF(4, 5);
void worker_job_reject(struct job *j, const char *reason);
enum brk_err worker_gone_key(struct job *j, char *out, size_t len);
void worker_publish_change(struct job *j);
void worker_deliver(struct job *j, const char *result);
void worker_audit(struct job *j, const char *event, const char *const *kv,
                  size_t n);
enum brk_err worker_seal_field(struct job *j, const char *field,
                               const char *value, char **out);
int worker_open_event(struct job *j, const char *receiveid);

/* worker_install.c: exchange, grant, directory sync, activation */
void worker_sync_call_free(struct sync_call *c);
extern const char *const worker_dir_names[3];
void worker_load_tdk(struct job *j, int create, job_redis_step *next);
void worker_on_tdk_for_pcode(struct job *j, struct redisReply *r);
void worker_tenant_state(struct job *j, job_redis_step *next);
int worker_state_of(const struct redisReply *r, const char **status,
                    long long *ets, long long *gone_ts);
int worker_tenant_gate(struct job *j, const struct redisReply *r);
void worker_handover(struct job *j, const char *const *kv, size_t nkv);
void worker_start_exchange(struct job *j);
void worker_on_change_state(struct job *j, struct redisReply *r);
void worker_install_event(struct job *j);
void worker_authx_event(struct job *j);

/* worker_purge.c: cancel_auth */
void worker_cancel(struct job *j);

/* worker_tenant.c: the tenants kept decoded */
struct worker_tenants;
enum brk_err worker_tenants_new(struct worker_tenants **out) BRK_WUR;
struct cache_budget;
void worker_tenants_set_budget(struct worker_tenants *c,
                               struct cache_budget *b);
void worker_tenants_clear(struct worker_tenants *c);
void worker_tenants_free(struct worker_tenants *c);
size_t worker_tenants_count(const struct worker_tenants *c);
void worker_load_tenant(struct job *j, job_step *next);
int worker_tenant_apply(struct job *j, const struct redisReply *r);

/* worker_events.c: contact, external and data events */
void worker_on_contact_state(struct job *j, struct redisReply *r);
void worker_external_event(struct job *j);
void worker_data_event(struct job *j);

#endif /* WORKER_INT_H */
