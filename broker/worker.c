/*
 * Event workers (see worker.h and evqueue.h). A job is one queued event, a
 * chain of asynchronous steps (Redis, tokens, WeCom) ending in exactly one
 * of: done (acknowledged and deleted), retry later, or dead letter.
 *
 * Two sources feed jobs:
 *  - the suite stream (events that name no corp yet: an AuthCode), read
 *    through the consumer group, up to event_concurrency jobs at once, each
 *    independent; once a job learns its corp it hands the event over to
 *    that tenant's queue (evq_handover) and is done;
 *  - tenant queues: a lane leases one tenant (evq_claim), works its queue
 *    head first, one job at a time, and gives the tenant back when the
 *    queue is empty (evq_release) or the job must wait (evq_backoff: a
 *    tenant in backoff holds no lane). At most event_concurrency lanes per
 *    instance, over all suites.
 */
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
#include "directory.h"
#include "dirsync.h"
#include "evqueue.h"
#include "keyring.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "purge.h"
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
    struct budget *budget; /* NULL: calls are not budgeted */
    struct audit *audit;   /* NULL: no audit trail */
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

static void sync_call_free(struct sync_call *c);

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
};

static void squeue_poll_soon(struct squeue *q, long ms);
static void job_dispatch(struct job *j);
static void job_fail(struct job *j, enum brk_err err, long errcode,
                     const char *fmt, ...) BRK_PRINTF(4, 5);

static long long
wall_s(void)
{
    return (long long)time(NULL);
}

static const char *
prefix(const struct job *j)
{
    return j->w->cfg->key_prefix;
}

static const char *
suite_id(const struct job *j)
{
    return j->q->su->conf->suite_id;
}

/*---- Job lifetime ----*/

static void
job_reset_state(struct job *j)
{
    brk_free_secret(j->plain, j->plainlen);
    j->plain = NULL;
    j->plainlen = 0;
    wecom_xml_free(j->ev);
    j->ev = NULL;
    j->info_type = NULL;
    json_decref(j->exchange);
    j->exchange = NULL;
    brk_free_secret_str(j->pcode);
    j->pcode = NULL;
    brk_wipe(j->tdk, sizeof(j->tdk));
    j->tdk_ok = 0;
    json_decref(j->auth_info);
    j->auth_info = NULL;
    json_decref(j->permissions);
    j->permissions = NULL;
    dir_pairs_free(&j->parents);
    json_decref(j->users);
    j->users = NULL;
    json_decref(j->tags);
    j->tags = NULL;
    while (j->sync_waiting != NULL) {
        struct sync_call *c = j->sync_waiting;

        j->sync_waiting = c->next_waiting;
        sync_call_free(c);
    }
    dirsync_free(j->sync);
    j->sync = NULL;
    j->sync_inflight = 0;
    j->sync_shutdown = 0;
    j->sync_err = BRK_OK;
    j->dir_i = 0;
    j->dir_phase = 0;
    brk_free(j->api_path);
    j->api_path = NULL;
    if (j->api_body != NULL)
        brk_wipe(j->api_body, strlen(j->api_body));
    free(j->api_body);
    j->api_body = NULL;
    brk_free_secret_str(j->api_token);
    j->api_token = NULL;
    memset(j->purged, 0, sizeof(j->purged));
    j->purge_budget = 0;
    j->reset = 0;
    j->corp[0] = '\0';
}

static void
job_free(struct job *j)
{
    job_reset_state(j);
    brk_free(j->kind);
    brk_free(j->sig);
    brk_free(j->ts);
    brk_free(j->nonce);
    brk_free(j->enc);
    if (j->retry != NULL)
        event_free(j->retry);
    if (j->keepalive != NULL)
        event_free(j->keepalive);
    brk_free(j);
}

static void job_budget_report(struct job *j, long errcode);
static void lane_next(struct lane *l);
static void lane_drop(struct lane *l);
static void lane_backoff(struct lane *l, long long delay_ms);

/* The job is over, whatever its result: free it and let its source go on. */
static void
job_end(struct job *j)
{
    struct squeue *q = j->q;
    struct lane *l = j->lane;

    job_budget_report(j, -1);
    if (l != NULL) {
        l->cur = NULL;
        job_free(j);
        if (q->w->stopping || l->ending)
            lane_drop(l);
        else
            lane_next(l);
        return;
    }
    if (j->prev != NULL)
        j->prev->next = j->next;
    else
        q->jobs = j->next;
    if (j->next != NULL)
        j->next->prev = j->prev;
    q->njobs--;
    job_free(j);
    if (!q->w->stopping)
        squeue_poll_soon(q, 0);
}

static void
count_event(struct job *j, const char *result)
{
    char labels[192];

    metrics_inc(METRICS_EVENTS,
                metrics_labels(labels, sizeof(labels), "suite", suite_id(j),
                               "info_type",
                               j->info_label[0] ? j->info_label : "unknown",
                               "result", result, NULL));
}

/*---- Redis and WeCom steps ----*/

static void
on_redis(enum brk_err err, struct redisReply *r, void *arg)
{
    struct job *j = arg;
    job_redis_step *next = j->redis_next;

    if (j->w->stopping && err == BRK_ERR_SHUTDOWN) {
        job_end(j);
        return;
    }
    if (err) {
        job_fail(j, err, 0, "Redis: %s",
                 r && r->str ? r->str : brk_strerror(err));
        return;
    }
    next(j, r);
}

static void
job_redis(struct job *j, int argc, const char **argv, const size_t *lens,
          job_redis_step *next)
{
    enum brk_err err;

    j->redis_next = next;
    err = store_cmd_argv(j->w->st, on_redis, j, argc, argv, lens);
    if (err)
        job_fail(j, err, 0, "Redis unavailable");
}

static void api_with_token(struct job *j);

static void
on_api(const struct wecom_api_result *res, void *arg)
{
    struct job *j = arg;
    int (*on_wecom)(struct job *, long) = j->api_on_wecom;
    char labels[160];

    j->api_on_wecom = NULL;
    job_budget_report(j, res->err == BRK_OK          ? 0
                         : res->err == BRK_ERR_WECOM ? res->errcode
                                                     : -1);
    metrics_inc(METRICS_UPSTREAM_CALLS,
                metrics_labels(labels, sizeof(labels), "api", j->api_name,
                               "result", brk_strerror(res->err), NULL));
    if (res->err == BRK_ERR_SHUTDOWN) {
        job_end(j);
        return;
    }
    if (res->err == BRK_ERR_WECOM && !j->api_retried &&
        ((j->api_tok == TOK_CORP_Q &&
          tokens_is_corp_token_error(res->errcode)) ||
         (j->api_tok == TOK_SUITE_Q &&
          (res->errcode == 40082 || res->errcode == 42009)))) {
        /* the token went bad: expire it if still current, retry once */
        j->api_retried = 1;
        if (j->api_tok == TOK_CORP_Q)
            tokens_corp_rejected(j->w->tok, suite_id(j), j->corp, j->api_token);
        else
            tokens_suite_rejected(j->w->tok, suite_id(j), j->api_token);
        api_with_token(j);
        return;
    }
    if (res->err == BRK_ERR_WECOM && on_wecom != NULL &&
        on_wecom(j, res->errcode))
        return;
    if (res->err) {
        job_fail(j, res->err, res->errcode, "%s: %s%s%s", j->api_name,
                 brk_strerror(res->err), res->errmsg ? ": " : "",
                 res->errmsg ? res->errmsg : "");
        return;
    }
    j->api_next(j, res->body);
}

static void
on_api_token(enum brk_err err, const char *token, long errcode, void *arg)
{
    struct job *j = arg;
    char *enc = NULL, *url = NULL;
    size_t n;

    if (err == BRK_ERR_SHUTDOWN) {
        job_end(j);
        return;
    }
    if (err) {
        job_fail(j, err, errcode, "%s: no %s token", j->api_name,
                 j->api_tok == TOK_CORP_Q ? "corp" : "suite");
        return;
    }
    brk_free_secret_str(j->api_token);
    j->api_token = brk_strdup(token);
    n = strlen(token) * 3 + strlen(j->api_path) + 64;
    enc = brk_malloc(strlen(token) * 3 + 1);
    url = brk_malloc(n);
    if (j->api_token == NULL || enc == NULL || url == NULL) {
        brk_free(enc);
        brk_free(url);
        job_fail(j, BRK_ERR_NOMEM, 0, "out of memory");
        return;
    }
    codec_pct_encode(token, enc);
    snprintf(
        url, n, "%s%c%s=%s", j->api_path, strchr(j->api_path, '?') ? '&' : '?',
        j->api_tok == TOK_CORP_Q ? "access_token" : "suite_access_token", enc);
    err = wecom_api_call(j->w->api, j->api_method, url, j->api_body,
                         j->corp[0] ? j->corp : NULL, on_api, j);
    brk_free_secret_str(enc);
    brk_free_secret_str(url);
    if (err) {
        job_budget_report(j, -1);
        job_fail(j, err, 0, "%s: cannot start the call", j->api_name);
    }
}

/* After a budget grant, report how the call went, exactly once. */
static void
job_budget_report(struct job *j, long errcode)
{
    if (!j->api_budgeted || j->w->budget == NULL)
        return;
    j->api_budgeted = 0;
    budget_report(j->w->budget, j->corp, j->api_name, errcode);
}

static void
on_job_budget(enum budget_result res, void *arg)
{
    struct job *j = arg;
    enum brk_err err;

    if (res != BUDGET_OK) {
        /* background work waits for the budget: a retry, not a refusal */
        job_fail(j, BRK_ERR_WECOM, budget_errcode(res),
                 "%s: upstream budget %s", j->api_name,
                 budget_result_name(res));
        return;
    }
    j->api_budgeted = 1;
    err = tokens_corp(j->w->tok, suite_id(j), j->corp, on_api_token, j);
    if (err)
        job_fail(j, err, 0, "%s: no token", j->api_name);
}

static void
api_with_token(struct job *j)
{
    enum brk_err err;

    if (j->api_tok == TOK_CORP_Q && j->w->budget != NULL) {
        /* corp calls draw on the tenant's shared budget (half of it at
         * most for background work) */
        err = budget_take(j->w->budget, j->corp, j->api_name, BUDGET_BACKGROUND,
                          on_job_budget, j);
        if (err)
            job_fail(j, err, 0, "%s: upstream budget unavailable", j->api_name);
        return;
    }
    if (j->api_tok == TOK_CORP_Q)
        err = tokens_corp(j->w->tok, suite_id(j), j->corp, on_api_token, j);
    else
        err = tokens_suite(j->w->tok, suite_id(j), on_api_token, j);
    if (err)
        job_fail(j, err, 0, "%s: no token", j->api_name);
}

/* Wipe the copies of secrets jansson holds in a request object. */
static void
wipe_json_string(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    if (json_is_string(v))
        brk_wipe((void *)(uintptr_t)json_string_value(v),
                 json_string_length(v));
}

/*
 * Call WeCom: name for logs and metrics, path without the token, req (a
 * JSON object, consumed; NULL for GET).
 */
static void
job_api(struct job *j, const char *name, const char *method, const char *path,
        enum tok_use tok, json_t *req, job_api_step *next)
{
    snprintf(j->api_name, sizeof(j->api_name), "%s", name);
    snprintf(j->api_method, sizeof(j->api_method), "%s", method);
    brk_free(j->api_path);
    j->api_path = brk_strdup(path);
    if (j->api_body != NULL) {
        brk_wipe(j->api_body, strlen(j->api_body));
        free(j->api_body);
    }
    j->api_body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    wipe_json_string(req, "permanent_code");
    wipe_json_string(req, "auth_code");
    json_decref(req);
    j->api_tok = tok;
    j->api_retried = 0;
    j->api_next = next;
    if (j->api_path == NULL || (req != NULL && j->api_body == NULL)) {
        job_fail(j, BRK_ERR_NOMEM, 0, "out of memory");
        return;
    }
    api_with_token(j);
}

/*---- Ending: done, retry, dead letter ----*/

static void
on_acked(struct job *j, struct redisReply *r)
{
    (void)r;
    job_end(j);
}

static void
job_done(struct job *j, const char *result)
{
    char attempts[KEYS_MAX];
    const char *argv[7];

    count_event(j, result);
    log_info("event %s done: suite=%s%s%s info_type=%s result=%s", j->id,
             suite_id(j), j->lane ? " corp=" : "", j->lane ? j->lane->corp : "",
             j->info_label[0] ? j->info_label : "-", result);
    if (j->lane != NULL) {
        j->redis_next = on_acked;
        if (evq_ack(j->w->st, &j->lane->k, j->id, on_redis, j) != BRK_OK)
            job_end(j);
        return;
    }
    if (keys_suite(attempts, sizeof(attempts), prefix(j), suite_id(j),
                   "attempts")) {
        job_end(j);
        return;
    }
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_STREAM_ACK);
    argv[2] = "2";
    argv[3] = j->q->stream;
    argv[4] = attempts;
    argv[5] = WORKER_GROUP;
    argv[6] = j->id;
    job_redis(j, 7, argv, NULL, on_acked);
}

