/*
 * Event workers: installs and grant changes (see worker.c for the engine).
 * The callback chain run here, in order:
 *   create_auth / reset_permanent_code (suite stream, or a browser's
 *   worker_install_event):
 *     worker_start_exchange -> open_exchange (a stored result?) ->
 *     [mark_tried -> on_tried] -> exchange (get_permanent_code) ->
 *     on_exchanged -> on_exchange_stored -> have_exchange ->
 *     worker_handover -> on_handed_over (the job ends; the tenant's queue
 *     takes it up as an authx event)
 *   authx (in the tenant's queue):
 *     worker_authx_event -> open_exchange -> have_exchange ->
 *     worker_load_tdk -> on_tdk -> on_tdk_for_install -> on_installed ->
 *     reread_grant
 *   change_auth / corp_arch_auth:
 *     worker_tenant_state -> worker_on_change_state (worker_tenant_gate;
 *     not_a_tenant -> on_reinstall) -> worker_load_tdk ->
 *     worker_on_tdk_for_pcode -> on_pcode_read -> reread_grant
 *   reread_grant -> on_auth_info -> on_permissions -> dir_sync ->
 *     sync_pump -> sync_call_start -> on_sync_budget -> on_sync_token ->
 *     on_sync_api (-> on_sync_wait, again) -> sync_settle -> finish_grant ->
 *     on_stage_cleared -> stage_next -> on_staged (per chunk) -> activate ->
 *     on_activated -> worker_deliver -> worker_job_done
 */

#include "errcodes.h"
#include "worker_int.h"

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

void
worker_sync_call_free(struct sync_call *c)
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
            worker_job_end(j);
        return;
    }
    if (j->sync_err == BRK_OK && dirsync_status(j->sync) != BRK_OK)
        sync_failed(j, dirsync_status(j->sync), 0,
                    "directory sync: unexpected reply");
    if (j->sync_err != BRK_OK) {
        if (j->sync_inflight == 0)
            worker_job_fail(j, j->sync_err, j->sync_errcode, "%s", j->sync_why);
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
        worker_sync_call_free(c);
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
        worker_sync_call_free(c);
        sync_settle(j);
        return;
    }
    if (res->err == BRK_ERR_WECOM && !c->retried &&
        tokens_is_corp_token_error(res->errcode)) {
        /* the token went bad: expire it if still current, retry once */
        c->retried = 1;
        tokens_corp_rejected(j->w->tok, worker_suite_id(j), j->corp, c->token);
        sync_call_start(c);
        return;
    }
    if (res->err == BRK_ERR_WECOM &&
        (res->errcode == WECOM_ERR_FREQ_LIMIT ||
         res->errcode == WECOM_ERR_CONCURRENT_LIMIT ||
         res->errcode == WECOM_ERR_BUSY) &&
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
    worker_sync_call_free(c);
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
        worker_sync_call_free(c);
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
    worker_sync_call_free(c);
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

    err = tokens_corp(c->j->w->tok, worker_suite_id(c->j), c->j->corp,
                      on_sync_token, c);
    if (err) {
        struct job *j = c->j;

        sync_budget_report(c, -1);
        sync_failed(j, err, 0, "directory sync: no corp token");
        worker_sync_call_free(c);
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
        worker_sync_call_free(c);
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
        worker_sync_call_free(c);
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
                worker_sync_call_free(c);
            sync_failed(j, BRK_ERR_NOMEM, 0, "out of memory");
            break;
        }
        j->sync_inflight++;
        sync_call_start(c);
    }
    if (j->sync_inflight > 0)
        return;
    if (j->sync_err != BRK_OK) {
        worker_job_fail(j, j->sync_err, j->sync_errcode, "%s", j->sync_why);
        return;
    }
    if (!dirsync_done(j->sync)) {
        worker_job_fail(j, BRK_ERR_UPSTREAM_BAD, 0,
                        "directory sync: stalled with calls unanswered");
        return;
    }
    dir_pairs_free(&j->parents);
    json_decref(j->users);
    json_decref(j->tags);
    j->users = j->tags = NULL;
    if (dirsync_result(j->sync, &j->parents, &j->users, &j->tags)) {
        worker_job_fail(j, BRK_ERR_NOMEM, 0, "directory sync: no result");
        return;
    }
    log_info("tenant %s of suite %s: directory synced (%s plan, %u calls, "
             "%zu members, %zu departments, %zu tags)",
             j->corp, worker_suite_id(j), dirsync_plan(j->sync),
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
        worker_job_fail(j, err, 0,
                        "directory sync: the grant cannot be planned "
                        "(get_auth_info without an agent?)");
        return;
    }
    sync_pump(j);
}

