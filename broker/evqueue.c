/*
 * The event queues (see evqueue.h). Time in the scripts is Redis's own
 * (TIME), so instances with skewed clocks agree on leases and backoffs.
 */
#include <stdio.h>
#include <string.h>

#include "evqueue.h"
#include "scripts.h"

#define MAX_FIELDS 24 /* name/value pairs of one entry */

static enum brk_err
fmt(char *out, size_t len, const char *prefix, const char *suite,
    const char *what, const char *corp)
{
    int n = snprintf(out, len, "%s{%s}:%s%s%s", prefix, suite, what,
                     corp ? ":" : "", corp ? corp : "");

    return n < 0 || (size_t)n >= len ? BRK_ERR_TOOBIG : BRK_OK;
}

enum brk_err
evq_keys(struct evq_keys *k, const char *prefix, const char *suite,
         const char *corp)
{
    struct evq_keys t;

    memset(&t, 0, sizeof(t));
    if (corp != NULL && !keys_id_ok(corp))
        return BRK_ERR_INVAL;
    if (keys_suite_events(t.events, sizeof(t.events), prefix, suite) ||
        fmt(t.attempts, sizeof(t.attempts), prefix, suite, "attempts", NULL) ||
        fmt(t.ready, sizeof(t.ready), prefix, suite, "ready", NULL) ||
        fmt(t.lease, sizeof(t.lease), prefix, suite, "lease", NULL) ||
        fmt(t.seq, sizeof(t.seq), prefix, suite, "qseq", NULL) ||
        fmt(t.dead, sizeof(t.dead), prefix, suite, "dead", NULL))
        return BRK_ERR_TOOBIG;
    if (corp != NULL && (fmt(t.q, sizeof(t.q), prefix, suite, "q", corp) ||
                         fmt(t.qa, sizeof(t.qa), prefix, suite, "qa", corp)))
        return BRK_ERR_TOOBIG;
    *k = t;
    return BRK_OK;
}

/* EVAL script with keys then args; at most 48 arguments in all. */
static enum brk_err
eval(struct store *st, store_reply_cb *cb, void *arg, const char *script,
     const char *const *keys, int nkeys, const char *const *args, size_t nargs)
{
    const char *argv[48];
    char n[8];
    int argc = 0, i;
    size_t a;

    if (3 + (size_t)nkeys + nargs > nitems(argv))
        return BRK_ERR_TOOBIG;
    snprintf(n, sizeof(n), "%d", nkeys);
    argv[argc++] = "EVAL";
    argv[argc++] = script;
    argv[argc++] = n;
    for (i = 0; i < nkeys; i++)
        argv[argc++] = keys[i];
    for (a = 0; a < nargs; a++)
        argv[argc++] = args[a];
    return store_cmd_argv(st, cb, arg, argc, argv, NULL);
}

enum brk_err
evq_push(struct store *st, const struct evq_keys *k, const char *corp,
         const char *seen, long ttl_s, const char *const *kv, size_t nkv,
         store_reply_cb *cb, void *arg)
{
    const char *keys[4], *args[2 + 2 * MAX_FIELDS];
    char ttl[24];
    size_t i;

    if (nkv % 2 != 0 || nkv > 2 * MAX_FIELDS || (corp != NULL && !k->q[0]))
        return BRK_ERR_INVAL;
    snprintf(ttl, sizeof(ttl), "%ld", ttl_s);
    keys[0] = seen;
    keys[1] = corp != NULL ? k->q : k->events;
    keys[2] = k->ready;
    keys[3] = k->seq;
    args[0] = ttl;
    args[1] = corp != NULL ? corp : "";
    for (i = 0; i < nkv; i++)
        args[2 + i] = kv[i];
    return eval(st, cb, arg, scripts_text(SCRIPT_EVQ_PUSH), keys, 4, args,
                2 + nkv);
}

enum brk_err
evq_handover(struct store *st, const struct evq_keys *k, const char *corp,
             const char *id, const char *const *kv, size_t nkv,
             store_reply_cb *cb, void *arg)
{
    const char *keys[5], *args[3 + 2 * MAX_FIELDS];
    size_t i;

    if (nkv == 0 || nkv % 2 != 0 || nkv > 2 * MAX_FIELDS || !k->q[0])
        return BRK_ERR_INVAL;
    keys[0] = k->events;
    keys[1] = k->attempts;
    keys[2] = k->q;
    keys[3] = k->ready;
    keys[4] = k->seq;
    args[0] = EVQ_GROUP;
    args[1] = id;
    args[2] = corp;
    for (i = 0; i < nkv; i++)
        args[3 + i] = kv[i];
    return eval(st, cb, arg, scripts_text(SCRIPT_EVQ_HANDOVER), keys, 5, args,
                3 + nkv);
}