static void
dead_letter(struct job *j, const char *reason)
{
    char attempts[KEYS_MAX], dead[KEYS_MAX], n[16];
    const char *argv[10];

    count_event(j, "dead_letter");
    log_error("event %s dead-lettered after %d attempt(s): suite=%s%s%s "
              "info_type=%s: %s",
              j->id, j->attempts, suite_id(j), j->lane ? " corp=" : "",
              j->lane ? j->lane->corp : "",
              j->info_label[0] ? j->info_label : "-", reason);
    if (j->lane != NULL) {
        /* on failure the entry stays queued and is tried again later */
        j->redis_next = on_acked;
        if (evq_dead(j->w->st, &j->lane->k, j->lane->corp, j->id, reason,
                     j->attempts, on_redis, j) != BRK_OK)
            job_end(j);
        return;
    }
    if (keys_suite(attempts, sizeof(attempts), prefix(j), suite_id(j),
                   "attempts") ||
        keys_suite(dead, sizeof(dead), prefix(j), suite_id(j), "dead")) {
        job_end(j);
        return;
    }
    snprintf(n, sizeof(n), "%d", j->attempts);
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_STREAM_DEAD);
    argv[2] = "3";
    argv[3] = j->q->stream;
    argv[4] = attempts;
    argv[5] = dead;
    argv[6] = WORKER_GROUP;
    argv[7] = j->id;
    argv[8] = reason;
    argv[9] = n;
    /* on failure the entry stays pending and is tried again later */
    j->redis_next = on_acked;
    if (store_cmd_argv(j->w->st, on_redis, j, 10, argv, NULL) != BRK_OK)
        job_end(j);
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;

    (void)fd;
    (void)what;
    if (j->w->stopping) {
        job_end(j);
        return;
    }
    job_reset_state(j);
    job_dispatch(j);
}

struct fail_ctx {
    struct job *j;
    char reason[256];
};

static void
on_attempt_counted(enum brk_err err, struct redisReply *r, void *arg)
{
    struct fail_ctx *f = arg;
    struct job *j = f->j;
    long long backoff;
    struct timeval tv;

    if (err || r->type != REDIS_REPLY_INTEGER) {
        /* cannot even count: leave it pending, try again later */
        j->attempts++;
    } else {
        j->attempts = (int)r->integer;
    }
    if (j->attempts >= j->w->cfg->event_max_attempts) {
        dead_letter(j, f->reason);
        brk_free(f);
        return;
    }
    backoff = (long long)BACKOFF_BASE_MS
              << (j->attempts > 10 ? 10 : j->attempts - 1);
    /* a suite-stream job stays well inside the claim window so no other
     * instance takes it; a tenant (which gives its lease back meanwhile)
     * keeps the same pace, so event_claim_idle sets both */
    if (backoff > j->w->cfg->event_claim_idle * 1000LL / 3)
        backoff = j->w->cfg->event_claim_idle * 1000LL / 3;
    if (backoff < 50)
        backoff = 50;
    log_warn("event %s attempt %d failed, retrying in %lld ms: suite=%s%s%s "
             "info_type=%s: %s",
             j->id, j->attempts, backoff, suite_id(j), j->lane ? " corp=" : "",
             j->lane ? j->lane->corp : "",
             j->info_label[0] ? j->info_label : "-", f->reason);
    count_event(j, "retry");
    if (j->lane != NULL) {
        /* the tenant waits out its backoff without holding a lane */
        lane_backoff(j->lane, backoff);
        brk_free(f);
        job_end(j);
        return;
    }
    tv.tv_sec = backoff / 1000;
    tv.tv_usec = (backoff % 1000) * 1000;
    evtimer_add(j->retry, &tv);
    brk_free(f);
}

static void
job_fail(struct job *j, enum brk_err err, long errcode, const char *fmt, ...)
{
    struct fail_ctx *f;
    char attempts[KEYS_MAX];
    const char *argv[4];
    va_list ap;
    size_t n;

    job_budget_report(j, -1);
    if (j->w->stopping || err == BRK_ERR_SHUTDOWN) {
        job_end(j);
        return;
    }
    f = brk_calloc(1, sizeof(*f));
    if (f == NULL) {
        job_end(j);
        return;
    }
    f->j = j;
    va_start(ap, fmt);
    vsnprintf(f->reason, sizeof(f->reason), fmt, ap);
    va_end(ap);
    n = strlen(f->reason);
    if (errcode != 0 && n < sizeof(f->reason))
        snprintf(f->reason + n, sizeof(f->reason) - n, " (errcode %ld)",
                 errcode);
    if (j->lane != NULL) {
        if (evq_count_attempt(j->w->st, &j->lane->k, j->id, on_attempt_counted,
                              f) != BRK_OK)
            on_attempt_counted(BRK_ERR_STORE, NULL, f);
        return;
    }
    if (keys_suite(attempts, sizeof(attempts), prefix(j), suite_id(j),
                   "attempts")) {
        brk_free(f);
        job_end(j);
        return;
    }
    argv[0] = "HINCRBY";
    argv[1] = attempts;
    argv[2] = j->id;
    argv[3] = "1";
    if (store_cmd_argv(j->w->st, on_attempt_counted, f, 4, argv, NULL) !=
        BRK_OK)
        on_attempt_counted(BRK_ERR_STORE, NULL, f);
}

/* A permanent failure: retrying cannot help. */
static void
job_reject(struct job *j, const char *reason)
{
    j->attempts++;
    dead_letter(j, reason);
}

static void
on_keepalive_reply(enum brk_err err, struct redisReply *r, void *arg)
{
    (void)err;
    (void)r;
    (void)arg;
}

static void
on_keepalive(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;
    const char *argv[] = {"XCLAIM", j->q->stream, WORKER_GROUP, j->w->consumer,
                          "0",      j->id,        "JUSTID"};
    long ms = j->w->cfg->event_claim_idle * 1000 / 3;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    (void)fd;
    (void)what;
    /* keep our claim fresh during long work so no one else takes it */
    if (store_cmd_argv(j->w->st, on_keepalive_reply, NULL, 7, argv, NULL))
        (void)0;
    evtimer_add(j->keepalive, &tv);
}

/*---- Tenant helpers ----*/

static enum brk_err
gone_key(struct job *j, char *out, size_t len)
{
    const char *parts[3] = {"gone", suite_id(j), j->corp};
    char h[65];

    keyring_index_hmac_parts(j->w->kr, parts, 3, h);
    return keys_gone(out, len, prefix(j), h);
}

static void
publish_change(struct job *j)
{
    char chan[KEYS_MAX], msg[200];
    const char *argv[3];

    snprintf(chan, sizeof(chan), "%s%s", prefix(j), WORKER_INVAL_CHANNEL);
    snprintf(msg, sizeof(msg), "%s %s", suite_id(j), j->corp);
    argv[0] = "PUBLISH";
    argv[1] = chan;
    argv[2] = msg;
    if (store_cmd_argv(j->w->st, on_keepalive_reply, NULL, 3, argv, NULL))
        log_warn("could not publish the change of %s", suite_id(j));
}

static void
audit(struct job *j, const char *event, const char *const *kv, size_t n)
{
    char now[24];
    const char *e[32];
    size_t m = 0, i;

    if (j->w->audit == NULL)
        return;
    snprintf(now, sizeof(now), "%lld", wall_s());
    e[m++] = "type";
    e[m++] = "lifecycle";
    e[m++] = "event";
    e[m++] = event;
    e[m++] = "suite";
    e[m++] = suite_id(j);
    e[m++] = "corpid";
    e[m++] = j->corp;
    e[m++] = "at";
    e[m++] = now;
    for (i = 0; i + 1 < n && m + 2 <= nitems(e); i += 2) {
        e[m++] = kv[i];
        e[m++] = kv[i + 1];
    }
    audit_append(j->w->audit, NULL, e, m);
}

static enum brk_err
seal_field(struct job *j, const char *field, const char *value, char **out)
{
    char ctx[KEYS_MAX + 16];

    if (keys_seal_ctx(ctx, sizeof(ctx), j->tenant_key, field))
        return BRK_ERR_TOOBIG;
    return keyring_seal(j->tdk, ctx, value, strlen(value), out, NULL);
}

/*---- Directory sync (shared by install and change_auth) ----*/

/*
 * The sync is planned by dirsync.c from the grant just read; here its
 * calls are made, up to DIRSYNC_MAX_INFLIGHT at once, each with the
 * tenant's corp token. The job goes on (finish_grant) only when every
 * call is answered; any failure fails the whole sync, so a partial
 * directory is never staged.
 */

/* A call waits this long when the budget is spent or WeCom says it is
 * busy, at most this many times (about three minutes): a large tenant's
 * sync spans several budget windows instead of failing in the first. */
#define SYNC_WAIT_MS   1000
#define SYNC_WAITS_MAX 180

static void finish_grant(struct job *j);
static void sync_pump(struct job *j);
static void sync_budget_report(struct sync_call *c, long errcode);
static void sync_call_start(struct sync_call *c);

static void
sync_call_free(struct sync_call *c)
{
    if (c->wait != NULL)
        event_free(c->wait);
    brk_free(c->path);
    if (c->body != NULL)
        brk_wipe(c->body, strlen(c->body));
    brk_free(c->body);
    brk_free_secret_str(c->token);
    brk_free(c);
}

/* Record the sync's first failure; the job fails once nothing is in
 * flight. */
static void
sync_failed(struct job *j, enum brk_err err, long errcode, const char *what)
{
    if (j->sync_err != BRK_OK)
        return;
    j->sync_err = err ? err : BRK_ERR_UPSTREAM_BAD;
    j->sync_errcode = errcode;
    snprintf(j->sync_why, sizeof(j->sync_why), "%s", what);
}

/* A call came back (c already freed): go on, finish, or fail. */
static void
sync_settle(struct job *j)
{
    j->sync_inflight--;
    if (j->sync_shutdown) {
        if (j->sync_inflight == 0)
            job_end(j);
        return;
    }
    if (j->sync_err == BRK_OK && dirsync_status(j->sync) != BRK_OK)
        sync_failed(j, dirsync_status(j->sync), 0,
                    "directory sync: unexpected reply");
    if (j->sync_err != BRK_OK) {
        if (j->sync_inflight == 0)
            job_fail(j, j->sync_err, j->sync_errcode, "%s", j->sync_why);
        return;
    }
    sync_pump(j);
}

static void
on_sync_wait(evutil_socket_t fd, short what, void *arg)
{
    struct sync_call *c = arg, **pp;
    struct job *j = c->j;

    (void)fd;
    (void)what;
    for (pp = &j->sync_waiting; *pp != NULL; pp = &(*pp)->next_waiting)
        if (*pp == c) {
            *pp = c->next_waiting;
            break;
        }
    c->next_waiting = NULL;
    if (j->w->stopping) {
        j->sync_shutdown = 1;
        sync_call_free(c);
        sync_settle(j);
        return;
    }
    sync_call_start(c);
}

/* Try the call again later, unchanged (the planner still counts it
 * outstanding); 0, or -1 when it has waited enough. */
static int
sync_call_wait(struct sync_call *c)
{
    struct job *j = c->j;
    struct timeval tv = {SYNC_WAIT_MS / 1000, (SYNC_WAIT_MS % 1000) * 1000};

    if (c->waits >= SYNC_WAITS_MAX || j->sync_err != BRK_OK)
        return -1;
    if (c->wait == NULL)
        c->wait = evtimer_new(j->w->base, on_sync_wait, c);
    if (c->wait == NULL)
        return -1;
    c->waits++;
    c->next_waiting = j->sync_waiting;
    j->sync_waiting = c;
    evtimer_add(c->wait, &tv);
    return 0;
}