/*---- Writing the grant and directory ----*/

const char *const worker_dir_names[3] = {"dir:parents", "dir:users",
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
        worker_job_fail(j, err, 0, "directory too large or out of memory");
        return;
    }
    if (j->dir_phase >= 3) {
        dir_pairs_free(&tmp);
        activate(j);
        return;
    }
    err = keys_tenant_sub(key, sizeof(key), worker_prefix(j), j->corp,
                          worker_suite_id(j), worker_dir_names[j->dir_phase]);
    snprintf(stage, sizeof(stage), "%s:new", key);
    n = p->n - j->dir_i;
    if (n > HSET_CHUNK)
        n = HSET_CHUNK;
    argv = err ? NULL : brk_calloc(2 + 2 * n, sizeof(*argv));
    if (argv == NULL) {
        dir_pairs_free(&tmp);
        worker_job_fail(j, BRK_ERR_NOMEM, 0, "out of memory");
        return;
    }
    argv[argc++] = "HSET";
    argv[argc++] = stage;
    for (i = 0; i < n; i++) {
        argv[argc++] = p->field[j->dir_i + i];
        argv[argc++] = p->value[j->dir_i + i];
    }
    j->dir_i += n;
    worker_job_redis(j, (int)argc, argv, NULL, on_staged);
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
        worker_job_fail(j, BRK_ERR_UPSTREAM_BAD, 0,
                        "get_auth_info: no agent privilege in the reply");
        return;
    }
    for (i = 0; i < 3; i++) {
        char what[32];

        snprintf(what, sizeof(what), "%s:new", worker_dir_names[i]);
        if (keys_tenant_sub(live[i], sizeof(live[i]), worker_prefix(j), j->corp,
                            worker_suite_id(j), worker_dir_names[i]) ||
            keys_tenant_sub(staged[i], sizeof(staged[i]), worker_prefix(j),
                            j->corp, worker_suite_id(j), what))
            goto toobig;
    }
    snprintf(now, sizeof(now), "%lld", worker_wall_s());
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
    worker_job_redis(j, argc, argv, NULL, on_activated);
    free(privs);
    free(perms);
    return;
toobig:
    free(privs);
    free(perms);
    worker_job_reject(j, "key names too long");
}

static void
on_activated(struct job *j, struct redisReply *r)
{
    const char *kv[2] = {"info_type", j->info_label};

    if (r->type == REDIS_REPLY_INTEGER && r->integer < 0) {
        /* purged meanwhile: nothing to activate */
        worker_job_done(j, "gone");
        return;
    }
    tokens_forget_tenant(j->w->tok, worker_suite_id(j), j->corp);
    worker_publish_change(j);
    worker_audit(j, "grant_stored", kv, 2);
    /* create_auth once active, change_auth once the grant is stored */
    worker_deliver(j, "stored");
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
        if (keys_tenant_sub(base, sizeof(base), worker_prefix(j), j->corp,
                            worker_suite_id(j), worker_dir_names[i])) {
            worker_job_reject(j, "key names too long");
            return;
        }
        snprintf(keys[i], sizeof(keys[i]), "%s:new", base);
        argv[i + 1] = keys[i];
    }
    argv[0] = "DEL";
    worker_job_redis(j, 4, argv, NULL, on_stage_cleared);
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
    worker_job_api(j, "agent/get_permissions", "POST",
                   "/cgi-bin/agent/get_permissions", TOK_CORP_Q, json_object(),
                   on_permissions);
}

/* Re-read the grant: get_auth_info, permissions, directory, store. */
static void
reread_grant(struct job *j)
{
    json_t *req = json_pack("{s:s, s:s}", "auth_corpid", j->corp,
                            "permanent_code", j->pcode);

    worker_job_api(j, "get_auth_info", "POST", "/cgi-bin/service/get_auth_info",
                   TOK_SUITE_Q, req, on_auth_info);
}

/*---- Loading a tenant's secrets ----*/

static void
on_tdk(enum brk_err err, const unsigned char *dk, void *arg)
{
    struct job *j = arg;
    job_redis_step *next = j->redis_next;

    if (err == BRK_ERR_SHUTDOWN) {
        worker_job_end(j);
        return;
    }
    if (err) {
        worker_job_fail(j, err, 0, "tenant data key not available");
        return;
    }
    memcpy(j->tdk, dk, KEYRING_KEY_LEN);
    j->tdk_ok = 1;
    next(j, NULL);
}

