/*
 * Event workers (see worker.h and evqueue.h): the stream and queue engine.
 * A job is one queued event, a chain of asynchronous steps (Redis, tokens,
 * WeCom) ending in exactly one of: done (acknowledged and deleted), retry
 * later, or dead letter.
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
 *
 * The callback chain run here, in order:
 *   suite stream: on_poll -> read_stream / XAUTOCLAIM -> on_read |
 *                 on_autoclaim -> take_entry -> job_dispatch
 *   tenant queues: on_claim -> on_claimed -> lane_start -> lane_next ->
 *                  on_head -> take_entry -> job_dispatch
 *   job_dispatch -> worker_open_event -> the event's chain (worker_install.c,
 *                   worker_purge.c, worker_events.c), whose steps go
 *                   through worker_job_redis -> worker_on_redis and
 *                   worker_job_api -> on_job_budget -> on_api_token ->
 *                   on_api, and end in one of
 *   worker_job_done -> on_acked -> worker_job_end -> lane_next (or the
 *                      next poll of the suite stream)
 *   worker_job_fail -> on_attempt_counted -> on_retry (again) | dead_letter
 *   worker_job_reject -> dead_letter
 * Each step lives in one file; worker_int.h lists what they share.
 */

#include "errcodes.h"
#include "worker_int.h"

static void squeue_poll_soon(struct squeue *q, long ms);
static void job_dispatch(struct job *j);

long long
worker_wall_s(void)
{
    return (long long)time(NULL);
}

const char *
worker_prefix(const struct job *j)
{
    return j->w->cfg->key_prefix;
}

const char *
worker_suite_id(const struct job *j)
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
    record_tenant_unref(j->ten);
    j->ten = NULL;
    j->ten_loaded = 0;
    j->chat_owner[0] = '\0';
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
        worker_sync_call_free(c);
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
void
worker_job_end(struct job *j)
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

void
worker_count_event(struct job *j, const char *result)
{
    char labels[192];

    metrics_inc(METRICS_EVENTS,
                metrics_labels(labels, sizeof(labels), "suite",
                               worker_suite_id(j), "info_type",
                               j->info_label[0] ? j->info_label : "unknown",
                               "result", result, NULL));
}

/*---- Redis and WeCom steps ----*/

void
worker_on_redis(enum brk_err err, struct redisReply *r, void *arg)
{
    struct job *j = arg;
    job_redis_step *next = j->redis_next;

    if (j->w->stopping && err == BRK_ERR_SHUTDOWN) {
        worker_job_end(j);
        return;
    }
    if (err) {
        worker_job_fail(j, err, 0, "Redis: %s",
                        r && r->str ? r->str : brk_strerror(err));
        return;
    }
    next(j, r);
}

void
worker_job_redis(struct job *j, int argc, const char **argv, const size_t *lens,
                 job_redis_step *next)
{
    enum brk_err err;

    j->redis_next = next;
    err = store_cmd_argv(j->w->st, worker_on_redis, j, argc, argv, lens);
    if (err)
        worker_job_fail(j, err, 0, "Redis unavailable");
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
        worker_job_end(j);
        return;
    }
    if (res->err == BRK_ERR_WECOM && !j->api_retried &&
        ((j->api_tok == TOK_CORP_Q &&
          tokens_is_corp_token_error(res->errcode)) ||
         (j->api_tok == TOK_SUITE_Q &&
          errcodes_suite_token_refused(res->errcode)))) {
        /* the token went bad: expire it if still current, retry once */
        j->api_retried = 1;
        if (j->api_tok == TOK_CORP_Q)
            tokens_corp_rejected(j->w->tok, worker_suite_id(j), j->corp,
                                 j->api_token);
        else
            tokens_suite_rejected(j->w->tok, worker_suite_id(j), j->api_token);
        api_with_token(j);
        return;
    }
    if (res->err == BRK_ERR_WECOM && on_wecom != NULL &&
        on_wecom(j, res->errcode))
        return;
    if (res->err) {
        worker_job_fail(j, res->err, res->errcode, "%s: %s%s%s", j->api_name,
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
        worker_job_end(j);
        return;
    }
    if (err) {
        worker_job_fail(j, err, errcode, "%s: no %s token", j->api_name,
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
        worker_job_fail(j, BRK_ERR_NOMEM, 0, "out of memory");
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
        worker_job_fail(j, err, 0, "%s: cannot start the call", j->api_name);
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
        worker_job_fail(j, BRK_ERR_WECOM, budget_errcode(res),
                        "%s: upstream budget %s", j->api_name,
                        budget_result_name(res));
        return;
    }
    j->api_budgeted = 1;
    err = tokens_corp(j->w->tok, worker_suite_id(j), j->corp, on_api_token, j);
    if (err)
        worker_job_fail(j, err, 0, "%s: no token", j->api_name);
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
            worker_job_fail(j, err, 0, "%s: upstream budget unavailable",
                            j->api_name);
        return;
    }
    if (j->api_tok == TOK_CORP_Q)
        err = tokens_corp(j->w->tok, worker_suite_id(j), j->corp, on_api_token,
                          j);
    else
        err = tokens_suite(j->w->tok, worker_suite_id(j), on_api_token, j);
    if (err)
        worker_job_fail(j, err, 0, "%s: no token", j->api_name);
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
void
worker_job_api(struct job *j, const char *name, const char *method,
               const char *path, enum tok_use tok, json_t *req,
               job_api_step *next)
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
        worker_job_fail(j, BRK_ERR_NOMEM, 0, "out of memory");
        return;
    }
    api_with_token(j);
}