static void
on_sync_api(const struct wecom_api_result *res, void *arg)
{
    struct sync_call *c = arg;
    struct job *j = c->j;
    char labels[160], why[200];
    enum brk_err err;

    sync_budget_report(c, res->err == BRK_OK          ? 0
                          : res->err == BRK_ERR_WECOM ? res->errcode
                                                      : -1);
    metrics_inc(METRICS_UPSTREAM_CALLS,
                metrics_labels(labels, sizeof(labels), "api", c->api, "result",
                               brk_strerror(res->err), NULL));
    if (res->err == BRK_ERR_SHUTDOWN) {
        j->sync_shutdown = 1;
        sync_call_free(c);
        sync_settle(j);
        return;
    }
    if (res->err == BRK_ERR_WECOM && !c->retried &&
        tokens_is_corp_token_error(res->errcode)) {
        /* the token went bad: expire it if still current, retry once */
        c->retried = 1;
        tokens_corp_rejected(j->w->tok, suite_id(j), j->corp, c->token);
        sync_call_start(c);
        return;
    }
    if (res->err == BRK_ERR_WECOM &&
        (res->errcode == 45009 || res->errcode == 45033 ||
         res->errcode == -1) &&
        sync_call_wait(c) == 0)
        return; /* over WeCom's limit or busy: the call waits its turn */
    if (res->err == BRK_ERR_WECOM) {
        err = dirsync_error(j->sync, c->id, res->errcode);
        if (err) {
            snprintf(why, sizeof(why), "%s: %s", c->api,
                     res->errmsg ? res->errmsg : "WeCom error");
            sync_failed(j, err, res->errcode, why);
        }
    } else if (res->err) {
        snprintf(why, sizeof(why), "%s: %s", c->api, brk_strerror(res->err));
        sync_failed(j, res->err, 0, why);
    } else {
        err = dirsync_reply(j->sync, c->id, res->body);
        if (err) {
            snprintf(why, sizeof(why), "%s: unexpected reply", c->api);
            sync_failed(j, err, 0, why);
        }
    }
    sync_call_free(c);
    sync_settle(j);
}

static void
on_sync_token(enum brk_err err, const char *token, long errcode, void *arg)
{
    struct sync_call *c = arg;
    struct job *j = c->j;
    char *enc = NULL, *url = NULL;
    size_t n;

    if (err == BRK_ERR_SHUTDOWN) {
        sync_budget_report(c, -1);
        j->sync_shutdown = 1;
        sync_call_free(c);
        sync_settle(j);
        return;
    }
    if (err)
        goto fail;
    brk_free_secret_str(c->token);
    c->token = brk_strdup(token);
    n = strlen(token) * 3 + strlen(c->path) + 64;
    enc = brk_malloc(strlen(token) * 3 + 1);
    url = brk_malloc(n);
    if (c->token == NULL || enc == NULL || url == NULL) {
        err = BRK_ERR_NOMEM;
        goto fail;
    }
    codec_pct_encode(token, enc);
    snprintf(url, n, "%s%caccess_token=%s", c->path,
             strchr(c->path, '?') ? '&' : '?', enc);
    err = wecom_api_call(j->w->api, c->method, url, c->body, j->corp,
                         on_sync_api, c);
    brk_free_secret_str(enc);
    brk_free_secret_str(url);
    if (!err)
        return;
fail:
    brk_free_secret_str(enc);
    brk_free_secret_str(url);
    sync_budget_report(c, -1);
    sync_failed(j, err, errcode, "directory sync: no corp token");
    sync_call_free(c);
    sync_settle(j);
}

static void
sync_budget_report(struct sync_call *c, long errcode)
{
    if (!c->budgeted || c->j->w->budget == NULL)
        return;
    c->budgeted = 0;
    budget_report(c->j->w->budget, c->j->corp, c->api, errcode);
}

static void
sync_call_token(struct sync_call *c)
{
    enum brk_err err;

    err =
        tokens_corp(c->j->w->tok, suite_id(c->j), c->j->corp, on_sync_token, c);
    if (err) {
        struct job *j = c->j;

        sync_budget_report(c, -1);
        sync_failed(j, err, 0, "directory sync: no corp token");
        sync_call_free(c);
        sync_settle(j);
    }
}

static void
on_sync_budget(enum budget_result res, void *arg)
{
    struct sync_call *c = arg;
    struct job *j = c->j;
    char why[120];

    if ((res == BUDGET_SPENT || res == BUDGET_PAUSED || res == BUDGET_BUSY) &&
        sync_call_wait(c) == 0)
        return; /* the budget's next window, or a free slot */
    if (res != BUDGET_OK) {
        snprintf(why, sizeof(why), "directory sync: %s: upstream budget %s",
                 c->api, budget_result_name(res));
        sync_failed(j, BRK_ERR_WECOM, budget_errcode(res), why);
        sync_call_free(c);
        sync_settle(j);
        return;
    }
    c->budgeted = 1;
    sync_call_token(c);
}

/* Each call draws on the tenant's shared budget (at most half of it for a
 * sync), then gets the corp token. */
static void
sync_call_start(struct sync_call *c)
{
    struct job *j = c->j;
    enum brk_err err;

    if (j->w->budget == NULL) {
        sync_call_token(c);
        return;
    }
    err = budget_take(j->w->budget, j->corp, c->api, BUDGET_BACKGROUND,
                      on_sync_budget, c);
    if (err) {
        sync_failed(j, err, 0, "directory sync: upstream budget unavailable");
        sync_call_free(c);
        sync_settle(j);
    }
}

/* Start every call the plan allows now; finish when it is complete. */
static void
sync_pump(struct job *j)
{
    struct dirsync_call call;
    struct sync_call *c;

    while (j->sync_err == BRK_OK && j->sync_inflight < DIRSYNC_MAX_INFLIGHT &&
           dirsync_next(j->sync, &call) == BRK_OK) {
        c = brk_calloc(1, sizeof(*c));
        if (c != NULL) {
            c->j = j;
            c->id = call.id;
            snprintf(c->api, sizeof(c->api), "%s", call.api);
            snprintf(c->method, sizeof(c->method), "%s", call.method);
            c->path = brk_strdup(call.path_query);
            c->body = call.body ? brk_strdup(call.body) : NULL;
        }
        if (c == NULL || c->path == NULL ||
            (call.body != NULL && c->body == NULL)) {
            if (c != NULL)
                sync_call_free(c);
            sync_failed(j, BRK_ERR_NOMEM, 0, "out of memory");
            break;
        }
        j->sync_inflight++;
        sync_call_start(c);
    }
    if (j->sync_inflight > 0)
        return;
    if (j->sync_err != BRK_OK) {
        job_fail(j, j->sync_err, j->sync_errcode, "%s", j->sync_why);
        return;
    }
    if (!dirsync_done(j->sync)) {
        job_fail(j, BRK_ERR_UPSTREAM_BAD, 0,
                 "directory sync: stalled with calls unanswered");
        return;
    }
    dir_pairs_free(&j->parents);
    json_decref(j->users);
    json_decref(j->tags);
    j->users = j->tags = NULL;
    if (dirsync_result(j->sync, &j->parents, &j->users, &j->tags)) {
        job_fail(j, BRK_ERR_NOMEM, 0, "directory sync: no result");
        return;
    }
    log_info("tenant %s of suite %s: directory synced (%s plan, %u calls, "
             "%zu members, %zu departments, %zu tags)",
             j->corp, suite_id(j), dirsync_plan(j->sync),
             dirsync_calls(j->sync), json_object_size(j->users), j->parents.n,
             json_object_size(j->tags));
    finish_grant(j);
}

static void
dir_sync(struct job *j)
{
    const json_t *agent = json_array_get(
        json_object_get(json_object_get(j->auth_info, "auth_info"), "agent"),
        0);
    enum brk_err err;

    dirsync_free(j->sync);
    j->sync = NULL;
    j->sync_err = BRK_OK;
    j->sync_inflight = 0;
    err = dirsync_new(agent, j->permissions, &j->sync);
    if (err) {
        job_fail(j, err, 0,
                 "directory sync: the grant cannot be planned "
                 "(get_auth_info without an agent?)");
        return;
    }
    sync_pump(j);
}

/*---- Writing the grant and directory ----*/

static const char *const dir_names[3] = {"dir:parents", "dir:users",
                                         "dir:tags"};

static void activate(struct job *j);
static void stage_next(struct job *j);

static void
on_staged(struct job *j, struct redisReply *r)
{
    (void)r;
    stage_next(j);
}

/* Write the next chunk of the staged directory, or activate when done. */
static void
stage_next(struct job *j)
{
    struct dir_pairs tmp = {0};
    const struct dir_pairs *p = NULL;
    char key[KEYS_MAX], stage[KEYS_MAX + 8];
    const char **argv = NULL;
    size_t i, n, argc = 0;
    enum brk_err err = BRK_OK;

    for (; j->dir_phase < 3; j->dir_phase++, j->dir_i = 0) {
        dir_pairs_free(&tmp);
        if (j->dir_phase == 0) {
            p = &j->parents;
        } else {
            err = dir_pairs_from_map(j->dir_phase == 1 ? j->users : j->tags,
                                     &tmp);
            p = &tmp;
        }
        if (err || j->dir_i < p->n)
            break;
    }
    if (err) {
        dir_pairs_free(&tmp);
        job_fail(j, err, 0, "directory too large or out of memory");
        return;
    }
    if (j->dir_phase >= 3) {
        dir_pairs_free(&tmp);
        activate(j);
        return;
    }
    err = keys_tenant_sub(key, sizeof(key), prefix(j), j->corp, suite_id(j),
                          dir_names[j->dir_phase]);
    snprintf(stage, sizeof(stage), "%s:new", key);
    n = p->n - j->dir_i;
    if (n > HSET_CHUNK)
        n = HSET_CHUNK;
    argv = err ? NULL : brk_calloc(2 + 2 * n, sizeof(*argv));
    if (argv == NULL) {
        dir_pairs_free(&tmp);
        job_fail(j, BRK_ERR_NOMEM, 0, "out of memory");
        return;
    }
    argv[argc++] = "HSET";
    argv[argc++] = stage;
    for (i = 0; i < n; i++) {
        argv[argc++] = p->field[j->dir_i + i];
        argv[argc++] = p->value[j->dir_i + i];
    }
    j->dir_i += n;
    job_redis(j, (int)argc, argv, NULL, on_staged);
    brk_free(argv);
    dir_pairs_free(&tmp);
}

static void on_activated(struct job *j, struct redisReply *r);

static char *
permissions_json(struct job *j)
{
    const json_t *names = json_object_get(j->permissions, "app_permissions");
    const json_t *ext = json_object_get(j->permissions, "app_permissions_ext");
    json_t *out = json_array(), *v, *e;
    char *s = NULL;
    size_t i, k;

    if (out == NULL)
        return NULL;
    json_array_foreach(names, i, v)
    {
        json_int_t exp = 0;

        if (!json_is_string(v) || json_string_length(v) > 128)
            continue;
        json_array_foreach(ext, k, e)
        {
            const char *pn =
                json_string_value(json_object_get(e, "permission_name"));
            if (pn != NULL && strcmp(pn, json_string_value(v)) == 0 &&
                json_is_integer(json_object_get(e, "expire_time")))
                exp = json_integer_value(json_object_get(e, "expire_time"));
        }
        json_array_append_new(out, json_pack("{s:s, s:I}", "name",
                                             json_string_value(v), "expires_at",
                                             exp));
    }
    s = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    return s;
}