void
worker_load_tdk(struct job *j, int create, job_redis_step *next)
{
    char key[KEYS_MAX], ctx[KEYS_MAX];
    enum brk_err err;

    err = keys_tenant_sub(key, sizeof(key), worker_prefix(j), j->corp,
                          worker_suite_id(j), "dk");
    snprintf(ctx, sizeof(ctx), "tenant:%s:%s", worker_suite_id(j), j->corp);
    j->redis_next = next;
    if (!err)
        err = datakey_load(j->w->st, j->w->kr, key, ctx, create, on_tdk, j);
    if (err)
        worker_job_fail(j, err, 0, "tenant data key not available");
}

static void
on_pcode_read(struct job *j, struct redisReply *r)
{
    char ctx[KEYS_MAX + 16];
    size_t len;

    if (r->type != REDIS_REPLY_STRING) {
        worker_job_fail(j, BRK_ERR_NOTFOUND, 0, "tenant has no permanent code");
        return;
    }
    if (keys_seal_ctx(ctx, sizeof(ctx), j->tenant_key, "pcode") ||
        keyring_open(j->tdk, ctx, r->str, r->len, &j->pcode, &len)) {
        worker_job_fail(j, BRK_ERR_CRYPTO, 0,
                        "stored permanent code does not open");
        return;
    }
    reread_grant(j);
}

void
worker_on_tdk_for_pcode(struct job *j, struct redisReply *r)
{
    const char *argv[] = {"HGET", j->tenant_key, "pcode"};

    (void)r;
    worker_job_redis(j, 3, argv, NULL, on_pcode_read);
}

/*---- Ordering and reinstall bookkeeping ----*/

/* "SUITE CORPID" into member, the tenant index into idx; nonzero when
 * the names do not fit. */
static int
index_entry(struct job *j, char *idx, size_t ilen, char *member, size_t mlen)
{
    int n = snprintf(member, mlen, "%s %s", worker_suite_id(j), j->corp);

    return n < 0 || (size_t)n >= mlen ||
           keys_tenants(idx, ilen, worker_prefix(j)) != BRK_OK;
}

static void
on_reinstall_indexed(struct job *j, struct redisReply *r)
{
    (void)r;
    log_warn("suite %s: corp %s sends events but is not a tenant, and "
             "an authorization was lost earlier: marked "
             "reinstall_required",
             worker_suite_id(j), j->corp);
    worker_audit(j, "reinstall_required", NULL, 0);
    worker_job_done(j, "reinstall_required");
}

static void
on_reinstall(struct job *j, struct redisReply *r)
{
    char idx[KEYS_MAX], member[200];
    const char *argv[3] = {"SADD", idx, member};

    if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
        /* the index is another slot: its own step (see the script) */
        if (index_entry(j, idx, sizeof(idx), member, sizeof(member))) {
            worker_job_reject(j, "key names too long");
            return;
        }
        worker_job_redis(j, 3, argv, NULL, on_reinstall_indexed);
        return;
    }
    worker_job_done(j, "not_a_tenant");
}

/* The suite's lost counter: without a lost install, nothing to mark. */
static void
on_lost_count(struct job *j, struct redisReply *r)
{
    char now[24], ets[24];
    const char *argv[6];

    if (r->type != REDIS_REPLY_STRING || strtoll(r->str, NULL, 10) <= 0) {
        worker_job_done(j, "not_a_tenant");
        return;
    }
    snprintf(now, sizeof(now), "%lld", worker_wall_s());
    snprintf(ets, sizeof(ets), "%lld", j->event_ts);
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_TENANT_REINSTALL_MARK);
    argv[2] = "1";
    argv[3] = j->tenant_key;
    argv[4] = now;
    argv[5] = ets;
    worker_job_redis(j, 6, argv, NULL, on_reinstall);
}

/* An event for a corp that is not a tenant: marked reinstall_required if
 * an install of the suite was lost. */
static void
not_a_tenant(struct job *j)
{
    char lost[KEYS_MAX];
    const char *argv[3] = {"HGET", lost, "count"};

    if (keys_suite(lost, sizeof(lost), worker_prefix(j), worker_suite_id(j),
                   "lost")) {
        worker_job_done(j, "not_a_tenant");
        return;
    }
    worker_job_redis(j, 3, argv, NULL, on_lost_count);
}