/*---- Ending: done, retry, dead letter ----*/

static void
on_acked(struct job *j, struct redisReply *r)
{
    (void)r;
    worker_job_end(j);
}

void
worker_job_done(struct job *j, const char *result)
{
    char attempts[KEYS_MAX];
    const char *argv[7];

    worker_count_event(j, result);
    log_info("event %s done: suite=%s%s%s info_type=%s result=%s", j->id,
             worker_suite_id(j), j->lane ? " corp=" : "",
             j->lane ? j->lane->corp : "",
             j->info_label[0] ? j->info_label : "-", result);
    if (j->lane != NULL) {
        j->redis_next = on_acked;
        if (evq_ack(j->w->st, &j->lane->k, j->id, worker_on_redis, j) != BRK_OK)
            worker_job_end(j);
        return;
    }
    if (keys_suite(attempts, sizeof(attempts), worker_prefix(j),
                   worker_suite_id(j), "attempts")) {
        worker_job_end(j);
        return;
    }
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_STREAM_ACK);
    argv[2] = "2";
    argv[3] = j->q->stream;
    argv[4] = attempts;
    argv[5] = WORKER_GROUP;
    argv[6] = j->id;
    worker_job_redis(j, 7, argv, NULL, on_acked);
}

static void
dead_letter(struct job *j, const char *reason)
{
    char attempts[KEYS_MAX], dead[KEYS_MAX], n[16];
    const char *argv[10];

    worker_count_event(j, "dead_letter");
    log_error("event %s dead-lettered after %d attempt(s): suite=%s%s%s "
              "info_type=%s: %s",
              j->id, j->attempts, worker_suite_id(j), j->lane ? " corp=" : "",
              j->lane ? j->lane->corp : "",
              j->info_label[0] ? j->info_label : "-", reason);
    if (j->lane != NULL) {
        /* on failure the entry stays queued and is tried again later */
        j->redis_next = on_acked;
        if (evq_dead(j->w->st, &j->lane->k, j->lane->corp, j->id, reason,
                     j->attempts, worker_on_redis, j) != BRK_OK)
            worker_job_end(j);
        return;
    }
    if (keys_suite(attempts, sizeof(attempts), worker_prefix(j),
                   worker_suite_id(j), "attempts") ||
        keys_suite(dead, sizeof(dead), worker_prefix(j), worker_suite_id(j),
                   "dead")) {
        worker_job_end(j);
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
    if (store_cmd_argv(j->w->st, worker_on_redis, j, 10, argv, NULL) != BRK_OK)
        worker_job_end(j);
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;

    (void)fd;
    (void)what;
    if (j->w->stopping) {
        worker_job_end(j);
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
             j->id, j->attempts, backoff, worker_suite_id(j),
             j->lane ? " corp=" : "", j->lane ? j->lane->corp : "",
             j->info_label[0] ? j->info_label : "-", f->reason);
    worker_count_event(j, "retry");
    if (j->lane != NULL) {
        /* the tenant waits out its backoff without holding a lane */
        lane_backoff(j->lane, backoff);
        brk_free(f);
        worker_job_end(j);
        return;
    }
    tv.tv_sec = backoff / 1000;
    tv.tv_usec = (backoff % 1000) * 1000;
    evtimer_add(j->retry, &tv);
    brk_free(f);
}

void
worker_job_fail(struct job *j, enum brk_err err, long errcode, const char *fmt,
                ...)
{
    struct fail_ctx *f;
    char attempts[KEYS_MAX];
    const char *argv[4];
    va_list ap;
    size_t n;

    job_budget_report(j, -1);
    if (j->w->stopping || err == BRK_ERR_SHUTDOWN) {
        worker_job_end(j);
        return;
    }
    f = brk_calloc(1, sizeof(*f));
    if (f == NULL) {
        worker_job_end(j);
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
    if (keys_suite(attempts, sizeof(attempts), worker_prefix(j),
                   worker_suite_id(j), "attempts")) {
        brk_free(f);
        worker_job_end(j);
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
void
worker_job_reject(struct job *j, const char *reason)
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

enum brk_err
worker_gone_key(struct job *j, char *out, size_t len)
{
    const char *parts[3] = {"gone", worker_suite_id(j), j->corp};
    char h[65];

    keyring_index_hmac_parts(j->w->kr, parts, 3, h);
    return keys_gone(out, len, worker_prefix(j), j->corp, h);
}

void
worker_publish_change(struct job *j)
{
    char chan[KEYS_MAX], msg[200];
    const char *argv[3];

    snprintf(chan, sizeof(chan), "%s%s", worker_prefix(j),
             WORKER_INVAL_CHANNEL);
    snprintf(msg, sizeof(msg), "%s %s", worker_suite_id(j), j->corp);
    argv[0] = "PUBLISH";
    argv[1] = chan;
    argv[2] = msg;
    if (store_cmd_argv(j->w->st, on_keepalive_reply, NULL, 3, argv, NULL))
        log_warn("could not publish the change of %s", worker_suite_id(j));
}

void
worker_audit(struct job *j, const char *event, const char *const *kv, size_t n)
{
    char now[24];
    const char *e[32];
    size_t m = 0, i;

    if (j->w->audit == NULL)
        return;
    snprintf(now, sizeof(now), "%lld", worker_wall_s());
    e[m++] = "type";
    e[m++] = "lifecycle";
    e[m++] = "event";
    e[m++] = event;
    e[m++] = "suite";
    e[m++] = worker_suite_id(j);
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

static void
on_delivered(enum brk_err err, void *arg)
{
    struct job *j = arg;
    const char *result = j->deliver_result;

    j->deliver_result = NULL;
    if (err) {
        worker_job_fail(j, err, 0, "cannot queue the event for services: %s",
                        brk_strerror(err));
        return;
    }
    worker_job_done(j, result);
}

/*
 * The event took effect (result says how): hand it to the delivery to
 * services (delivery_route), then end the job as done. An event that
 * cannot be queued is retried like any failed step; queueing twice is
 * harmless (one copy per service and event).
 */
void
worker_deliver(struct job *j, const char *result)
{
    struct delivery_event ev;
    const char *ct = j->ev ? wecom_xml_get(j->ev, "ChangeType") : NULL;
    char ts[24];
    enum brk_err err;

    if (j->w->delivery == NULL || j->corp[0] == '\0') {
        worker_job_done(j, result);
        return;
    }
    snprintf(ts, sizeof(ts), "%lld", j->event_ts);
    memset(&ev, 0, sizeof(ev));
    ev.suite = worker_suite_id(j);
    ev.corp = j->corp;
    ev.info_type = j->info_label;
    ev.change_type = ct;
    ev.timestamp = ts;
    ev.src_id = j->id;
    ev.received_ms = j->received_ms;
    /* create_auth's AuthCode is never delivered; its AuthCorpId is added */
    ev.removed = strcmp(j->info_label, "create_auth") == 0 ? "AuthCode" : "";
    if (!delivery_is_lifecycle(j->info_label)) {
        /* stored as WeCom sent it; the inner XML only decides */
        ev.encrypt = j->enc;
        ev.plain = j->plain;
        ev.plain_len = j->plainlen;
        ev.tenant = j->ten;
        ev.data = strcmp(j->kind, "data") == 0;
        ev.agentid = ev.data && j->ev ? wecom_xml_get(j->ev, "AgentID") : NULL;
        ev.chat_owner = j->chat_owner[0] ? j->chat_owner : NULL;
        if (ev.data)
            ev.change_type = NULL;
    }
    j->deliver_result = result;
    err = delivery_route(j->w->delivery, &ev, on_delivered, j);
    if (err) {
        j->deliver_result = NULL;
        worker_job_fail(j, err, 0, "cannot queue the event for services: %s",
                        brk_strerror(err));
    }
}

enum brk_err
worker_seal_field(struct job *j, const char *field, const char *value,
                  char **out)
{
    char ctx[KEYS_MAX + 16];

    if (keys_seal_ctx(ctx, sizeof(ctx), j->tenant_key, field))
        return BRK_ERR_TOOBIG;
    return keyring_seal(j->tdk, ctx, value, strlen(value), out, NULL);
}

/*---- Dispatch ----*/

/*
 * Verify, decrypt and parse the job's event, which must be sealed for
 * receiveid: the queue is trusted only as far as WeCom's signature goes.
 * 0, or -1 after rejecting the job.
 */
int
worker_open_event(struct job *j, const char *receiveid)
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
        worker_job_reject(j, brk_strerror(err));
        return -1;
    }
    return 0;
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
        worker_data_event(j);
        return;
    }
    if (strcmp(j->kind, "install") == 0) {
        worker_install_event(j);
        return;
    }
    if (strcmp(j->kind, "authx") == 0) {
        worker_authx_event(j);
        return;
    }
    if (worker_open_event(j, su->conf->suite_id) != 0)
        return;
    j->info_type = wecom_xml_get(j->ev, "InfoType");
    for (i = 0; j->info_type != NULL && i < nitems(known_types); i++)
        if (strcmp(j->info_type, known_types[i]) == 0)
            snprintf(j->info_label, sizeof(j->info_label), "%s",
                     known_types[i]);
    if (strcmp(j->info_label, "unknown") == 0) {
        worker_job_done(j, "ignored");
        return;
    }
    ts = wecom_xml_get(j->ev, "TimeStamp");
    j->event_ts = ts ? strtoll(ts, NULL, 10) : 0;
    if (j->event_ts <= 0) {
        worker_job_reject(j, "event without a TimeStamp");
        return;
    }
    if (strcmp(j->info_label, "create_auth") == 0 ||
        strcmp(j->info_label, "reset_permanent_code") == 0) {
        j->reset = strcmp(j->info_label, "reset_permanent_code") == 0;
        worker_start_exchange(j);
        return;
    }
    corp = wecom_xml_get(j->ev, "AuthCorpId");
    if (corp == NULL || !keys_id_ok(corp)) {
        worker_job_reject(j, "event without a usable AuthCorpId");
        return;
    }
    snprintf(j->corp, sizeof(j->corp), "%s", corp);
    if (keys_tenant(j->tenant_key, sizeof(j->tenant_key), worker_prefix(j),
                    j->corp, worker_suite_id(j))) {
        worker_job_reject(j, "key names too long");
        return;
    }
    if (j->lane == NULL) {
        /* queued before tenants had queues of their own */
        char rcv[24];
        const char *kv[12] = {"kind",      j->kind, "msg_signature", j->sig,
                              "timestamp", j->ts,   "nonce",         j->nonce,
                              "encrypt",   j->enc,  "received_ms",   rcv};

        snprintf(rcv, sizeof(rcv), "%lld",
                 j->received_ms > 0 ? j->received_ms : brk_wall_ms());
        worker_handover(j, kv, nitems(kv));
        return;
    }
    if (strcmp(j->corp, j->lane->corp) != 0) {
        worker_job_reject(j, "event names another corp than its queue");
        return;
    }
    if (strcmp(j->info_label, "cancel_auth") == 0)
        worker_cancel(j);
    else if (strcmp(j->info_label, "change_contact") == 0)
        worker_tenant_state(j, worker_on_contact_state);
    else if (strncmp(j->info_label, "change_external_", 16) == 0)
        worker_external_event(j);
    else
        worker_tenant_state(j, worker_on_change_state);
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
        worker_job_end(j);
        return;
    }
    /* a lane keeps its lease fresh itself */
    if (l == NULL)
        evtimer_add(j->keepalive, &tv);
    if (e->element[1]->type != REDIS_REPLY_ARRAY) {
        /* deleted while pending: just acknowledge it */
        snprintf(j->info_label, sizeof(j->info_label), "unknown");
        worker_job_done(j, "ignored");
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
    {
        char *rcv = field_of(e->element[1], "received_ms");

        j->received_ms = rcv ? strtoll(rcv, NULL, 10) : 0;
        brk_free(rcv);
        /* else the entry's id: when it was stored (a value in seconds,
         * as older installs wrote it, too) */
        if (j->received_ms < 100000000000LL)
            j->received_ms = strtoll(j->id, NULL, 10);
    }
    if (!j->kind || !j->sig || !j->ts || !j->nonce || !j->enc) {
        worker_job_reject(j, "queue entry lacks fields");
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
    if (w->q == NULL || worker_tenants_new(&w->tens) != BRK_OK) {
        brk_free(w->q);
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

/* Hand the events that took effect to d; see worker.h. Cannot fail. */
void
worker_set_delivery(struct worker *w, struct delivery *d)
{
    w->delivery = d;
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
    worker_tenants_free(w->tens);
    brk_free(w);
}

/* Count the tenants kept against b (borrowed, outlives w); before the
 * worker starts. */
void
worker_set_cache_budget(struct worker *w, struct cache_budget *b)
{
    worker_tenants_set_budget(w->tens, b);
}

/* Forget the tenants kept (a reconnect: the store may have lost writes,
 * so a generation may come back with other contents). */
void
worker_drop_caches(struct worker *w)
{
    if (w != NULL)
        worker_tenants_clear(w->tens);
}