static void
activate(struct job *j)
{
    const json_t *agent, *priv, *corp;
    char live[3][KEYS_MAX], staged[3][KEYS_MAX + 8];
    char now[24], nusers[24], ndept[24], ntags[24];
    char level[24], agentid[24];
    char *privs = NULL, *perms = NULL;
    const char *argv[40];
    const char *corp_name;
    int argc = 0, i;

    if (j->dir_phase < 3) {
        stage_next(j);
        return;
    }
    agent = json_array_get(
        json_object_get(json_object_get(j->auth_info, "auth_info"), "agent"),
        0);
    priv = json_object_get(agent, "privilege");
    corp = json_object_get(j->auth_info, "auth_corp_info");
    corp_name = json_string_value(json_object_get(corp, "corp_name"));
    privs = priv ? json_dumps(priv, JSON_COMPACT) : NULL;
    perms = permissions_json(j);
    if (privs == NULL || perms == NULL) {
        free(privs);
        free(perms);
        job_fail(j, BRK_ERR_UPSTREAM_BAD, 0,
                 "get_auth_info: no agent privilege in the reply");
        return;
    }
    for (i = 0; i < 3; i++) {
        char what[32];

        snprintf(what, sizeof(what), "%s:new", dir_names[i]);
        if (keys_tenant_sub(live[i], sizeof(live[i]), prefix(j), j->corp,
                            suite_id(j), dir_names[i]) ||
            keys_tenant_sub(staged[i], sizeof(staged[i]), prefix(j), j->corp,
                            suite_id(j), what))
            goto toobig;
    }
    snprintf(now, sizeof(now), "%lld", wall_s());
    snprintf(nusers, sizeof(nusers), "%zu", json_object_size(j->users));
    snprintf(ndept, sizeof(ndept), "%zu", j->parents.n);
    snprintf(ntags, sizeof(ntags), "%zu", json_object_size(j->tags));
    snprintf(level, sizeof(level), "%lld",
             (long long)json_integer_value(json_object_get(priv, "level")));
    snprintf(agentid, sizeof(agentid), "%lld",
             (long long)json_integer_value(json_object_get(agent, "agentid")));
    argv[argc++] = "EVAL";
    argv[argc++] = scripts_text(SCRIPT_DIRECTORY_ACTIVATE);
    argv[argc++] = "7";
    for (i = 0; i < 3; i++)
        argv[argc++] = live[i];
    for (i = 0; i < 3; i++)
        argv[argc++] = staged[i];
    argv[argc++] = j->tenant_key;
    argv[argc++] = "status";
    argv[argc++] = "active";
    argv[argc++] = "privilege";
    argv[argc++] = privs;
    argv[argc++] = "permissions";
    argv[argc++] = perms;
    argv[argc++] = "level";
    argv[argc++] = level;
    argv[argc++] = "agentid";
    argv[argc++] = agentid;
    argv[argc++] = "updated_at";
    argv[argc++] = now;
    argv[argc++] = "synced_at";
    argv[argc++] = now;
    argv[argc++] = "dir_users";
    argv[argc++] = nusers;
    argv[argc++] = "dir_departments";
    argv[argc++] = ndept;
    argv[argc++] = "dir_tags";
    argv[argc++] = ntags;
    if (corp_name != NULL && strlen(corp_name) < 256) {
        argv[argc++] = "corp_name";
        argv[argc++] = corp_name;
    }
    job_redis(j, argc, argv, NULL, on_activated);
    free(privs);
    free(perms);
    return;
toobig:
    free(privs);
    free(perms);
    job_reject(j, "key names too long");
}

static void
on_activated(struct job *j, struct redisReply *r)
{
    const char *kv[2] = {"info_type", j->info_label};

    if (r->type == REDIS_REPLY_INTEGER && r->integer < 0) {
        /* purged meanwhile: nothing to activate */
        job_done(j, "gone");
        return;
    }
    tokens_forget_tenant(j->w->tok, suite_id(j), j->corp);
    publish_change(j);
    audit(j, "grant_stored", kv, 2);
    job_done(j, "stored");
}

static void
on_stage_cleared(struct job *j, struct redisReply *r)
{
    (void)r;
    j->dir_phase = 0;
    j->dir_i = 0;
    stage_next(j);
}

static void
finish_grant(struct job *j)
{
    char keys[3][KEYS_MAX + 8], base[KEYS_MAX];
    const char *argv[4];
    int i;

    /* a staged copy left by an interrupted attempt must not mix in */
    for (i = 0; i < 3; i++) {
        if (keys_tenant_sub(base, sizeof(base), prefix(j), j->corp, suite_id(j),
                            dir_names[i])) {
            job_reject(j, "key names too long");
            return;
        }
        snprintf(keys[i], sizeof(keys[i]), "%s:new", base);
        argv[i + 1] = keys[i];
    }
    argv[0] = "DEL";
    job_redis(j, 4, argv, NULL, on_stage_cleared);
}

static void
on_permissions(struct job *j, json_t *body)
{
    json_decref(j->permissions);
    j->permissions = json_incref(body);
    dir_sync(j);
}

static void
on_auth_info(struct job *j, json_t *body)
{
    json_decref(j->auth_info);
    j->auth_info = json_incref(body);
    job_api(j, "agent/get_permissions", "POST",
            "/cgi-bin/agent/get_permissions", TOK_CORP_Q, json_object(),
            on_permissions);
}

/* Re-read the grant: get_auth_info, permissions, directory, store. */
static void
reread_grant(struct job *j)
{
    json_t *req = json_pack("{s:s, s:s}", "auth_corpid", j->corp,
                            "permanent_code", j->pcode);

    job_api(j, "get_auth_info", "POST", "/cgi-bin/service/get_auth_info",
            TOK_SUITE_Q, req, on_auth_info);
}

/*---- Loading a tenant's secrets ----*/

static void
on_tdk(enum brk_err err, const unsigned char *dk, void *arg)
{
    struct job *j = arg;
    job_redis_step *next = j->redis_next;

    if (err == BRK_ERR_SHUTDOWN) {
        job_end(j);
        return;
    }
    if (err) {
        job_fail(j, err, 0, "tenant data key not available");
        return;
    }
    memcpy(j->tdk, dk, KEYRING_KEY_LEN);
    j->tdk_ok = 1;
    next(j, NULL);
}

static void
load_tdk(struct job *j, int create, job_redis_step *next)
{
    char key[KEYS_MAX], ctx[KEYS_MAX];
    enum brk_err err;

    err = keys_tenant_sub(key, sizeof(key), prefix(j), j->corp, suite_id(j),
                          "dk");
    snprintf(ctx, sizeof(ctx), "tenant:%s:%s", suite_id(j), j->corp);
    j->redis_next = next;
    if (!err)
        err = datakey_load(j->w->st, j->w->kr, key, ctx, create, on_tdk, j);
    if (err)
        job_fail(j, err, 0, "tenant data key not available");
}

static void
on_pcode_read(struct job *j, struct redisReply *r)
{
    char ctx[KEYS_MAX + 16];
    size_t len;

    if (r->type != REDIS_REPLY_STRING) {
        job_fail(j, BRK_ERR_NOTFOUND, 0, "tenant has no permanent code");
        return;
    }
    if (keys_seal_ctx(ctx, sizeof(ctx), j->tenant_key, "pcode") ||
        keyring_open(j->tdk, ctx, r->str, r->len, &j->pcode, &len)) {
        job_fail(j, BRK_ERR_CRYPTO, 0, "stored permanent code does not open");
        return;
    }
    reread_grant(j);
}

static void
on_tdk_for_pcode(struct job *j, struct redisReply *r)
{
    const char *argv[] = {"HGET", j->tenant_key, "pcode"};

    (void)r;
    job_redis(j, 3, argv, NULL, on_pcode_read);
}

/*---- Ordering and reinstall bookkeeping ----*/

static void
on_reinstall(struct job *j, struct redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
        log_warn("suite %s: corp %s sends events but is not a tenant, and "
                 "an authorization was lost earlier: marked "
                 "reinstall_required",
                 suite_id(j), j->corp);
        audit(j, "reinstall_required", NULL, 0);
        job_done(j, "reinstall_required");
        return;
    }
    job_done(j, "not_a_tenant");
}

/* An event for a corp that is not a tenant. */
static void
not_a_tenant(struct job *j)
{
    char lost[KEYS_MAX], idx[KEYS_MAX], now[24], ets[24], member[200];
    const char *argv[10];

    if (keys_suite(lost, sizeof(lost), prefix(j), suite_id(j), "lost") ||
        keys_tenants(idx, sizeof(idx), prefix(j))) {
        job_done(j, "not_a_tenant");
        return;
    }
    snprintf(now, sizeof(now), "%lld", wall_s());
    snprintf(ets, sizeof(ets), "%lld", j->event_ts);
    snprintf(member, sizeof(member), "%s %s", suite_id(j), j->corp);
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_TENANT_REINSTALL_MARK);
    argv[2] = "3";
    argv[3] = j->tenant_key;
    argv[4] = lost;
    argv[5] = idx;
    argv[6] = now;
    argv[7] = ets;
    argv[8] = member;
    job_redis(j, 9, argv, NULL, on_reinstall);
}

static void
tenant_state(struct job *j, job_redis_step *next)
{
    char gone[KEYS_MAX];
    const char *argv[5];

    if (gone_key(j, gone, sizeof(gone))) {
        job_reject(j, "key names too long");
        return;
    }
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_TENANT_STATE_READ);
    argv[2] = "2";
    argv[3] = j->tenant_key;
    argv[4] = gone;
    job_redis(j, 5, argv, NULL, next);
}

/* Parse SCRIPT_TENANT_STATE_READ's reply; nonzero when the event predates
 * the cancel. */
static int
state_of(const struct redisReply *r, const char **status, long long *ets,
         long long *gone_ts)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3)
        return -1;
    *status = r->element[0]->str ? r->element[0]->str : "";
    *ets = strtoll(r->element[1]->str ? r->element[1]->str : "0", NULL, 10);
    *gone_ts =
        strtoll(r->element[2]->str ? r->element[2]->str : "-1", NULL, 10);
    return 0;
}

/*
 * Gate an event on the tenant's state (SCRIPT_TENANT_STATE_READ's reply): 0 to
 * go on; otherwise the job has been ended (stale, not a tenant, or failed).
 */
static int
tenant_gate(struct job *j, const struct redisReply *r)
{
    const char *status;
    long long ets, gone;

    if (state_of(r, &status, &ets, &gone) != 0) {
        job_fail(j, BRK_ERR_STORE, 0, "unexpected tenant state reply");
        return -1;
    }
    if (gone >= 0 && j->event_ts <= gone) {
        job_done(j, "stale_dropped");
        return -1;
    }
    if (status[0] == '\0' || strcmp(status, "reinstall_required") == 0) {
        not_a_tenant(j);
        return -1;
    }
    return 0;
}

/*---- create_auth / reset_permanent_code ----*/

static void
on_installed(struct job *j, struct redisReply *r)
{
    const char *kv[2] = {"info_type", j->info_label};

    if (r->type != REDIS_REPLY_INTEGER) {
        job_fail(j, BRK_ERR_STORE, 0, "install script: unexpected reply");
        return;
    }
    if (r->integer == -2 || r->integer == -3) {
        log_info("event %s: %s for %s predates the tenant's current state; "
                 "dropped",
                 j->id, j->info_label, j->corp);
        job_done(j, "stale_dropped");
        return;
    }
    if (r->integer == -4) {
        job_done(j, "not_a_tenant");
        return;
    }
    if (j->reset) {
        tokens_forget_tenant(j->w->tok, suite_id(j), j->corp);
        audit(j, "permanent_code_reset", kv, 2);
        job_done(j, "stored");
        return;
    }
    audit(j, "installing", kv, 2);
    reread_grant(j);
}

static void
on_tdk_for_install(struct job *j, struct redisReply *r)
{
    const json_t *corp = json_object_get(j->exchange, "auth_corp_info");
    const char *name = json_string_value(json_object_get(corp, "corp_name"));
    char gone[KEYS_MAX], idx[KEYS_MAX], ets[24], now[24], member[200];
    char *sealed = NULL;
    const char *argv[14];

    (void)r;
    if (gone_key(j, gone, sizeof(gone)) ||
        keys_tenants(idx, sizeof(idx), prefix(j)) ||
        seal_field(j, "pcode", j->pcode, &sealed)) {
        job_fail(j, BRK_ERR_CRYPTO, 0, "cannot seal the permanent code");
        return;
    }
    snprintf(ets, sizeof(ets), "%lld", j->event_ts);
    snprintf(now, sizeof(now), "%lld", wall_s());
    snprintf(member, sizeof(member), "%s %s", suite_id(j), j->corp);
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_TENANT_INSTALL);
    argv[2] = "3";
    argv[3] = j->tenant_key;
    argv[4] = gone;
    argv[5] = idx;
    argv[6] = ets;
    argv[7] = sealed;
    argv[8] = name && strlen(name) < 256 ? name : "";
    argv[9] = now;
    argv[10] = j->reset ? "1" : "0";
    argv[11] = member;
    argv[12] = suite_id(j);
    argv[13] = j->corp;
    job_redis(j, 14, argv, NULL, on_installed);
    brk_free(sealed);
}

/*---- Handing an event over to its tenant's queue ----*/

static void
on_handed_over(struct job *j, struct redisReply *r)
{
    (void)r;
    count_event(j, "handed_over");
    log_info("event %s handed over to the queue of corp %s: suite=%s "
             "info_type=%s",
             j->id, j->corp, suite_id(j), j->info_label);
    job_end(j);
}

/*
 * A suite-stream job that knows its corp now: move the event (kv, name and
 * value pairs) to that tenant's queue, so it takes its place in the
 * tenant's order, and acknowledge it here in the same step.
 */
static void
handover(struct job *j, const char *const *kv, size_t nkv)
{
    struct evq_keys k;
    enum brk_err err;

    err = evq_keys(&k, prefix(j), suite_id(j), j->corp);
    if (err) {
        job_reject(j, "key names too long");
        return;
    }
    j->redis_next = on_handed_over;
    err = evq_handover(j->w->st, &k, j->corp, j->id, kv, nkv, on_redis, j);
    if (err)
        job_fail(j, err, 0, "Redis unavailable");
}

