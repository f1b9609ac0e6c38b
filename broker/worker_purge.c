/*
 * Event workers: cancel_auth, the purge of a tenant (see worker.c for the
 * engine; the purge steps themselves are purge.c's).
 * The callback chain run here, in order:
 *   worker_cancel -> on_gone_marked -> on_dk_deleted -> on_btoks_deleted ->
 *   purge_scan -> on_scanned -> on_deleted (-> purge_scan, per SCAN page,
 *   tenant keys then budget counters) -> purge_deliveries ->
 *   on_deliveries_purged -> purge_finish -> on_rewrite_reply -> on_rewrite
 *   -> on_report -> worker_deliver -> worker_job_done
 */

#include "worker_int.h"

/*---- cancel_auth: purge ----*/

static void purge_scan(struct job *j);

static void
on_report(struct job *j, struct redisReply *r)
{
    const char *kv[4] = {"info_type", "cancel_auth", "result", "purged"};

    (void)r;
    tokens_forget_tenant(j->w->tok, worker_suite_id(j), j->corp);
    worker_publish_change(j);
    worker_audit(j, "purged", kv, 4);
    log_info("tenant purged: suite=%s corp=%s keys: data_key=%ld tenant=%ld "
             "token=%ld directory=%ld lock=%ld other=%ld",
             worker_suite_id(j), j->corp, j->purged[0], j->purged[1],
             j->purged[2], j->purged[3], j->purged[4], j->purged[5]);
    /* cancel_auth goes to the services after the purge */
    worker_deliver(j, "purged");
}

/* Out of the index: the report, which marks the purge complete. */
static void
on_unindexed(struct job *j, struct redisReply *r)
{
    char gone[KEYS_MAX], report[256];
    const char *argv[5];

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
    if (worker_gone_key(j, gone, sizeof(gone))) {
        worker_job_reject(j, "key names too long");
        return;
    }
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_PURGE_REPORT);
    argv[2] = "1";
    argv[3] = gone;
    argv[4] = report;
    worker_job_redis(j, 5, argv, NULL, on_report);
}

/* The index entry first, on its own (another slot than the marker): a
 * purge stopped between the two has no report and runs again. */
static void
on_rewrite(struct job *j, struct redisReply *r)
{
    char idx[KEYS_MAX], member[200];
    const char *argv[3] = {"SREM", idx, member};
    int n;

    (void)r;
    n = snprintf(member, sizeof(member), "%s %s", worker_suite_id(j), j->corp);
    if (n < 0 || (size_t)n >= sizeof(member) ||
        keys_tenants(idx, sizeof(idx), worker_prefix(j))) {
        worker_job_reject(j, "key names too long");
        return;
    }
    worker_job_redis(j, 3, argv, NULL, on_unindexed);
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
        worker_job_fail(j, BRK_ERR_STORE, 0, "Redis unavailable");
}

static void
on_deliveries_purged(enum brk_err err, long long removed, void *arg)
{
    struct job *j = arg;

    if (err) {
        worker_job_fail(j, err, 0, "cannot purge the tenant's deliveries");
        return;
    }
    j->purged[5] += (long)removed;
    purge_finish(j);
}

/* The tenant's pending deliveries and dead letters, for every service. */
static void
purge_deliveries(struct job *j)
{
    enum brk_err err;

    if (j->w->delivery == NULL) {
        purge_finish(j);
        return;
    }
    err = delivery_purge_tenant(j->w->delivery, worker_suite_id(j), j->corp,
                                on_deliveries_purged, j);
    if (err)
        worker_job_fail(j, err, 0, "cannot purge the tenant's deliveries");
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
        purge_deliveries(j);
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
        worker_job_fail(j, BRK_ERR_STORE, 0, "unexpected SCAN reply");
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
        worker_job_fail(j, BRK_ERR_NOMEM, 0, "out of memory");
        return;
    }
    argv[argc++] = "UNLINK";
    for (i = 0; i < keys->elements; i++) {
        argv[argc++] = keys->element[i]->str;
        j->purged[purge_kind_of(keys->element[i]->str)]++;
    }
    worker_job_redis(j, (int)argc, argv, NULL, on_deleted);
    brk_free(argv);
}

static void
purge_scan(struct job *j)
{
    char pattern[KEYS_MAX];
    const char *argv[6];

    if (j->purge_budget
            ? keys_budget_pattern(pattern, sizeof(pattern), worker_prefix(j),
                                  j->corp)
            : keys_tenant_pattern(pattern, sizeof(pattern), worker_prefix(j),
                                  j->corp, worker_suite_id(j))) {
        worker_job_reject(j, "key names too long");
        return;
    }
    argv[0] = "SCAN";
    argv[1] = j->scan_cursor;
    argv[2] = "MATCH";
    argv[3] = pattern;
    argv[4] = "COUNT";
    argv[5] = "1000";
    worker_job_redis(j, 6, argv, NULL, on_scanned);
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
    if (keys_tenant_sub(set, sizeof(set), worker_prefix(j), j->corp,
                        worker_suite_id(j), "btoks")) {
        worker_job_reject(j, "key names too long");
        return;
    }
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_PURGE_BROKER_TOKENS);
    argv[2] = "1";
    argv[3] = set;
    argv[4] = worker_prefix(j);
    worker_job_redis(j, 5, argv, NULL, on_btoks_deleted);
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
        worker_job_done(j, "stale_dropped");
        return;
    }
    /* the data key first: once it is gone, copies of the sealed values
     * (backups, an AOF not yet rewritten) are unreadable */
    if (keys_tenant_sub(dk, sizeof(dk), worker_prefix(j), j->corp,
                        worker_suite_id(j), "dk")) {
        worker_job_reject(j, "key names too long");
        return;
    }
    argv[0] = "UNLINK";
    argv[1] = dk;
    worker_job_redis(j, 2, argv, NULL, on_dk_deleted);
}

void
worker_cancel(struct job *j)
{
    char gone[KEYS_MAX], ets[24], now[24];
    const char *argv[8];

    if (worker_gone_key(j, gone, sizeof(gone))) {
        worker_job_reject(j, "key names too long");
        return;
    }
    snprintf(ets, sizeof(ets), "%lld", j->event_ts);
    snprintf(now, sizeof(now), "%lld", worker_wall_s());
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_PURGE_MARK_GONE);
    argv[2] = "2";
    argv[3] = gone;
    argv[4] = j->tenant_key;
    argv[5] = ets;
    argv[6] = now;
    argv[7] = worker_suite_id(j);
    worker_job_redis(j, 8, argv, NULL, on_gone_marked);
}