void
worker_tenant_state(struct job *j, job_redis_step *next)
{
    char gone[KEYS_MAX];
    const char *argv[5];

    if (worker_gone_key(j, gone, sizeof(gone))) {
        worker_job_reject(j, "key names too long");
        return;
    }
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_TENANT_STATE_READ);
    argv[2] = "2";
    argv[3] = j->tenant_key;
    argv[4] = gone;
    worker_job_redis(j, 5, argv, NULL, next);
}

/* Parse SCRIPT_TENANT_STATE_READ's reply; nonzero when the event predates
 * the cancel. */
int
worker_state_of(const struct redisReply *r, const char **status, long long *ets,
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
int
worker_tenant_gate(struct job *j, const struct redisReply *r)
{
    const char *status;
    long long ets, gone;

    if (worker_state_of(r, &status, &ets, &gone) != 0) {
        worker_job_fail(j, BRK_ERR_STORE, 0, "unexpected tenant state reply");
        return -1;
    }
    if (gone >= 0 && j->event_ts <= gone) {
        worker_job_done(j, "stale_dropped");
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
on_install_indexed(struct job *j, struct redisReply *r)
{
    const char *kv[2] = {"info_type", j->info_label};

    (void)r;
    worker_audit(j, "installing", kv, 2);
    reread_grant(j);
}

static void
on_installed(struct job *j, struct redisReply *r)
{
    const char *kv[2] = {"info_type", j->info_label};
    char idx[KEYS_MAX], member[200];
    const char *argv[3] = {"SADD", idx, member};

    if (r->type != REDIS_REPLY_INTEGER) {
        worker_job_fail(j, BRK_ERR_STORE, 0,
                        "install script: unexpected reply");
        return;
    }
    if (r->integer == -2 || r->integer == -3) {
        log_info("event %s: %s for %s predates the tenant's current state; "
                 "dropped",
                 j->id, j->info_label, j->corp);
        worker_job_done(j, "stale_dropped");
        return;
    }
    if (r->integer == -4) {
        worker_job_done(j, "not_a_tenant");
        return;
    }
    if (j->reset) {
        tokens_forget_tenant(j->w->tok, worker_suite_id(j), j->corp);
        worker_audit(j, "permanent_code_reset", kv, 2);
        worker_job_done(j, "stored");
        return;
    }
    /* the global index is another slot: its own step (see the script) */
    if (index_entry(j, idx, sizeof(idx), member, sizeof(member))) {
        worker_job_reject(j, "key names too long");
        return;
    }
    worker_job_redis(j, 3, argv, NULL, on_install_indexed);
}

static void
on_tdk_for_install(struct job *j, struct redisReply *r)
{
    const json_t *corp = json_object_get(j->exchange, "auth_corp_info");
    const char *name = json_string_value(json_object_get(corp, "corp_name"));
    char gone[KEYS_MAX], ets[24], now[24];
    char *sealed = NULL;
    const char *argv[13];

    (void)r;
    if (worker_gone_key(j, gone, sizeof(gone)) ||
        worker_seal_field(j, "pcode", j->pcode, &sealed)) {
        worker_job_fail(j, BRK_ERR_CRYPTO, 0, "cannot seal the permanent code");
        return;
    }
    snprintf(ets, sizeof(ets), "%lld", j->event_ts);
    snprintf(now, sizeof(now), "%lld", worker_wall_s());
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_TENANT_INSTALL);
    argv[2] = "2";
    argv[3] = j->tenant_key;
    argv[4] = gone;
    argv[5] = ets;
    argv[6] = sealed;
    argv[7] = name && strlen(name) < 256 ? name : "";
    argv[8] = now;
    argv[9] = j->reset ? "1" : "0";
    argv[10] = "";
    argv[11] = worker_suite_id(j);
    argv[12] = j->corp;
    worker_job_redis(j, 13, argv, NULL, on_installed);
    brk_free(sealed);
}

/*---- Handing an event over to its tenant's queue ----*/

static void
on_handed_over(struct job *j, struct redisReply *r)
{
    (void)r;
    worker_count_event(j, "handed_over");
    log_info("event %s handed over to the queue of corp %s: suite=%s "
             "info_type=%s",
             j->id, j->corp, worker_suite_id(j), j->info_label);
    worker_job_end(j);
}

/*
 * A suite-stream job that knows its corp now: move the event (kv, name and
 * value pairs) to that tenant's queue, so it takes its place in the
 * tenant's order, and acknowledge it here in the same step.
 */
void
worker_handover(struct job *j, const char *const *kv, size_t nkv)
{
    struct evq_keys k;
    enum brk_err err;

    err = evq_keys(&k, worker_prefix(j), worker_suite_id(j), j->corp);
    if (err) {
        worker_job_reject(j, "key names too long");
        return;
    }
    j->redis_next = on_handed_over;
    err =
        evq_handover(j->w->st, &k, j->corp, j->id, kv, nkv, worker_on_redis, j);
    if (err)
        worker_job_fail(j, err, 0, "Redis unavailable");
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
        worker_job_reject(j,
                          "get_permanent_code reply lacks a usable corpid or "
                          "permanent_code");
        return;
    }
    snprintf(j->corp, sizeof(j->corp), "%s", cid);
    if (keys_tenant(j->tenant_key, sizeof(j->tenant_key), worker_prefix(j),
                    j->corp, worker_suite_id(j))) {
        worker_job_reject(j, "key names too long");
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
        /* when WeCom (or the browser) got its answer, not now */
        snprintf(rcv, sizeof(rcv), "%lld",
                 j->received_ms > 0 ? j->received_ms : brk_wall_ms());
        worker_handover(j, kv, nitems(kv));
        return;
    }
    if (strcmp(j->corp, j->lane->corp) != 0) {
        worker_job_reject(j, "the exchange result names another corp");
        return;
    }
    j->pcode = brk_strdup(pc);
    if (j->pcode == NULL) {
        worker_job_fail(j, BRK_ERR_NOMEM, 0, "out of memory");
        return;
    }
    worker_load_tdk(j, !j->reset, on_tdk_for_install);
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
        worker_job_fail(j, BRK_ERR_CRYPTO, 0,
                        "cannot seal the exchange result");
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
    worker_job_redis(j, 5, argv, NULL, on_exchange_stored);
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

        worker_job_redis(j, 2, argv, NULL, open_exchange);
        return;
    }
    metrics_inc(METRICS_LOST_AUTHORIZATIONS,
                metrics_labels(labels, sizeof(labels), "suite",
                               worker_suite_id(j), NULL));
    log_error("suite %s: lost_authorization: an AuthCode was already used "
              "(40078) and no result of its exchange is stored; the corp "
              "will show as reinstall_required when it sends events",
              worker_suite_id(j));
    worker_job_done(j, "lost_authorization");
}