/* The exchange result is known: install (or replace the code). */
static void
have_exchange(struct job *j)
{
    const json_t *corp = json_object_get(j->exchange, "auth_corp_info");
    const char *cid = json_string_value(json_object_get(corp, "corpid"));
    const char *pc =
        json_string_value(json_object_get(j->exchange, "permanent_code"));

    if (cid == NULL || !keys_id_ok(cid) || pc == NULL || pc[0] == '\0' ||
        strlen(pc) > 1024) {
        job_reject(j, "get_permanent_code reply lacks a usable corpid or "
                      "permanent_code");
        return;
    }
    snprintf(j->corp, sizeof(j->corp), "%s", cid);
    if (keys_tenant(j->tenant_key, sizeof(j->tenant_key), prefix(j), j->corp,
                    suite_id(j))) {
        job_reject(j, "key names too long");
        return;
    }
    if (j->lane == NULL) {
        /* the corp is known: the rest runs in the tenant's order */
        char ets[24], rcv[24];
        const char *kv[10] = {
            "kind",        "authx", "authx", j->authx_key,
            "ts",          ets,     "reset", j->reset ? "1" : "0",
            "received_ms", rcv};

        snprintf(ets, sizeof(ets), "%lld", j->event_ts);
        snprintf(rcv, sizeof(rcv), "%lld", brk_wall_ms());
        handover(j, kv, nitems(kv));
        return;
    }
    if (strcmp(j->corp, j->lane->corp) != 0) {
        job_reject(j, "the exchange result names another corp");
        return;
    }
    j->pcode = brk_strdup(pc);
    if (j->pcode == NULL) {
        job_fail(j, BRK_ERR_NOMEM, 0, "out of memory");
        return;
    }
    load_tdk(j, !j->reset, on_tdk_for_install);
}

static void
on_exchange_stored(struct job *j, struct redisReply *r)
{
    (void)r;
    have_exchange(j);
}

static void
on_exchanged(struct job *j, json_t *body)
{
    char *text = NULL, *sealed = NULL;
    const char *argv[5];

    /* stored before anything else: the AuthCode works only once */
    text = json_dumps(body, JSON_COMPACT);
    if (text == NULL || keyring_seal(j->q->su->dk, j->authx_key, text,
                                     strlen(text), &sealed, NULL)) {
        if (text != NULL)
            brk_wipe(text, strlen(text));
        free(text);
        job_fail(j, BRK_ERR_CRYPTO, 0, "cannot seal the exchange result");
        return;
    }
    brk_wipe(text, strlen(text));
    free(text);
    json_decref(j->exchange);
    j->exchange = json_incref(body);
    argv[0] = "SET";
    argv[1] = j->authx_key;
    argv[2] = sealed;
    argv[3] = "EX";
    argv[4] = "3600";
    job_redis(j, 5, argv, NULL, on_exchange_stored);
    brk_free(sealed);
}

static void open_exchange(struct job *j, struct redisReply *r);

static void
on_lost_recorded(struct job *j, struct redisReply *r)
{
    char labels[96];

    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        /* another instance stored the result meanwhile: use it */
        const char *argv[] = {"GET", j->authx_key};

        job_redis(j, 2, argv, NULL, open_exchange);
        return;
    }
    metrics_inc(
        METRICS_LOST_AUTHORIZATIONS,
        metrics_labels(labels, sizeof(labels), "suite", suite_id(j), NULL));
    log_error("suite %s: lost_authorization: an AuthCode was already used "
              "(40078) and no result of its exchange is stored; the corp "
              "will show as reinstall_required when it sends events",
              suite_id(j));
    job_done(j, "lost_authorization");
}

static int
on_exchange_error(struct job *j, long errcode)
{
    char lost[KEYS_MAX], now[24];
    const char *argv[7];

    if (errcode != 40078)
        return 0;
    if (j->first_try) {
        /* anyone can reach /install/done: a code WeCom refuses on its
         * first exchange was made up or used elsewhere, no lost reply */
        log_warn("suite %s: WeCom refused the AuthCode a browser brought "
                 "to /install/done (40078); nothing installed",
                 suite_id(j));
        job_done(j, "refused");
        return 1;
    }
    /* single use: a 40078 means it was exchanged before; if that result
     * is not stored, a reply was lost */
    if (keys_suite(lost, sizeof(lost), prefix(j), suite_id(j), "lost"))
        return 0;
    snprintf(now, sizeof(now), "%lld", wall_s());
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_TENANT_LOST_COUNT);
    argv[2] = "2";
    argv[3] = lost;
    argv[4] = j->authx_key;
    argv[5] = now;
    job_redis(j, 6, argv, NULL, on_lost_recorded);
    return 1;
}

static void
exchange(struct job *j)
{
    const char *code = wecom_xml_get(j->ev, "AuthCode");
    json_t *req = json_pack("{s:s}", "auth_code", code);

    j->api_on_wecom = on_exchange_error;
    job_api(j, "get_permanent_code", "POST",
            "/cgi-bin/service/get_permanent_code", TOK_SUITE_Q, req,
            on_exchanged);
}

static void
on_tried(struct job *j, struct redisReply *r)
{
    j->first_try = r->type == REDIS_REPLY_STATUS;
    exchange(j);
}

/* A provider-site install's AuthCode is marked before its first exchange,
 * so a 40078 can tell a lost reply (marked) from a code WeCom never issued
 * (not marked), on any instance. */
static void
mark_tried(struct job *j)
{
    char key[KEYS_MAX];
    const char *argv[6];

    if ((size_t)snprintf(key, sizeof(key), "%s:tried", j->authx_key) >=
        sizeof(key)) {
        job_reject(j, "key names too long");
        return;
    }
    argv[0] = "SET";
    argv[1] = key;
    argv[2] = "1";
    argv[3] = "NX";
    argv[4] = "EX";
    argv[5] = "3600";
    job_redis(j, 6, argv, NULL, on_tried);
}

static void
open_exchange(struct job *j, struct redisReply *r)
{
    char *text = NULL;
    size_t len = 0;
    json_t *v;
    json_error_t jerr;

    if (r->type != REDIS_REPLY_STRING) {
        if (strcmp(j->kind, "authx") == 0)
            job_reject(j, "the stored exchange result expired before the "
                          "tenant's queue reached it");
        else if (strcmp(j->kind, "install") == 0)
            mark_tried(j);
        else
            exchange(j);
        return;
    }
    if (keyring_open(j->q->su->dk, j->authx_key, r->str, r->len, &text, &len)) {
        job_fail(j, BRK_ERR_CRYPTO, 0, "stored exchange result does not open");
        return;
    }
    v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    brk_free_secret(text, len);
    if (!json_is_object(v)) {
        json_decref(v);
        job_reject(j, "stored exchange result is not JSON");
        return;
    }
    json_decref(j->exchange);
    j->exchange = v;
    have_exchange(j);
}

static void
start_exchange(struct job *j)
{
    const char *code = wecom_xml_get(j->ev, "AuthCode");
    const char *parts[3];
    char h[65], what[80];
    const char *argv[2];

    if (code == NULL || code[0] == '\0' || strlen(code) > 1024) {
        job_reject(j, "event has no AuthCode");
        return;
    }
    if (!j->q->su->dk_loaded) {
        job_fail(j, BRK_ERR_STORE, 0, "suite data key not loaded");
        return;
    }
    parts[0] = "authcode";
    parts[1] = suite_id(j);
    parts[2] = code;
    keyring_index_hmac_parts(j->w->kr, parts, 3, h);
    snprintf(what, sizeof(what), "authx:%s", h);
    if (keys_suite(j->authx_key, sizeof(j->authx_key), prefix(j), suite_id(j),
                   what)) {
        job_reject(j, "key names too long");
        return;
    }
    argv[0] = "GET";
    argv[1] = j->authx_key;
    job_redis(j, 2, argv, NULL, open_exchange);
}

/*---- change_auth / corp_arch_auth ----*/

static void
on_change_state(struct job *j, struct redisReply *r)
{
    if (tenant_gate(j, r) != 0)
        return;
    load_tdk(j, 0, on_tdk_for_pcode);
}

/*---- cancel_auth: purge ----*/

static void purge_scan(struct job *j);

static void
on_report(struct job *j, struct redisReply *r)
{
    const char *kv[4] = {"info_type", "cancel_auth", "result", "purged"};

    (void)r;
    tokens_forget_tenant(j->w->tok, suite_id(j), j->corp);
    publish_change(j);
    audit(j, "purged", kv, 4);
    log_info("tenant purged: suite=%s corp=%s keys: data_key=%ld tenant=%ld "
             "token=%ld directory=%ld lock=%ld other=%ld",
             suite_id(j), j->corp, j->purged[0], j->purged[1], j->purged[2],
             j->purged[3], j->purged[4], j->purged[5]);
    job_done(j, "purged");
}

static void
on_rewrite(struct job *j, struct redisReply *r)
{
    char gone[KEYS_MAX], idx[KEYS_MAX], member[200], report[256];
    const char *argv[10];

    (void)r;
    {
        size_t o = 0, k;

        report[o++] = '{';
        for (k = 0; k < nitems(purge_kind_names); k++)
            o += (size_t)snprintf(report + o, sizeof(report) - o,
                                  "%s\"%s\":%ld", k ? "," : "",
                                  purge_kind_names[k], j->purged[k]);
        snprintf(report + o, sizeof(report) - o, "}");
    }
    if (gone_key(j, gone, sizeof(gone)) ||
        keys_tenants(idx, sizeof(idx), prefix(j))) {
        job_reject(j, "key names too long");
        return;
    }
    snprintf(member, sizeof(member), "%s %s", suite_id(j), j->corp);
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_PURGE_REPORT);
    argv[2] = "2";
    argv[3] = gone;
    argv[4] = idx;
    argv[5] = member;
    argv[6] = report;
    job_redis(j, 7, argv, NULL, on_report);
}

static void
on_rewrite_reply(enum brk_err err, struct redisReply *r, void *arg)
{
    struct job *j = arg;

    /* "already in progress" is fine: the next rewrite drops the values */
    (void)err;
    on_rewrite(j, r);
}

static void
purge_finish(struct job *j)
{
    const char *argv[] = {"BGREWRITEAOF"};

    if (store_cmd_argv(j->w->st, on_rewrite_reply, j, 1, argv, NULL))
        job_fail(j, BRK_ERR_STORE, 0, "Redis unavailable");
}

static void
on_deleted(struct job *j, struct redisReply *r)
{
    (void)r;
    if (strcmp(j->scan_cursor, "0") != 0) {
        purge_scan(j);
    } else if (!j->purge_budget) {
        /* then the corp's budget counters */
        j->purge_budget = 1;
        purge_scan(j);
    } else {
        purge_finish(j);
    }
}

static void
on_scanned(struct job *j, struct redisReply *r)
{
    const struct redisReply *keys;
    const char **argv = NULL;
    size_t i, argc = 0;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        job_fail(j, BRK_ERR_STORE, 0, "unexpected SCAN reply");
        return;
    }
    snprintf(j->scan_cursor, sizeof(j->scan_cursor), "%s", r->element[0]->str);
    keys = r->element[1];
    if (keys->elements == 0) {
        on_deleted(j, NULL);
        return;
    }
    argv = brk_calloc(keys->elements + 1, sizeof(*argv));
    if (argv == NULL) {
        job_fail(j, BRK_ERR_NOMEM, 0, "out of memory");
        return;
    }
    argv[argc++] = "UNLINK";
    for (i = 0; i < keys->elements; i++) {
        argv[argc++] = keys->element[i]->str;
        j->purged[purge_kind_of(keys->element[i]->str)]++;
    }
    job_redis(j, (int)argc, argv, NULL, on_deleted);
    brk_free(argv);
}

static void
purge_scan(struct job *j)
{
    char pattern[KEYS_MAX];
    const char *argv[6];

    if (j->purge_budget
            ? keys_budget_pattern(pattern, sizeof(pattern), prefix(j), j->corp)
            : keys_tenant_pattern(pattern, sizeof(pattern), prefix(j), j->corp,
                                  suite_id(j))) {
        job_reject(j, "key names too long");
        return;
    }
    argv[0] = "SCAN";
    argv[1] = j->scan_cursor;
    argv[2] = "MATCH";
    argv[3] = pattern;
    argv[4] = "COUNT";
    argv[5] = "1000";
    job_redis(j, 6, argv, NULL, on_scanned);
}