enum brk_err
evq_claim(struct store *st, const struct evq_keys *k, const char *me,
          long long lease_ms, unsigned max, store_reply_cb *cb, void *arg)
{
    const char *keys[3] = {k->ready, k->lease, k->seq};
    char ms[24], n[16];
    const char *args[3] = {ms, me, n};

    snprintf(ms, sizeof(ms), "%lld", lease_ms);
    snprintf(n, sizeof(n), "%u", max);
    return eval(st, cb, arg, scripts_text(SCRIPT_EVQ_CLAIM), keys, 3, args, 3);
}

enum brk_err
evq_reclaim_own(struct store *st, const struct evq_keys *k, const char *me,
                const char *const *keep, size_t nkeep, store_reply_cb *cb,
                void *arg)
{
    const char *keys[2] = {k->ready, k->lease}, *args[41];
    size_t i;

    if (nkeep > 40)
        nkeep = 40;
    args[0] = me;
    for (i = 0; i < nkeep; i++)
        args[1 + i] = keep[i];
    return eval(st, cb, arg, scripts_text(SCRIPT_EVQ_RECLAIM), keys, 2, args,
                1 + nkeep);
}

enum brk_err
evq_refresh(struct store *st, const struct evq_keys *k, const char *corp,
            const char *me, long long lease_ms, store_reply_cb *cb, void *arg)
{
    const char *keys[2] = {k->ready, k->lease};
    char ms[24];
    const char *args[3] = {corp, me, ms};

    snprintf(ms, sizeof(ms), "%lld", lease_ms);
    return eval(st, cb, arg, scripts_text(SCRIPT_EVQ_REFRESH), keys, 2, args,
                3);
}

enum brk_err
evq_release(struct store *st, const struct evq_keys *k, const char *corp,
            const char *seq, const char *me, store_reply_cb *cb, void *arg)
{
    const char *keys[5] = {k->ready, k->lease, k->seq, k->q, k->qa};
    const char *args[3] = {corp, seq, me};

    if (!k->q[0])
        return BRK_ERR_INVAL;
    return eval(st, cb, arg, scripts_text(SCRIPT_EVQ_RELEASE), keys, 5, args,
                3);
}

enum brk_err
evq_backoff(struct store *st, const struct evq_keys *k, const char *corp,
            const char *me, long long delay_ms, store_reply_cb *cb, void *arg)
{
    const char *keys[2] = {k->ready, k->lease};
    char ms[24];
    const char *args[3] = {corp, me, ms};

    snprintf(ms, sizeof(ms), "%lld", delay_ms < 0 ? 0 : delay_ms);
    return eval(st, cb, arg, scripts_text(SCRIPT_EVQ_BACKOFF), keys, 2, args,
                3);
}

enum brk_err
evq_head(struct store *st, const struct evq_keys *k, store_reply_cb *cb,
         void *arg)
{
    const char *argv[6] = {"XRANGE", k->q, "-", "+", "COUNT", "1"};

    if (!k->q[0])
        return BRK_ERR_INVAL;
    return store_cmd_argv(st, cb, arg, 6, argv, NULL);
}

enum brk_err
evq_count_attempt(struct store *st, const struct evq_keys *k, const char *id,
                  store_reply_cb *cb, void *arg)
{
    const char *argv[4] = {"HINCRBY", k->qa, id, "1"};

    if (!k->qa[0])
        return BRK_ERR_INVAL;
    return store_cmd_argv(st, cb, arg, 4, argv, NULL);
}

enum brk_err
evq_ack(struct store *st, const struct evq_keys *k, const char *id,
        store_reply_cb *cb, void *arg)
{
    const char *keys[2] = {k->q, k->qa};

    if (!k->q[0])
        return BRK_ERR_INVAL;
    return eval(st, cb, arg, scripts_text(SCRIPT_EVQ_TENANT_ACK), keys, 2, &id,
                1);
}

enum brk_err
evq_dead(struct store *st, const struct evq_keys *k, const char *corp,
         const char *id, const char *reason, int attempts, store_reply_cb *cb,
         void *arg)
{
    const char *keys[3] = {k->q, k->qa, k->dead};
    char n[16];
    const char *args[4] = {id, reason, n, corp};

    if (!k->q[0])
        return BRK_ERR_INVAL;
    snprintf(n, sizeof(n), "%d", attempts);
    return eval(st, cb, arg, scripts_text(SCRIPT_EVQ_TENANT_DEAD), keys, 3,
                args, 4);
}