static int
on_exchange_error(struct job *j, long errcode)
{
    char lost[KEYS_MAX], now[24];
    const char *argv[7];

    if (errcode != WECOM_ERR_INVALID_AUTH_CODE)
        return 0;
    if (j->first_try) {
        /* anyone can reach /install/done: a code WeCom refuses on its
         * first exchange was made up or used elsewhere, no lost reply */
        log_warn("suite %s: WeCom refused the AuthCode a browser brought "
                 "to /install/done (40078); nothing installed",
                 worker_suite_id(j));
        worker_job_done(j, "refused");
        return 1;
    }
    /* single use: a 40078 means it was exchanged before; if that result
     * is not stored, a reply was lost */
    if (keys_suite(lost, sizeof(lost), worker_prefix(j), worker_suite_id(j),
                   "lost"))
        return 0;
    snprintf(now, sizeof(now), "%lld", worker_wall_s());
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_TENANT_LOST_COUNT);
    argv[2] = "2";
    argv[3] = lost;
    argv[4] = j->authx_key;
    argv[5] = now;
    worker_job_redis(j, 6, argv, NULL, on_lost_recorded);
    return 1;
}

static void
exchange(struct job *j)
{
    const char *code = wecom_xml_get(j->ev, "AuthCode");
    json_t *req = json_pack("{s:s}", "auth_code", code);

    j->api_on_wecom = on_exchange_error;
    worker_job_api(j, "get_permanent_code", "POST",
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
        worker_job_reject(j, "key names too long");
        return;
    }
    argv[0] = "SET";
    argv[1] = key;
    argv[2] = "1";
    argv[3] = "NX";
    argv[4] = "EX";
    argv[5] = "3600";
    worker_job_redis(j, 6, argv, NULL, on_tried);
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
            worker_job_reject(j,
                              "the stored exchange result expired before the "
                              "tenant's queue reached it");
        else if (strcmp(j->kind, "install") == 0)
            mark_tried(j);
        else
            exchange(j);
        return;
    }
    if (keyring_open(j->q->su->dk, j->authx_key, r->str, r->len, &text, &len)) {
        worker_job_fail(j, BRK_ERR_CRYPTO, 0,
                        "stored exchange result does not open");
        return;
    }
    v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    brk_free_secret(text, len);
    if (!json_is_object(v)) {
        json_decref(v);
        worker_job_reject(j, "stored exchange result is not JSON");
        return;
    }
    json_decref(j->exchange);
    j->exchange = v;
    have_exchange(j);
}