static void
on_btoks_deleted(struct job *j, struct redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        j->purged[2] += r->integer;
    snprintf(j->scan_cursor, sizeof(j->scan_cursor), "0");
    purge_scan(j);
}

static void
on_dk_deleted(struct job *j, struct redisReply *r)
{
    char set[KEYS_MAX];
    const char *argv[5];

    if (r->type == REDIS_REPLY_INTEGER)
        j->purged[0] += r->integer;
    if (keys_tenant_sub(set, sizeof(set), prefix(j), j->corp, suite_id(j),
                        "btoks")) {
        job_reject(j, "key names too long");
        return;
    }
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_PURGE_BROKER_TOKENS);
    argv[2] = "1";
    argv[3] = set;
    argv[4] = prefix(j);
    job_redis(j, 5, argv, NULL, on_btoks_deleted);
}

static void
on_gone_marked(struct job *j, struct redisReply *r)
{
    char dk[KEYS_MAX];
    const char *argv[2];

    if (r->type == REDIS_REPLY_INTEGER && r->integer == -3) {
        log_info("event %s: cancel_auth for %s is older than its latest "
                 "install; dropped",
                 j->id, j->corp);
        job_done(j, "stale_dropped");
        return;
    }
    /* the data key first: once it is gone, copies of the sealed values
     * (backups, an AOF not yet rewritten) are unreadable */
    if (keys_tenant_sub(dk, sizeof(dk), prefix(j), j->corp, suite_id(j),
                        "dk")) {
        job_reject(j, "key names too long");
        return;
    }
    argv[0] = "UNLINK";
    argv[1] = dk;
    job_redis(j, 2, argv, NULL, on_dk_deleted);
}

static void
cancel(struct job *j)
{
    char gone[KEYS_MAX], ets[24], now[24];
    const char *argv[8];

    if (gone_key(j, gone, sizeof(gone))) {
        job_reject(j, "key names too long");
        return;
    }
    snprintf(ets, sizeof(ets), "%lld", j->event_ts);
    snprintf(now, sizeof(now), "%lld", wall_s());
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_PURGE_MARK_GONE);
    argv[2] = "2";
    argv[3] = gone;
    argv[4] = j->tenant_key;
    argv[5] = ets;
    argv[6] = now;
    argv[7] = suite_id(j);
    job_redis(j, 8, argv, NULL, on_gone_marked);
}

/*---- change_contact ----*/

static const char *
field_or_empty(const struct job *j, const char *name)
{
    const char *v = wecom_xml_get(j->ev, name);

    return v ? v : "";
}

static void
on_contact_applied(struct job *j, struct redisReply *r)
{
    const char *ct = field_or_empty(j, "ChangeType");
    const char *kv[4] = {"info_type", "change_contact", "change_type", ct};

    (void)r;
    publish_change(j);
    audit(j, "directory_changed", kv, 4);
    job_done(j, "stored");
}

static void
on_contact_state(struct job *j, struct redisReply *r)
{
    char keys[3][KEYS_MAX], now[24];
    const char *argv[19];
    struct dir_contact c;
    int i;

    if (tenant_gate(j, r) != 0)
        return;
    if (dir_contact_read(j->ev, &c) != BRK_OK) {
        /* a change the directory cannot apply is never guessed at, nor
         * lost: the directory is read again from WeCom instead */
        log_warn("event %s: change_contact %s of corp %s names no usable "
                 "id; the directory is synced again",
                 j->id, field_or_empty(j, "ChangeType"), j->corp);
        load_tdk(j, 0, on_tdk_for_pcode);
        return;
    }
    for (i = 0; i < 3; i++)
        if (keys_tenant_sub(keys[i], sizeof(keys[i]), prefix(j), j->corp,
                            suite_id(j), dir_names[i])) {
            job_reject(j, "key names too long");
            return;
        }
    snprintf(now, sizeof(now), "%lld", wall_s());
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_CONTACT_APPLY);
    argv[2] = "4";
    argv[3] = keys[0];
    argv[4] = keys[1];
    argv[5] = keys[2];
    argv[6] = j->tenant_key;
    argv[7] = c.type;
    argv[8] = c.user;
    argv[9] = c.new_user;
    argv[10] = c.depts;
    argv[11] = c.party;
    argv[12] = c.parent;
    argv[13] = c.tag;
    argv[14] = c.add_users;
    argv[15] = c.del_users;
    argv[16] = c.add_parties;
    argv[17] = c.del_parties;
    argv[18] = now;
    job_redis(j, 19, argv, NULL, on_contact_applied);
}

/*---- external contact events: audit only ----*/

static void
external_event(struct job *j)
{
    const char *kv[12];
    size_t n = 0;
    static const char *const ids[] = {"ChangeType", "UserID", "ExternalUserID",
                                      "ChatId", "Id"};
    size_t i;

    kv[n++] = "info_type";
    kv[n++] = j->info_label;
    for (i = 0; i < nitems(ids); i++) {
        const char *v = wecom_xml_get(j->ev, ids[i]);

        if (v != NULL && strlen(v) <= 128) {
            kv[n++] = ids[i];
            kv[n++] = v;
        }
    }
    audit(j, "external_change", kv, n);
    publish_change(j);
    job_done(j, "recorded");
}

/*---- Dispatch ----*/

/* A provider-site install: the browser brought the AuthCode; it becomes
 * the create_auth WeCom would have pushed. */
static void
install_event(struct job *j)
{
    char ctx[KEYS_MAX + 8], *code = NULL;
    size_t len = 0;
    const char *k[4] = {"SuiteId", "InfoType", "TimeStamp", "AuthCode"};
    const char *v[4];
    enum brk_err err;

    if (!j->q->su->dk_loaded) {
        job_fail(j, BRK_ERR_STORE, 0, "suite data key not loaded");
        return;
    }
    if (keys_seal_ctx(ctx, sizeof(ctx), j->q->stream, "auth") ||
        keyring_open(j->q->su->dk, ctx, j->enc, strlen(j->enc), &code, &len)) {
        job_reject(j, "the sealed AuthCode does not open");
        return;
    }
    v[0] = suite_id(j);
    v[1] = "create_auth";
    v[2] = j->ts;
    v[3] = code;
    err = wecom_xml_build(k, v, 4, &j->plain, &j->plainlen);
    brk_free_secret(code, len);
    if (!err)
        err = wecom_xml_parse(j->plain, j->plainlen, NULL, &j->ev, NULL);
    if (err) {
        job_reject(j, brk_strerror(err));
        return;
    }
    snprintf(j->info_label, sizeof(j->info_label), "create_auth");
    j->event_ts = strtoll(j->ts, NULL, 10);
    j->reset = 0;
    start_exchange(j);
}

/*
 * Verify, decrypt and parse the job's event, which must be sealed for
 * receiveid: the queue is trusted only as far as WeCom's signature goes.
 * 0, or -1 after rejecting the job.
 */
static int
open_event(struct job *j, const char *receiveid)
{
    struct suite_rt *su = j->q->su;
    const char *rid_ok[1] = {receiveid};
    char *rid = NULL;
    size_t which;
    enum brk_err err;

    err = wecom_crypto_verify(su->crypto, j->sig, j->ts, j->nonce, j->enc);
    if (!err)
        err = wecom_crypto_decrypt(su->crypto, j->enc, strlen(j->enc),
                                   &j->plain, &j->plainlen, &rid);
    if (!err)
        err = wecom_crypto_check_receiveid(rid, rid_ok, 1, &which);
    brk_free(rid);
    if (!err)
        err = wecom_xml_parse(j->plain, j->plainlen, NULL, &j->ev, NULL);
    if (err) {
        job_reject(j, brk_strerror(err));
        return -1;
    }
    return 0;
}

/* An install handed over to the tenant's queue: its exchange result is
 * stored; go on from there in the tenant's order. */
static void
authx_event(struct job *j)
{
    const char *argv[2];

    if (j->lane == NULL || strlen(j->enc) >= sizeof(j->authx_key)) {
        job_reject(j, "a handed-over install outside a tenant's queue");
        return;
    }
    j->reset = strcmp(j->nonce, "1") == 0;
    snprintf(j->info_label, sizeof(j->info_label), "%s",
             j->reset ? "reset_permanent_code" : "create_auth");
    j->event_ts = strtoll(j->ts, NULL, 10);
    if (j->event_ts <= 0) {
        job_reject(j, "handed-over install without a TimeStamp");
        return;
    }
    snprintf(j->authx_key, sizeof(j->authx_key), "%s", j->enc);
    argv[0] = "GET";
    argv[1] = j->authx_key;
    job_redis(j, 2, argv, NULL, open_exchange);
}

/*---- Data callbacks: the app's admins ----*/

static void
on_admins_stored(struct job *j, struct redisReply *r)
{
    const char *kv[2] = {"info_type", "change_app_admin"};

    if (r->type == REDIS_REPLY_INTEGER && r->integer < 0) {
        job_done(j, "not_a_tenant");
        return;
    }
    audit(j, "admins_stored", kv, 2);
    publish_change(j);
    job_done(j, "stored");
}

static void
on_admin_list(struct job *j, json_t *body)
{
    char *admins = NULL, now[24];
    const char *argv[6];
    enum brk_err err;

    err = dir_admin_list(body, &admins);
    if (err) {
        job_fail(j, err, 0, "agent/get_admin_list: unexpected reply");
        return;
    }
    snprintf(now, sizeof(now), "%lld", wall_s());
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_TENANT_ADMINS_STORE);
    argv[2] = "1";
    argv[3] = j->tenant_key;
    argv[4] = admins;
    argv[5] = now;
    job_redis(j, 6, argv, NULL, on_admins_stored);
    brk_free(admins);
}

static void
on_admin_state(struct job *j, struct redisReply *r)
{
    char path[96];
    const char *status;
    long long ets, gone;
    json_t *req;

    if (state_of(r, &status, &ets, &gone) != 0) {
        job_fail(j, BRK_ERR_STORE, 0, "unexpected tenant state reply");
        return;
    }
    if (strcmp(status, "active") != 0) {
        job_done(j, status[0] ? "not_active" : "not_a_tenant");
        return;
    }
    snprintf(path, sizeof(path), "/cgi-bin/agent/get_admin_list");
    req = json_pack("{s:I}", "agentid", (json_int_t)j->agentid);
    job_api(j, "agent/get_admin_list", "POST", path, TOK_CORP_Q, req,
            on_admin_list);
}

static void
on_agentid(struct job *j, struct redisReply *r)
{
    if (r->type != REDIS_REPLY_STRING) {
        job_done(j, "not_a_tenant");
        return;
    }
    j->agentid = strtoll(r->str, NULL, 10);
    tenant_state(j, on_admin_state);
}

/*
 * A data callback in a tenant's queue (receiveid the corp). Only the
 * change of the app's admins is queued in this version: re-read them.
 */
static void
data_event(struct job *j)
{
    const char *event;
    const char *argv[3];

    if (j->lane == NULL) {
        /* queued by an earlier version, for no one */
        job_done(j, "ignored");
        return;
    }
    if (open_event(j, j->lane->corp) != 0)
        return;
    event = wecom_xml_get(j->ev, "Event");
    if (event == NULL || strcmp(event, "change_app_admin") != 0) {
        job_done(j, "ignored");
        return;
    }
    snprintf(j->info_label, sizeof(j->info_label), "change_app_admin");
    snprintf(j->corp, sizeof(j->corp), "%s", j->lane->corp);
    j->event_ts = brk_wall_ms() / 1000;
    if (keys_tenant(j->tenant_key, sizeof(j->tenant_key), prefix(j), j->corp,
                    suite_id(j))) {
        job_reject(j, "key names too long");
        return;
    }
    argv[0] = "HGET";
    argv[1] = j->tenant_key;
    argv[2] = "agentid";
    job_redis(j, 3, argv, NULL, on_agentid);
}

static const char *const known_types[] = {
    "create_auth",          "change_auth",         "cancel_auth",
    "reset_permanent_code", "change_contact",      "change_external_contact",
    "change_external_chat", "change_external_tag", "corp_arch_auth",
};

static void
job_dispatch(struct job *j)
{
    struct suite_rt *su = j->q->su;
    const char *ts, *corp;
    size_t i;

    snprintf(j->info_label, sizeof(j->info_label), "%s",
             strcmp(j->kind, "data") == 0 ? "data" : "unknown");
    if (strcmp(j->kind, "data") == 0) {
        data_event(j);
        return;
    }
    if (strcmp(j->kind, "install") == 0) {
        install_event(j);
        return;
    }
    if (strcmp(j->kind, "authx") == 0) {
        authx_event(j);
        return;
    }
    if (open_event(j, su->conf->suite_id) != 0)
        return;
    j->info_type = wecom_xml_get(j->ev, "InfoType");
    for (i = 0; j->info_type != NULL && i < nitems(known_types); i++)
        if (strcmp(j->info_type, known_types[i]) == 0)
            snprintf(j->info_label, sizeof(j->info_label), "%s",
                     known_types[i]);
    if (strcmp(j->info_label, "unknown") == 0) {
        job_done(j, "ignored");
        return;
    }
    ts = wecom_xml_get(j->ev, "TimeStamp");
    j->event_ts = ts ? strtoll(ts, NULL, 10) : 0;
    if (j->event_ts <= 0) {
        job_reject(j, "event without a TimeStamp");
        return;
    }
    if (strcmp(j->info_label, "create_auth") == 0 ||
        strcmp(j->info_label, "reset_permanent_code") == 0) {
        j->reset = strcmp(j->info_label, "reset_permanent_code") == 0;
        start_exchange(j);
        return;
    }
    corp = wecom_xml_get(j->ev, "AuthCorpId");
    if (corp == NULL || !keys_id_ok(corp)) {
        job_reject(j, "event without a usable AuthCorpId");
        return;
    }
    snprintf(j->corp, sizeof(j->corp), "%s", corp);
    if (keys_tenant(j->tenant_key, sizeof(j->tenant_key), prefix(j), j->corp,
                    suite_id(j))) {
        job_reject(j, "key names too long");
        return;
    }
    if (j->lane == NULL) {
        /* queued before tenants had queues of their own */
        char rcv[24];
        const char *kv[12] = {"kind",      j->kind, "msg_signature", j->sig,
                              "timestamp", j->ts,   "nonce",         j->nonce,
                              "encrypt",   j->enc,  "received_ms",   rcv};

        snprintf(rcv, sizeof(rcv), "%lld", brk_wall_ms());
        handover(j, kv, nitems(kv));
        return;
    }
    if (strcmp(j->corp, j->lane->corp) != 0) {
        job_reject(j, "event names another corp than its queue");
        return;
    }
    if (strcmp(j->info_label, "cancel_auth") == 0)
        cancel(j);
    else if (strcmp(j->info_label, "change_contact") == 0)
        tenant_state(j, on_contact_state);
    else if (strncmp(j->info_label, "change_external_", 16) == 0)
        external_event(j);
    else
        tenant_state(j, on_change_state);
}

/*---- Reading the streams ----*/

static char *
field_of(const struct redisReply *fields, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[i]->str, name) == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return brk_strndup(fields->element[i + 1]->str,
                               fields->element[i + 1]->len);
    return NULL;
}

/* Start a job for one entry [id, [f, v, ...]] of the suite stream (l
 * NULL) or of l's tenant queue. */
static void
take_entry(struct squeue *q, struct lane *l, const struct redisReply *e)
{
    struct job *j;
    long ms = q->w->cfg->event_claim_idle * 1000 / 3;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING ||
        e->element[0]->len >= sizeof(j->id))
        goto fail;
    j = brk_calloc(1, sizeof(*j));
    if (j == NULL)
        goto fail;
    j->w = q->w;
    j->q = q;
    j->lane = l;
    memcpy(j->id, e->element[0]->str, e->element[0]->len + 1);
    if (l != NULL) {
        l->cur = j;
    } else {
        j->next = q->jobs;
        if (q->jobs != NULL)
            q->jobs->prev = j;
        q->jobs = j;
        q->njobs++;
    }
    j->retry = evtimer_new(q->w->base, on_retry, j);
    j->keepalive = evtimer_new(q->w->base, on_keepalive, j);
    if (j->retry == NULL || j->keepalive == NULL) {
        job_end(j);
        return;
    }
    /* a lane keeps its lease fresh itself */
    if (l == NULL)
        evtimer_add(j->keepalive, &tv);
    if (e->element[1]->type != REDIS_REPLY_ARRAY) {
        /* deleted while pending: just acknowledge it */
        snprintf(j->info_label, sizeof(j->info_label), "unknown");
        job_done(j, "ignored");
        return;
    }
    j->kind = field_of(e->element[1], "kind");
    if (j->kind != NULL && strcmp(j->kind, "install") == 0) {
        /* a provider-site install: the AuthCode sealed, no envelope */
        j->enc = field_of(e->element[1], "auth");
        j->ts = field_of(e->element[1], "ts");
        j->sig = brk_strdup("");
        j->nonce = brk_strdup("");
    } else if (j->kind != NULL && strcmp(j->kind, "authx") == 0) {
        /* an install handed over: the exchange result waits under enc */
        j->enc = field_of(e->element[1], "authx");
        j->ts = field_of(e->element[1], "ts");
        j->nonce = field_of(e->element[1], "reset");
        j->sig = brk_strdup("");
    } else {
        j->sig = field_of(e->element[1], "msg_signature");
        j->ts = field_of(e->element[1], "timestamp");
        j->nonce = field_of(e->element[1], "nonce");
        j->enc = field_of(e->element[1], "encrypt");
    }
    if (!j->kind || !j->sig || !j->ts || !j->nonce || !j->enc) {
        job_reject(j, "queue entry lacks fields");
        return;
    }
    job_dispatch(j);
    return;
fail:
    if (l != NULL)
        lane_drop(l);
}

/*---- The suite stream ----*/

static unsigned
slots_for_jobs(const struct squeue *q)
{
    long max = q->w->cfg->event_concurrency;

    return q->njobs >= (size_t)max ? 0 : (unsigned)((size_t)max - q->njobs);
}

static void
on_read(enum brk_err err, struct redisReply *r, void *arg)
{
    struct squeue *q = arg;
    const struct redisReply *entries = NULL, *last;
    int history = q->pending_from[0] != '\0';
    size_t i, asked;

    q->reading = 0;
    if (q->w->stopping)
        return;
    if (err) {
        /* the stream (and its group) was deleted: create it again */
        if (r != NULL && r->str != NULL && strncmp(r->str, "NOGROUP", 7) == 0)
            q->group_ready = 0;
        squeue_poll_soon(q, err == BRK_ERR_STORE && r != NULL ? 0 : 1000);
        return;
    }
    /* XREADGROUP: [[stream, [entries]]] or nil */
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements == 2)
        entries = r->element[0]->element[1];
    asked = slots_for_jobs(q);
    if (entries == NULL || entries->elements == 0) {
        q->pending_from[0] = '\0';
        squeue_poll_soon(q, POLL_IDLE_MS);
        return;
    }
    if (history) {
        /* our own entries from before a restart: go on after the last */
        last = entries->element[entries->elements - 1];
        if (last->type == REDIS_REPLY_ARRAY && last->elements == 2 &&
            last->element[0]->type == REDIS_REPLY_STRING &&
            last->element[0]->len < sizeof(q->pending_from))
            snprintf(q->pending_from, sizeof(q->pending_from), "%s",
                     last->element[0]->str);
        else
            q->pending_from[0] = '\0';
    }
    for (i = 0; i < entries->elements; i++)
        take_entry(q, NULL, entries->element[i]);
    squeue_poll_soon(q, entries->elements >= asked ? 0 : POLL_IDLE_MS);
}

static void
read_stream(struct squeue *q)
{
    const char *argv[9];
    char count[16];

    snprintf(count, sizeof(count), "%u", slots_for_jobs(q));
    argv[0] = "XREADGROUP";
    argv[1] = "GROUP";
    argv[2] = WORKER_GROUP;
    argv[3] = q->w->consumer;
    argv[4] = "COUNT";
    argv[5] = count;
    argv[6] = "STREAMS";
    argv[7] = q->stream;
    /* first our own unfinished entries (a restart), then new ones */
    argv[8] = q->pending_from[0] ? q->pending_from : ">";
    q->reading = 1;
    if (store_cmd_argv(q->w->st, on_read, q, 9, argv, NULL)) {
        q->reading = 0;
        squeue_poll_soon(q, 1000);
    }
}

static void
on_autoclaim(enum brk_err err, struct redisReply *r, void *arg)
{
    struct squeue *q = arg;
    size_t i;

    q->reading = 0;
    if (q->w->stopping)
        return;
    if (err && r != NULL && r->str != NULL &&
        strncmp(r->str, "NOGROUP", 7) == 0) {
        q->group_ready = 0;
        squeue_poll_soon(q, 0);
        return;
    }
    /* XAUTOCLAIM: [next, [entries], [deleted]] */
    if (!err && r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
        r->element[1]->type == REDIS_REPLY_ARRAY &&
        r->element[1]->elements > 0) {
        log_info("suite %s: took over %zu event(s) left unfinished by "
                 "another instance",
                 q->su->conf->suite_id, r->element[1]->elements);
        for (i = 0; i < r->element[1]->elements; i++)
            take_entry(q, NULL, r->element[1]->element[i]);
    }
    if (slots_for_jobs(q) > 0)
        read_stream(q);
    else
        squeue_poll_soon(q, POLL_IDLE_MS);
}

static void
on_group(enum brk_err err, struct redisReply *r, void *arg)
{
    struct squeue *q = arg;

    q->reading = 0;
    if (q->w->stopping)
        return;
    if (!err ||
        (r != NULL && r->str != NULL && strncmp(r->str, "BUSYGROUP", 9) == 0))
        q->group_ready = 1;
    else
        log_warn("suite %s: cannot create the consumer group: %s",
                 q->su->conf->suite_id,
                 r && r->str ? r->str : brk_strerror(err));
    squeue_poll_soon(q, q->group_ready ? 0 : 1000);
}

static void
on_poll(evutil_socket_t fd, short what, void *arg)
{
    struct squeue *q = arg;
    struct worker *w = q->w;
    char idle[24], count[16];
    const char *argv[9];
    enum brk_err err;

    (void)fd;
    (void)what;
    if (w->stopping || !w->running || q->reading)
        return;
    if (slots_for_jobs(q) == 0)
        return; /* a job's end polls again */
    if (!store_is_up(w->st) || !q->su->dk_loaded) {
        squeue_poll_soon(q, 500);
        return;
    }
    q->reading = 1;
    if (!q->group_ready) {
        argv[0] = "XGROUP";
        argv[1] = "CREATE";
        argv[2] = q->stream;
        argv[3] = WORKER_GROUP;
        argv[4] = "0";
        argv[5] = "MKSTREAM";
        err = store_cmd_argv(w->st, on_group, q, 6, argv, NULL);
        if (err) {
            q->reading = 0;
            squeue_poll_soon(q, 1000);
        }
        return;
    }
    if (brk_mono_ms() - q->last_autoclaim >= AUTOCLAIM_MS) {
        q->last_autoclaim = brk_mono_ms();
        snprintf(idle, sizeof(idle), "%lld", w->cfg->event_claim_idle * 1000LL);
        snprintf(count, sizeof(count), "%u", slots_for_jobs(q));
        argv[0] = "XAUTOCLAIM";
        argv[1] = q->stream;
        argv[2] = WORKER_GROUP;
        argv[3] = w->consumer;
        argv[4] = idle;
        argv[5] = "0-0";
        argv[6] = "COUNT";
        argv[7] = count;
        err = store_cmd_argv(w->st, on_autoclaim, q, 8, argv, NULL);
        if (err) {
            q->reading = 0;
            squeue_poll_soon(q, 1000);
        }
        return;
    }
    q->reading = 0;
    read_stream(q);
}

static void
squeue_poll_soon(struct squeue *q, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    evtimer_add(q->poll, &tv);
}

/*---- Tenant queues: lanes ----*/

static void claim_soon(struct squeue *q, long ms);

static void
lane_unref(struct lane *l)
{
    if (--l->refs > 0)
        return;
    if (l->refresh != NULL)
        event_free(l->refresh);
    if (l->step != NULL)
        event_free(l->step);
    brk_free(l);
}

/* Forget the lane here (its lease is given back, or runs out). */
static void
lane_drop(struct lane *l)
{
    struct squeue *q = l->q;

    if (l->dropped)
        return;
    l->dropped = 1;
    if (l->prev != NULL)
        l->prev->next = l->next;
    else
        q->lanes = l->next;
    if (l->next != NULL)
        l->next->prev = l->prev;
    q->w->nlanes--;
    evtimer_del(l->refresh);
    evtimer_del(l->step);
    if (!q->w->stopping)
        claim_soon(q, 0);
    lane_unref(l);
}

static void
on_lane_backoff(enum brk_err err, struct redisReply *r, void *arg)
{
    struct lane *l = arg;

    (void)r;
    if (err && err != BRK_ERR_SHUTDOWN)
        log_warn("suite %s corp %s: backoff not recorded (%s); the lease "
                 "runs out instead",
                 l->q->su->conf->suite_id, l->corp, brk_strerror(err));
    lane_unref(l);
}