void
worker_start_exchange(struct job *j)
{
    const char *code = wecom_xml_get(j->ev, "AuthCode");
    const char *parts[3];
    char h[65], what[80];
    const char *argv[2];

    if (code == NULL || code[0] == '\0' || strlen(code) > 1024) {
        worker_job_reject(j, "event has no AuthCode");
        return;
    }
    if (!j->q->su->dk_loaded) {
        worker_job_fail(j, BRK_ERR_STORE, 0, "suite data key not loaded");
        return;
    }
    parts[0] = "authcode";
    parts[1] = worker_suite_id(j);
    parts[2] = code;
    keyring_index_hmac_parts(j->w->kr, parts, 3, h);
    snprintf(what, sizeof(what), "authx:%s", h);
    if (keys_suite(j->authx_key, sizeof(j->authx_key), worker_prefix(j),
                   worker_suite_id(j), what)) {
        worker_job_reject(j, "key names too long");
        return;
    }
    argv[0] = "GET";
    argv[1] = j->authx_key;
    worker_job_redis(j, 2, argv, NULL, open_exchange);
}

/*---- change_auth / corp_arch_auth ----*/

void
worker_on_change_state(struct job *j, struct redisReply *r)
{
    if (worker_tenant_gate(j, r) != 0)
        return;
    worker_load_tdk(j, 0, worker_on_tdk_for_pcode);
}

/*---- Entry points: a browser's install, a handed-over one ----*/

/* A provider-site install: the browser brought the AuthCode; it becomes
 * the create_auth WeCom would have pushed. */
void
worker_install_event(struct job *j)
{
    char ctx[KEYS_MAX + 8], *code = NULL;
    size_t len = 0;
    const char *k[4] = {"SuiteId", "InfoType", "TimeStamp", "AuthCode"};
    const char *v[4];
    enum brk_err err;

    if (!j->q->su->dk_loaded) {
        worker_job_fail(j, BRK_ERR_STORE, 0, "suite data key not loaded");
        return;
    }
    if (keys_seal_ctx(ctx, sizeof(ctx), j->q->stream, "auth") ||
        keyring_open(j->q->su->dk, ctx, j->enc, strlen(j->enc), &code, &len)) {
        worker_job_reject(j, "the sealed AuthCode does not open");
        return;
    }
    v[0] = worker_suite_id(j);
    v[1] = "create_auth";
    v[2] = j->ts;
    v[3] = code;
    err = wecom_xml_build(k, v, 4, &j->plain, &j->plainlen);
    brk_free_secret(code, len);
    if (!err)
        err = wecom_xml_parse(j->plain, j->plainlen, NULL, &j->ev, NULL);
    if (err) {
        worker_job_reject(j, brk_strerror(err));
        return;
    }
    snprintf(j->info_label, sizeof(j->info_label), "create_auth");
    j->event_ts = strtoll(j->ts, NULL, 10);
    j->reset = 0;
    worker_start_exchange(j);
}

/* An install handed over to the tenant's queue: its exchange result is
 * stored; go on from there in the tenant's order. */
void
worker_authx_event(struct job *j)
{
    const char *argv[2];

    if (j->lane == NULL || strlen(j->enc) >= sizeof(j->authx_key)) {
        worker_job_reject(j, "a handed-over install outside a tenant's queue");
        return;
    }
    j->reset = strcmp(j->nonce, "1") == 0;
    snprintf(j->info_label, sizeof(j->info_label), "%s",
             j->reset ? "reset_permanent_code" : "create_auth");
    j->event_ts = strtoll(j->ts, NULL, 10);
    if (j->event_ts <= 0) {
        worker_job_reject(j, "handed-over install without a TimeStamp");
        return;
    }
    snprintf(j->authx_key, sizeof(j->authx_key), "%s", j->enc);
    argv[0] = "GET";
    argv[1] = j->authx_key;
    worker_job_redis(j, 2, argv, NULL, open_exchange);
}