static void
lane_backoff(struct lane *l, long long delay_ms)
{
    l->ending = 1;
    l->refs++;
    if (evq_backoff(l->q->w->st, &l->k, l->corp, l->q->w->consumer, delay_ms,
                    on_lane_backoff, l) != BRK_OK)
        lane_unref(l);
}

static void
on_released(enum brk_err err, struct redisReply *r, void *arg)
{
    struct lane *l = arg;

    (void)r;
    l->waiting = 0;
    if (err && err != BRK_ERR_SHUTDOWN)
        log_warn("suite %s corp %s: lease not given back (%s); it runs out",
                 l->q->su->conf->suite_id, l->corp, brk_strerror(err));
    lane_drop(l);
    lane_unref(l);
}

static void
on_head(enum brk_err err, struct redisReply *r, void *arg)
{
    struct lane *l = arg;
    struct timeval tv = {0, 500 * 1000};

    l->waiting = 0;
    if (l->dropped || l->q->w->stopping) {
        lane_drop(l);
        lane_unref(l);
        return;
    }
    if (err || r->type != REDIS_REPLY_ARRAY) {
        evtimer_add(l->step, &tv);
        lane_unref(l);
        return;
    }
    if (r->elements == 0) {
        /* empty: give the tenant back unless something came meanwhile */
        l->waiting = 1;
        if (evq_release(l->q->w->st, &l->k, l->corp, l->seq, l->q->w->consumer,
                        on_released, l) != BRK_OK) {
            l->waiting = 0;
            lane_drop(l);
            lane_unref(l);
        }
        return;
    }
    take_entry(l->q, l, r->element[0]);
    lane_unref(l);
}

/* Work the head of the lane's queue, or give the tenant back. */
static void
lane_next(struct lane *l)
{
    struct timeval tv = {0, 500 * 1000};

    if (l->dropped || l->waiting || l->cur != NULL)
        return;
    if (l->q->w->stopping || l->ending) {
        lane_drop(l);
        return;
    }
    l->refs++;
    l->waiting = 1;
    if (evq_head(l->q->w->st, &l->k, on_head, l) != BRK_OK) {
        l->waiting = 0;
        l->refs--;
        evtimer_add(l->step, &tv);
    }
}

static void
on_lane_step(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    lane_next(arg);
}

static void
on_refreshed(enum brk_err err, struct redisReply *r, void *arg)
{
    struct lane *l = arg;

    if (!err && r->type == REDIS_REPLY_INTEGER && r->integer == 0 &&
        !l->dropped) {
        log_warn("suite %s corp %s: the tenant's lease was lost (this "
                 "instance stalled?); finishing the current event only",
                 l->q->su->conf->suite_id, l->corp);
        l->ending = 1;
    }
    lane_unref(l);
}

static void
on_lane_refresh(evutil_socket_t fd, short what, void *arg)
{
    struct lane *l = arg;
    long long lease = l->q->w->cfg->event_claim_idle * 1000LL;
    struct timeval tv = {(long)(lease / 3000), (long)(lease / 3 % 1000) * 1000};

    (void)fd;
    (void)what;
    if (l->dropped || l->q->w->stopping)
        return;
    l->refs++;
    if (evq_refresh(l->q->w->st, &l->k, l->corp, l->q->w->consumer, lease,
                    on_refreshed, l) != BRK_OK)
        l->refs--;
    evtimer_add(l->refresh, &tv);
}

static struct lane *
lane_find(const struct squeue *q, const char *corp)
{
    struct lane *l;

    for (l = q->lanes; l != NULL; l = l->next)
        if (strcmp(l->corp, corp) == 0)
            return l;
    return NULL;
}

/* A tenant was leased to us: start working its queue. */
static void
lane_start(struct squeue *q, const char *corp, const char *seq,
           const char *prev)
{
    struct worker *w = q->w;
    long long lease = w->cfg->event_claim_idle * 1000LL;
    struct timeval tv = {(long)(lease / 3000), (long)(lease / 3 % 1000) * 1000};
    struct lane *l;

    if (lane_find(q, corp) != NULL)
        return; /* ours already: the claim renewed its lease */
    l = brk_calloc(1, sizeof(*l));
    if (l == NULL || strlen(corp) >= sizeof(l->corp) ||
        strlen(seq) >= sizeof(l->seq) ||
        evq_keys(&l->k, w->cfg->key_prefix, q->su->conf->suite_id, corp)) {
        /* the lease runs out and another try comes later */
        log_warn("suite %s: cannot work a leased tenant (out of memory or "
                 "an unusable corpid)",
                 q->su->conf->suite_id);
        brk_free(l);
        return;
    }
    l->q = q;
    l->refs = 1;
    snprintf(l->corp, sizeof(l->corp), "%s", corp);
    snprintf(l->seq, sizeof(l->seq), "%s", seq);
    l->refresh = evtimer_new(w->base, on_lane_refresh, l);
    l->step = evtimer_new(w->base, on_lane_step, l);
    if (l->refresh == NULL || l->step == NULL) {
        lane_unref(l);
        return;
    }
    if (prev[0] != '\0' && strcmp(prev, w->consumer) != 0)
        log_info("suite %s corp %s: took over the tenant's queue from %s "
                 "(its lease ran out)",
                 q->su->conf->suite_id, corp, prev);
    l->next = q->lanes;
    if (q->lanes != NULL)
        q->lanes->prev = l;
    q->lanes = l;
    w->nlanes++;
    evtimer_add(l->refresh, &tv);
    lane_next(l);
}

static unsigned
slots_for_lanes(const struct worker *w)
{
    long max = w->cfg->event_concurrency;

    return w->nlanes >= (size_t)max ? 0 : (unsigned)((size_t)max - w->nlanes);
}

static void
on_claimed(enum brk_err err, struct redisReply *r, void *arg)
{
    struct squeue *q = arg;
    size_t i, got = 0;

    q->claiming = 0;
    if (q->w->stopping)
        return;
    if (err || r->type != REDIS_REPLY_ARRAY || r->elements % 3 != 0) {
        claim_soon(q, 1000);
        return;
    }
    for (i = 0; i + 2 < r->elements; i += 3) {
        if (r->element[i]->type != REDIS_REPLY_STRING ||
            r->element[i + 1]->type != REDIS_REPLY_STRING ||
            r->element[i + 2]->type != REDIS_REPLY_STRING)
            continue;
        lane_start(q, r->element[i]->str, r->element[i + 1]->str,
                   r->element[i + 2]->str);
        got++;
    }
    claim_soon(q, got >= CLAIM_BATCH ? 0 : POLL_IDLE_MS);
}

static void
on_reclaimed(enum brk_err err, struct redisReply *r, void *arg)
{
    struct squeue *q = arg;

    q->claiming = 0;
    if (q->w->stopping)
        return;
    if (!err) {
        q->reclaimed = 1;
        if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
            log_info("suite %s: resuming %lld tenant queue(s) this instance "
                     "held before",
                     q->su->conf->suite_id, r->integer);
    }
    claim_soon(q, err ? 1000 : 0);
}

static void
on_claim(evutil_socket_t fd, short what, void *arg)
{
    struct squeue *q = arg;
    struct worker *w = q->w;
    const char *keep[40];
    struct lane *l;
    unsigned slots, n = 0;
    enum brk_err err;

    (void)fd;
    (void)what;
    if (w->stopping || !w->running || q->claiming)
        return;
    if (!store_is_up(w->st) || !q->su->dk_loaded) {
        claim_soon(q, 500);
        return;
    }
    if (!q->reclaimed) {
        /* leases this instance held before a restart or a lost
         * connection, except those of lanes still working here */
        for (l = q->lanes; l != NULL && n < nitems(keep); l = l->next)
            keep[n++] = l->corp;
        if (l != NULL) {
            /* too many to name: let our old leases run out instead */
            q->reclaimed = 1;
            claim_soon(q, 0);
            return;
        }
        q->claiming = 1;
        err = evq_reclaim_own(w->st, &q->k, w->consumer, keep, n, on_reclaimed,
                              q);
        if (err) {
            q->claiming = 0;
            claim_soon(q, 1000);
        }
        return;
    }
    slots = slots_for_lanes(w);
    if (slots == 0)
        return; /* a lane's end claims again */
    q->claiming = 1;
    err =
        evq_claim(w->st, &q->k, w->consumer, w->cfg->event_claim_idle * 1000LL,
                  slots < CLAIM_BATCH ? slots : CLAIM_BATCH, on_claimed, q);
    if (err) {
        q->claiming = 0;
        claim_soon(q, 1000);
    }
}

static void
claim_soon(struct squeue *q, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    evtimer_add(q->claim, &tv);
}

/*---- Lifetime ----*/

void
worker_start(struct worker *w)
{
    size_t i;

    w->running = 1;
    for (i = 0; i < w->nq; i++) {
        struct squeue *q = &w->q[i];

        q->group_ready = 0;
        q->reading = 0;
        q->claiming = 0;
        /* after a lost connection: our leases of tenants no lane works on
         * any more are released before claiming again */
        q->reclaimed = 0;
        squeue_poll_soon(q, 0);
        claim_soon(q, 0);
    }
}

void
worker_stop(struct worker *w)
{
    w->stopping = 1;
    /* the budget is freed before the work in flight unwinds; the audit
     * trail is left alone from now on */
    w->budget = NULL;
    w->audit = NULL;
}

/*
 * Create the workers (see worker.h). Returns BRK_OK, BRK_ERR_NOMEM or
 * BRK_ERR_TOOBIG (names too long).
 */
enum brk_err
worker_new(struct event_base *base, const struct config *cfg,
           const struct keyring *kr, struct store *st, struct suites *suites,
           struct tokens *tok, struct wecom_api *api, const char *consumer,
           struct worker **out)
{
    struct worker *w;
    enum brk_err err = BRK_OK;
    size_t i;

    w = brk_calloc(1, sizeof(*w));
    if (w == NULL)
        return BRK_ERR_NOMEM;
    w->base = base;
    w->cfg = cfg;
    w->kr = kr;
    w->st = st;
    w->suites = suites;
    w->tok = tok;
    w->api = api;
    snprintf(w->consumer, sizeof(w->consumer), "%s", consumer);
    w->q = brk_calloc(suites->n, sizeof(*w->q));
    if (w->q == NULL) {
        brk_free(w);
        return BRK_ERR_NOMEM;
    }
    for (i = 0; i < suites->n; i++) {
        struct squeue *q = &w->q[i];

        q->w = w;
        q->su = &suites->v[i];
        snprintf(q->pending_from, sizeof(q->pending_from), "0");
        err = keys_suite_events(q->stream, sizeof(q->stream), cfg->key_prefix,
                                q->su->conf->suite_id);
        if (!err)
            err = evq_keys(&q->k, cfg->key_prefix, q->su->conf->suite_id, NULL);
        q->poll = err ? NULL : evtimer_new(base, on_poll, q);
        q->claim = err ? NULL : evtimer_new(base, on_claim, q);
        if (q->poll == NULL || q->claim == NULL) {
            w->nq = i + 1;
            worker_free(w);
            return err ? err : BRK_ERR_NOMEM;
        }
    }
    w->nq = suites->n;
    *out = w;
    return BRK_OK;
}

/* Write lifecycle entries through a (borrowed). Cannot fail. */
void
worker_set_audit(struct worker *w, struct audit *a)
{
    w->audit = a;
}

/* Use b (borrowed, must outlive the worker's work) for corp calls; see
 * worker.h. Cannot fail. */
void
worker_set_budget(struct worker *w, struct budget *b)
{
    w->budget = b;
}

/*
 * Use kr (borrowed) from now on, for the configuration reload. Work
 * already started may still hold the previous keyring, so the caller
 * keeps that one alive a while longer. Cannot fail.
 */
void
worker_set_keyring(struct worker *w, const struct keyring *kr)
{
    w->kr = kr;
}

void
worker_free(struct worker *w)
{
    size_t i;

    if (w == NULL)
        return;
    w->stopping = 1;
    for (i = 0; i < w->nq; i++) {
        struct squeue *q = &w->q[i];
        struct job *j;
        struct lane *l;

        while ((j = q->jobs) != NULL) {
            q->jobs = j->next;
            job_free(j);
        }
        while ((l = q->lanes) != NULL) {
            if (l->cur != NULL)
                job_free(l->cur);
            l->cur = NULL;
            lane_drop(l);
        }
        if (q->poll != NULL)
            event_free(q->poll);
        if (q->claim != NULL)
            event_free(q->claim);
    }
    brk_free(w->q);
    brk_free(w);
}
