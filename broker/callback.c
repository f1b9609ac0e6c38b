/*
 * WeCom callback endpoints (see callback.h). Everything up to the Redis
 * write is synchronous and pure; a request ends in exactly one reply: the
 * echo, `success`, or a refusal with a one-line reason, a log line and a
 * metric, and then no state has changed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "browser.h"
#include "callback.h"
#include "config.h"
#include "evqueue.h"
#include "httpd.h"
#include "keyring.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "query.h"
#include "scripts.h"
#include "store.h"
#include "suites.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#define MAX_QUERY_PARAMS 16

/* WAIT's bound: an ack still leaves WeCom's 1 s with room to spare. */
#define ACK_WAIT_MS "200"

struct callback {
    const struct config *cfg;
    const struct keyring *kr;
    struct store *st;
    struct suites *suites;
    struct browser *browser; /* borrowed; NULL: no browser routes */
    /* borrowed; NULL unless redis_min_replica_acks >= 1: the connection
     * that makes events durable and then WAITs for them, used for nothing
     * else so its WAIT covers exactly those writes */
    struct store *ack_st;
    long min_acks;
};

/* InfoTypes that go to the event stream; anything else is acknowledged,
 * logged and counted only. */
static const char *const queued_types[] = {
    "create_auth",          "change_auth",         "cancel_auth",
    "reset_permanent_code", "change_contact",      "change_external_contact",
    "change_external_chat", "change_external_tag", "corp_arch_auth",
};

/* State of one POST waiting for Redis. */
struct pending {
    struct callback *cb;
    struct httpd_req *r;
    struct suite_rt *su;
    char info_type[32]; /* metric label: a queued type, suite_ticket or data */
    int is_ticket;
    /* a data callback waits for the tenant check before it is queued;
     * the entry to write is kept until then */
    int data;
    char corp[80];
    char seen[KEYS_MAX];
    char *kv[12];
    size_t nkv;
    const char *result; /* static: what the write did, once it is done */
};

static const char *
known_type(const char *t)
{
    size_t i;

    if (t == NULL)
        return NULL;
    for (i = 0; i < nitems(queued_types); i++)
        if (strcmp(t, queued_types[i]) == 0)
            return queued_types[i];
    return NULL;
}

/*---- Replies ----*/

static void reject(struct httpd_req *r, const char *suite, int status,
                   const char *reason, const char *fmt, ...) BRK_PRINTF(5, 6);

/*
 * Refuse a request: one log line naming the reason, one metric, and a
 * plain-text body "reason: detail". The detail never holds request bytes
 * beyond what the code put there.
 */
static void
reject(struct httpd_req *r, const char *suite, int status, const char *reason,
       const char *fmt, ...)
{
    char detail[256], body[320], labels[160];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    log_req(LOG_LVL_WARN, r->id, "callback refused: %s %s%s%s: %d %s: %s",
            httpd_method(r), r->route, suite ? " suite=" : "",
            suite ? suite : "", status, reason, detail);
    metrics_inc(METRICS_CALLBACK_REJECTIONS,
                metrics_labels(labels, sizeof(labels), "suite",
                               suite ? suite : "", "reason", reason, NULL));
    snprintf(body, sizeof(body), "%s: %s\n", reason, detail);
    httpd_reply_text(r, status, body);
}

static void refuse(struct callback_refusal *why, int status, const char *reason,
                   const char *fmt, ...) BRK_PRINTF(4, 5);

static void
refuse(struct callback_refusal *why, int status, const char *reason,
       const char *fmt, ...)
{
    va_list ap;

    why->status = status;
    why->reason = reason;
    va_start(ap, fmt);
    vsnprintf(why->detail, sizeof(why->detail), fmt, ap);
    va_end(ap);
}

/* A crypto error as (status, metric reason). */
static void
refuse_crypto(struct callback_refusal *why, enum brk_err err, const char *what)
{
    int status = 400;
    const char *reason = "bad_ciphertext";

    switch (err) {
    case BRK_ERR_WX_SIGNATURE:
        status = 403;
        reason = "bad_signature";
        break;
    case BRK_ERR_WX_RECEIVEID:
        status = 403;
        reason = "bad_receiveid";
        break;
    case BRK_ERR_WX_DECODE_B64:
        reason = "bad_base64";
        break;
    case BRK_ERR_WX_BUFFER:
        reason = "bad_buffer";
        break;
    case BRK_ERR_TOOBIG:
        status = 413;
        reason = "too_large";
        break;
    default:
        break;
    }
    refuse(why, status, reason, "%s (%s, %d)", what, brk_strerror(err),
           brk_err_wecom_code(err));
}

/* Answer a refusal. */
static void
reject_why(struct httpd_req *r, const char *suite,
           const struct callback_refusal *why)
{
    reject(r, suite, why->status, why->reason, "%s", why->detail);
}

/*---- Request checks ----*/

static int
is_digits(const char *s, size_t maxlen)
{
    size_t n = 0;

    if (s == NULL || *s == '\0')
        return 0;
    for (; *s; s++, n++)
        if (*s < '0' || *s > '9' || n >= maxlen)
            return 0;
    return 1;
}

/*
 * The query's checks (see callback.h). Returns 0, or -1 with *why filled.
 * Pure: the clock is the caller's.
 */
int
callback_check_query(const struct query *q, int get, long long now,
                     long long max_skew, struct callback_refusal *why)
{
    static const char *const names[] = {"msg_signature", "timestamp", "nonce",
                                        "echostr"};
    size_t i, n = get ? 4 : 3, c;
    const char *ts, *nonce;
    long long t;

    for (i = 0; i < n; i++) {
        c = query_count(q, names[i]);
        if (c != 1) {
            refuse(why, 400, "bad_query", "%s %s", names[i],
                   c == 0 ? "missing" : "repeated");
            return -1;
        }
    }
    if (!get && query_count(q, "echostr") != 0) {
        refuse(why, 400, "bad_query", "echostr on a POST");
        return -1;
    }
    ts = query_get(q, "timestamp");
    if (!is_digits(ts, 12)) {
        refuse(why, 400, "bad_timestamp", "timestamp is not a number");
        return -1;
    }
    t = strtoll(ts, NULL, 10);
    if (t < now - max_skew || t > now + max_skew) {
        refuse(why, 400, "stale_timestamp",
               "timestamp %lld is %lld s from now (max %lld)", t, t - now,
               max_skew);
        return -1;
    }
    nonce = query_get(q, "nonce");
    if (strlen(nonce) > CALLBACK_NONCE_MAX || nonce[0] == '\0') {
        refuse(why, 400, "bad_query", "nonce empty or longer than %d",
               CALLBACK_NONCE_MAX);
        return -1;
    }
    return 0;
}

void
callback_msg_clear(struct callback_msg *m)
{
    wecom_xml_free(m->ev);
    wecom_xml_free(m->env);
    brk_free_secret(m->msg, m->msglen);
    brk_free(m->receiveid);
    memset(m, 0, sizeof(*m));
}

/* The envelope's Encrypt text may fill the whole body: the per-element
 * default (16 KiB) would refuse a valid callback of 16..64 KiB. */
static const struct wecom_xml_limits envelope_limits = {CALLBACK_MAX_BODY, 0, 0,
                                                        CALLBACK_MAX_BODY};

/*
 * Open a callback (see callback.h). Returns BRK_OK, or the error of the
 * step that refused with *why filled; *out is cleared on failure. Pure.
 */
enum brk_err
callback_open(const struct wecom_crypto *c, const struct query *q, int get,
              int data, const char *suite_id, const char *provider_corpid,
              const char *body, size_t blen, struct callback_msg *out,
              struct callback_refusal *why)
{
    struct brk_errinfo info = {"", 0, -1};
    struct callback_msg m;
    const char *accepted[2];
    enum brk_err err;

    memset(&m, 0, sizeof(m));
    if (get) {
        m.encrypt = query_get(q, "echostr");
    } else {
        if (blen > CALLBACK_MAX_BODY) {
            refuse(why, 413, "too_large", "body of %zu bytes (max %d)", blen,
                   CALLBACK_MAX_BODY);
            err = BRK_ERR_TOOBIG;
            goto fail;
        }
        err = wecom_xml_parse(body, blen, &envelope_limits, &m.env, &info);
        if (err) {
            refuse(why, 400, "bad_xml",
                   "body: %s at byte %ld (ParseXmlError, -40002)", info.msg,
                   info.offset);
            goto fail;
        }
        m.encrypt = wecom_xml_get(m.env, "Encrypt");
        if (m.encrypt == NULL || m.encrypt[0] == '\0') {
            refuse(why, 400, "bad_xml",
                   "no Encrypt element (ParseXmlError, -40002)");
            err = BRK_ERR_WX_PARSE_XML;
            goto fail;
        }
    }
    err = wecom_crypto_verify(c, query_get(q, "msg_signature"),
                              query_get(q, "timestamp"), query_get(q, "nonce"),
                              m.encrypt);
    if (err) {
        refuse_crypto(why, err, "msg_signature mismatch");
        goto fail;
    }
    err = wecom_crypto_decrypt(c, m.encrypt, strlen(m.encrypt), &m.msg,
                               &m.msglen, &m.receiveid);
    if (err) {
        refuse_crypto(why, err,
                      get ? "echostr does not decrypt"
                          : "Encrypt does not decrypt");
        goto fail;
    }
    /* WeCom has been seen to verify with the provider's corpid instead of
     * the suite id; both are ours, so both are accepted there. Data
     * callbacks are sealed for the tenant's corp: checked against Redis. */
    accepted[0] = suite_id;
    accepted[1] = provider_corpid;
    if (get || !data) {
        err = wecom_crypto_check_receiveid(m.receiveid, accepted, get ? 2 : 1,
                                           &m.which);
        if (err) {
            refuse_crypto(why, err,
                          get ? "receiveid is neither the suite id nor "
                                "provider_corpid"
                              : "receiveid is not the suite id");
            goto fail;
        }
    }
    if (!get) {
        err = wecom_xml_parse(m.msg, m.msglen, NULL, &m.ev, &info);
        if (err) {
            refuse(why, 400, "bad_event",
                   "decrypted event: %s at byte %ld (ParseXmlError, -40002)",
                   info.msg, info.offset);
            goto fail;
        }
    }
    *out = m;
    return BRK_OK;
fail:
    callback_msg_clear(&m);
    memset(out, 0, sizeof(*out));
    return err;
}

/*
 * The type of a command event (see callback.h). Returns BRK_OK or
 * BRK_ERR_INVAL with *why filled. Pure.
 */
enum brk_err
callback_event_type(const struct wecom_xml *ev, const char *suite_id,
                    const char **type, struct callback_refusal *why)
{
    const char *sid = wecom_xml_get(ev, "SuiteId");
    const char *info_type = wecom_xml_get(ev, "InfoType");
    const char *ticket, *ts;

    if (sid == NULL || strcmp(sid, suite_id) != 0) {
        refuse(why, 403, "suite_mismatch",
               "SuiteId in the event is not the suite of the URL");
        return BRK_ERR_INVAL;
    }
    if (info_type == NULL || info_type[0] == '\0') {
        refuse(why, 400, "bad_event", "no InfoType");
        return BRK_ERR_INVAL;
    }
    if (strcmp(info_type, "suite_ticket") == 0) {
        ticket = wecom_xml_get(ev, "SuiteTicket");
        ts = wecom_xml_get(ev, "TimeStamp");
        if (ticket == NULL || ticket[0] == '\0' ||
            strlen(ticket) > CALLBACK_TICKET_MAX || !is_digits(ts, 12)) {
            refuse(why, 400, "bad_event",
                   "suite_ticket without a SuiteTicket (1..%d bytes) and a "
                   "numeric TimeStamp",
                   CALLBACK_TICKET_MAX);
            return BRK_ERR_INVAL;
        }
        *type = "suite_ticket";
        return BRK_OK;
    }
    *type = known_type(info_type);
    return BRK_OK;
}

/*---- GET: URL verification ----*/

static void
handle_verify(struct httpd_req *r, struct suite_rt *su, const struct query *q)
{
    struct callback_refusal why;
    struct callback_msg m;

    if (callback_open(su->crypto, q, 1, 0, su->conf->suite_id,
                      su->conf->provider_corpid, NULL, 0, &m, &why)) {
        reject_why(r, su->conf->suite_id, &why);
        return;
    }
    log_req(LOG_LVL_INFO, r->id,
            "URL verification ok: suite=%s route=%s receiveid=%s",
            su->conf->suite_id, r->route,
            m.which == 0 ? "suite_id" : "provider_corpid");
    httpd_reply(r, 200, "text/plain; charset=utf-8", m.msg, m.msglen);
    callback_msg_clear(&m);
}

/*---- POST: events ----*/

static void
pending_free(struct pending *p)
{
    size_t i;

    for (i = 0; i < p->nkv; i++)
        brk_free(p->kv[i]);
    brk_free(p);
}

/* The write is durable (and replicated, when asked for): `success`. */
static void
acknowledge(struct pending *p)
{
    struct httpd_req *r = p->r;
    const char *suite = p->su->conf->suite_id;
    char labels[160];
    struct timespec now;
    double secs;

    if (p->is_ticket)
        metrics_inc(METRICS_SUITE_TICKETS,
                    metrics_labels(labels, sizeof(labels), "suite", suite,
                                   "result", p->result, NULL));
    metrics_inc(METRICS_CALLBACKS,
                metrics_labels(labels, sizeof(labels), "suite", suite,
                               "info_type", p->info_type, "result", p->result,
                               NULL));
    log_req(LOG_LVL_INFO, r->id, "callback %s: suite=%s info_type=%s",
            p->result, suite, p->info_type);
    clock_gettime(CLOCK_MONOTONIC, &now);
    secs = (double)(now.tv_sec - r->start.tv_sec) +
           (double)(now.tv_nsec - r->start.tv_nsec) / 1e9;
    metrics_observe(METRICS_CALLBACK_ACK_SECONDS, NULL, secs);
    httpd_reply_text(r, 200, "success");
}

/* WAIT's answer: how many replicas have every write of the ack connection
 * so far, this event's included. */
static void
on_waited(enum brk_err err, struct redisReply *reply, void *arg)
{
    struct pending *p = arg;
    char labels[64];
    const char *outcome;

    if (err || reply->type != REDIS_REPLY_INTEGER)
        outcome = "error";
    else if (reply->integer < p->cb->min_acks)
        outcome = "short";
    else
        outcome = "ok";
    metrics_inc(METRICS_REDIS_WAITS, metrics_labels(labels, sizeof(labels),
                                                    "result", outcome, NULL));
    if (outcome[0] == 'o') {
        acknowledge(p);
    } else if (outcome[0] == 's') {
        /* stored, not replicated: WeCom retries, the retry is a duplicate
         * of the stored event and is WAITed for again */
        reject(
            p->r, p->su->conf->suite_id, 503, "store_unavailable",
            "event stored but confirmed by %lld of %ld replicas in " ACK_WAIT_MS
            " ms; WeCom will retry",
            reply->integer, p->cb->min_acks);
    } else {
        reject(p->r, p->su->conf->suite_id, 503, "store_unavailable",
               "event stored but not confirmed by replicas (%s%s%s); WeCom "
               "will retry",
               brk_strerror(err ? err : BRK_ERR_STORE),
               reply && reply->str ? ": " : "",
               reply && reply->str ? reply->str : "");
    }
    pending_free(p);
}

static void
on_written(enum brk_err err, struct redisReply *reply, void *arg)
{
    struct pending *p = arg;
    struct httpd_req *r = p->r;
    const char *suite = p->su->conf->suite_id;
    const char *result;
    char labels[160];

    if (err || reply->type != REDIS_REPLY_INTEGER) {
        metrics_inc(METRICS_REDIS_ERRORS,
                    metrics_labels(labels, sizeof(labels), "kind",
                                   err == BRK_ERR_TIMEOUT ? "timeout" : "error",
                                   NULL));
        reject(r, suite, 503, "store_unavailable",
               "event not stored (%s%s%s); WeCom will retry", brk_strerror(err),
               reply && reply->str ? ": " : "",
               reply && reply->str ? reply->str : "");
        goto out;
    }
    if (reply->integer < 0) {
        reject(r, suite, 403, "unknown_tenant",
               "receiveid is not a known tenant corpid (ValidateCorpidError,"
               " -40005)");
        goto out;
    }
    if (p->is_ticket)
        result = reply->integer == 1 ? "stored" : "stale";
    else
        result = reply->integer == 1 ? "queued" : "duplicate";
    p->result = result;
    if (p->cb->ack_st != NULL) {
        /* on the connection that wrote: WAIT counts replicas holding its
         * writes. A duplicate is waited for too — its first copy came
         * through here and may not have reached a replica yet */
        const char *argv[3] = {"WAIT", NULL, ACK_WAIT_MS};
        char n[24];

        snprintf(n, sizeof(n), "%ld", p->cb->min_acks);
        argv[1] = n;
        err = store_cmd_argv(p->cb->ack_st, on_waited, p, 3, argv, NULL);
        if (err == BRK_OK)
            return;
        metrics_inc(
            METRICS_REDIS_WAITS,
            metrics_labels(labels, sizeof(labels), "result", "error", NULL));
        reject(r, suite, 503, "store_unavailable",
               "event stored but not confirmed by replicas (%s); WeCom will "
               "retry",
               brk_strerror(err));
        goto out;
    }
    acknowledge(p);
out:
    pending_free(p);
}

/* Where an event is written: the ack connection when WAIT is on. */
static struct store *
write_store(const struct callback *cb)
{
    return cb->ack_st != NULL ? cb->ack_st : cb->st;
}

static int
send_or_503(struct httpd_req *r, struct pending *p, int argc, const char **argv)
{
    enum brk_err err;

    err = store_cmd_argv(write_store(p->cb), on_written, p, argc, argv, NULL);
    if (err) {
        reject(r, p->su->conf->suite_id, 503, "store_unavailable",
               "Redis is not available (%s); WeCom will retry",
               brk_strerror(err));
        pending_free(p);
        return -1;
    }
    return 0;
}

static void
store_ticket(struct callback *cb, struct httpd_req *r, struct suite_rt *su,
             const struct wecom_xml *ev)
{
    const char *ticket = wecom_xml_get(ev, "SuiteTicket");
    const char *ts = wecom_xml_get(ev, "TimeStamp");
    char key[KEYS_MAX], at[24], ttl[16];
    char *sealed = NULL;
    struct pending *p = NULL;
    const char *argv[8];
    enum brk_err err;

    /* its shape was checked by callback_event_type */
    err = keys_suite_ticket(key, sizeof(key), cb->cfg->key_prefix,
                            su->conf->suite_id);
    /* bound to its key name, so a sealed ticket cannot be replayed under
     * another suite */
    if (!err)
        err = keyring_seal(su->dk, key, ticket, strlen(ticket), &sealed, NULL);
    p = err ? NULL : brk_calloc(1, sizeof(*p));
    if (p == NULL) {
        reject(r, su->conf->suite_id, 503, "internal",
               "cannot seal the ticket (%s)", brk_strerror(err));
        goto out;
    }
    p->cb = cb;
    p->r = r;
    p->su = su;
    p->is_ticket = 1;
    snprintf(p->info_type, sizeof(p->info_type), "suite_ticket");
    snprintf(at, sizeof(at), "%lld", (long long)time(NULL));
    snprintf(ttl, sizeof(ttl), "%d", CALLBACK_TICKET_TTL);
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_SUITE_TICKET_STORE);
    argv[2] = "1";
    argv[3] = key;
    argv[4] = ts;
    argv[5] = sealed;
    argv[6] = at;
    argv[7] = ttl;
    send_or_503(r, p, 8, argv);
out:
    brk_free(sealed);
}

static void on_tenant_checked(enum brk_err err, struct redisReply *reply,
                              void *arg);

/* Write p's entry: to its tenant's queue, or the suite stream. */
static void
push(struct pending *p)
{
    struct evq_keys k;
    enum brk_err err;

    err = evq_keys(&k, p->cb->cfg->key_prefix, p->su->conf->suite_id,
                   p->corp[0] ? p->corp : NULL);
    if (!err)
        err = evq_push(write_store(p->cb), &k, p->corp[0] ? p->corp : NULL,
                       p->seen, CALLBACK_SEEN_TTL, (const char *const *)p->kv,
                       p->nkv, on_written, p);
    if (err) {
        reject(p->r, p->su->conf->suite_id, 503, "store_unavailable",
               "Redis is not available (%s); WeCom will retry",
               brk_strerror(err));
        pending_free(p);
    }
}

/* A data callback's corp is a tenant: queue it. */
static void
on_tenant_checked(enum brk_err err, struct redisReply *reply, void *arg)
{
    struct pending *p = arg;

    if (err || reply->type != REDIS_REPLY_INTEGER) {
        on_written(err ? err : BRK_ERR_STORE, reply, p);
        return;
    }
    if (reply->integer == 0) {
        reject(p->r, p->su->conf->suite_id, 403, "unknown_tenant",
               "receiveid is not a known tenant corpid (ValidateCorpidError,"
               " -40005)");
        pending_free(p);
        return;
    }
    push(p);
}

/*
 * Queue an event as WeCom sent it (still encrypted), with a dedupe mark
 * keyed by its decrypted content. corp names the tenant queue (NULL: the
 * suite stream, for events that name no corp yet). A data callback (data)
 * is first checked to come from a tenant.
 */
static void
enqueue(struct callback *cb, struct httpd_req *r, struct suite_rt *su,
        const struct query *q, const char *encrypt, const char *msg, int data,
        const char *corp, const char *info_type)
{
    const struct config *cfg = cb->cfg;
    char tenant[KEYS_MAX], hmac[65], rcv[24];
    const char *parts[3], *argv[2];
    const char *kv[12];
    struct pending *p;
    size_t i, n = 0;
    enum brk_err err;

    /* keyed hash: the content may be low-entropy (a mobile number) */
    parts[0] = su->conf->suite_id;
    parts[1] = data ? "data" : "callback";
    parts[2] = msg;
    keyring_index_hmac_parts(cb->kr, parts, 3, hmac);
    p = brk_calloc(1, sizeof(*p));
    if (p == NULL) {
        reject(r, su->conf->suite_id, 503, "internal", "out of memory");
        return;
    }
    if (keys_suite_seen(p->seen, sizeof(p->seen), cfg->key_prefix,
                        su->conf->suite_id, hmac) ||
        (corp != NULL && (!keys_id_ok(corp) ||
                          keys_tenant(tenant, sizeof(tenant), cfg->key_prefix,
                                      corp, su->conf->suite_id)))) {
        reject(r, su->conf->suite_id, 400, "bad_receiveid",
               "receiveid or AuthCorpId is no usable corpid");
        brk_free(p);
        return;
    }
    p->cb = cb;
    p->r = r;
    p->su = su;
    p->data = data;
    snprintf(p->corp, sizeof(p->corp), "%s", corp ? corp : "");
    snprintf(p->info_type, sizeof(p->info_type), "%s", info_type);
    snprintf(rcv, sizeof(rcv), "%lld", brk_wall_ms());
    /* the event exactly as WeCom sent it: still encrypted */
    kv[n++] = "kind";
    kv[n++] = data ? "data" : "callback";
    kv[n++] = "msg_signature";
    kv[n++] = query_get(q, "msg_signature");
    kv[n++] = "timestamp";
    kv[n++] = query_get(q, "timestamp");
    kv[n++] = "nonce";
    kv[n++] = query_get(q, "nonce");
    kv[n++] = "encrypt";
    kv[n++] = encrypt;
    kv[n++] = "received_ms";
    kv[n++] = rcv;
    for (i = 0; i < n; i++) {
        p->kv[i] = brk_strdup(kv[i]);
        if (p->kv[i] == NULL)
            break;
        p->nkv++;
    }
    if (p->nkv != n) {
        reject(r, su->conf->suite_id, 503, "internal", "out of memory");
        pending_free(p);
        return;
    }
    if (!data) {
        push(p);
        return;
    }
    argv[0] = "EXISTS";
    argv[1] = tenant;
    err = store_cmd_argv(cb->st, on_tenant_checked, p, 2, argv, NULL);
    if (err) {
        reject(r, su->conf->suite_id, 503, "store_unavailable",
               "Redis is not available (%s); WeCom will retry",
               brk_strerror(err));
        pending_free(p);
    }
}

static void
handle_event(struct callback *cb, struct httpd_req *r, struct suite_rt *su,
             const struct query *q, int data)
{
    struct callback_refusal why;
    struct callback_msg m;
    const char *type = NULL, *corp;
    char labels[160];

    if (callback_open(su->crypto, q, 0, data, su->conf->suite_id,
                      su->conf->provider_corpid, httpd_body(r),
                      httpd_body_len(r), &m, &why)) {
        reject_why(r, su->conf->suite_id, &why);
        return;
    }
    if (data) {
        /* inside a tenant, in its order: the app's admin list changed is
         * ours to apply; what members send goes to the services that may
         * receive it (the worker routes it) */
        const char *event = wecom_xml_get(m.ev, "Event");
        int admin = event != NULL && strcmp(event, "change_app_admin") == 0;

        enqueue(cb, r, su, q, m.encrypt, m.msg, 1, m.receiveid,
                admin ? "change_app_admin" : "data");
        goto out;
    }
    if (callback_event_type(m.ev, su->conf->suite_id, &type, &why)) {
        reject_why(r, su->conf->suite_id, &why);
        goto out;
    }
    if (type != NULL && strcmp(type, "suite_ticket") == 0) {
        if (!su->dk_loaded) {
            reject(r, su->conf->suite_id, 503, "store_unavailable",
                   "suite data key not loaded yet; WeCom will retry");
            goto out;
        }
        store_ticket(cb, r, su, m.ev);
        goto out;
    }
    if (type == NULL) {
        metrics_inc(METRICS_CALLBACKS,
                    metrics_labels(labels, sizeof(labels), "suite",
                                   su->conf->suite_id, "info_type", "other",
                                   "result", "ignored", NULL));
        log_req(LOG_LVL_WARN, r->id,
                "callback acknowledged but not handled: suite=%s "
                "unknown InfoType (%zu bytes)",
                su->conf->suite_id, strlen(wecom_xml_get(m.ev, "InfoType")));
        httpd_reply_text(r, 200, "success");
        goto out;
    }
    /* an event that names its corp waits in that tenant's queue; one with
     * an AuthCode (or no usable corp) in the suite stream */
    corp = wecom_xml_get(m.ev, "AuthCorpId");
    if (strcmp(type, "create_auth") == 0 ||
        strcmp(type, "reset_permanent_code") == 0 || corp == NULL ||
        !keys_id_ok(corp))
        corp = NULL;
    enqueue(cb, r, su, q, m.encrypt, m.msg, 0, corp, type);
out:
    callback_msg_clear(&m);
}

/*---- Routing ----*/

/* /wecom/suite/{id}/{install,install/done,oauth/...}: the browser flows.
 * 0 when taken, -1 when the path is none of them. */
static int
browser_route(struct callback *cb, struct httpd_req *r)
{
    static const char pre[] = "/wecom/suite/";
    const char *path = httpd_path(r), *p, *slash;
    char suite[80];
    struct suite_rt *su;

    if (cb->browser == NULL || strncmp(path, pre, sizeof(pre) - 1) != 0)
        return -1;
    p = path + sizeof(pre) - 1;
    slash = strchr(p, '/');
    if (slash == NULL || slash == p || (size_t)(slash - p) >= sizeof(suite))
        return -1;
    memcpy(suite, p, (size_t)(slash - p));
    suite[slash - p] = '\0';
    su = suites_find(cb->suites, suite);
    if (su == NULL)
        return -1;
    return browser_handle(cb->browser, r, su, slash + 1);
}

/* Split "/wecom/suite/{id}/{callback|data}"; -1 when the path is not ours. */
static int
parse_path(const char *path, char *suite, size_t len, int *data)
{
    static const char pre[] = "/wecom/suite/";
    const char *p, *slash;

    if (strncmp(path, pre, sizeof(pre) - 1) != 0)
        return -1;
    p = path + sizeof(pre) - 1;
    slash = strchr(p, '/');
    if (slash == NULL || slash == p || (size_t)(slash - p) >= len)
        return -1;
    if (strcmp(slash, "/callback") == 0)
        *data = 0;
    else if (strcmp(slash, "/data") == 0)
        *data = 1;
    else
        return -1;
    memcpy(suite, p, (size_t)(slash - p));
    suite[slash - p] = '\0';
    return 0;
}

void
callback_handle(struct httpd_req *r, void *arg)
{
    struct callback *cb = arg;
    struct suite_rt *su = NULL;
    struct query *q = NULL;
    struct callback_refusal why;
    char suite[80];
    const char *method = httpd_method(r);
    int data = 0, get;

    if (parse_path(httpd_path(r), suite, sizeof(suite), &data) != 0) {
        if (browser_route(cb, r) == 0)
            goto out;
        r->route = "other";
        reject(r, NULL, 404, "not_found", "no such route");
        goto out;
    }
    r->route = data ? "data" : "callback";
    su = suites_find(cb->suites, suite);
    if (su == NULL) {
        reject(r, NULL, 404, "unknown_suite", "no suite with this id");
        goto out;
    }
    get = strcmp(method, "GET") == 0;
    if (!get && strcmp(method, "POST") != 0) {
        reject(r, su->conf->suite_id, 405, "method_not_allowed",
               "use GET or POST");
        goto out;
    }
    if (query_parse(httpd_raw_query(r), MAX_QUERY_PARAMS, &q) != BRK_OK) {
        reject(r, su->conf->suite_id, 400, "bad_query",
               "malformed query string");
        goto out;
    }
    if (callback_check_query(q, get, (long long)time(NULL),
                             cb->cfg->callback_max_skew, &why) != 0) {
        reject_why(r, su->conf->suite_id, &why);
        goto out;
    }
    if (get)
        handle_verify(r, su, q);
    else
        handle_event(cb, r, su, q, data);
out:
    query_free(q);
}

/*---- Lifetime ----*/

/*
 * Build the handler (see callback.h). Returns BRK_OK or BRK_ERR_NOMEM.
 */
enum brk_err
callback_new(const struct config *cfg, const struct keyring *kr,
             struct store *st, struct suites *suites, struct callback **out)
{
    struct callback *cb;

    cb = brk_calloc(1, sizeof(*cb));
    if (cb == NULL)
        return BRK_ERR_NOMEM;
    cb->cfg = cfg;
    cb->kr = kr;
    cb->st = st;
    cb->suites = suites;
    *out = cb;
    return BRK_OK;
}

/*
 * Use kr (borrowed) from now on, for the configuration reload. Work
 * already started may still hold the previous keyring, so the caller
 * keeps that one alive a while longer. Cannot fail.
 */
void
callback_set_keyring(struct callback *cb, const struct keyring *kr)
{
    cb->kr = kr;
}

void
callback_free(struct callback *cb)
{
    brk_free(cb);
}

void
callback_set_browser(struct callback *cb, struct browser *b)
{
    cb->browser = b;
}

/*
 * From now on write events on ack_st (borrowed, a connection used for
 * nothing else) and acknowledge one only when WAIT min_acks says that
 * many replicas hold it. ack_st NULL or min_acks < 1 turns it off.
 */
void
callback_set_ack_store(struct callback *cb, struct store *ack_st, long min_acks)
{
    cb->ack_st = min_acks >= 1 ? ack_st : NULL;
    cb->min_acks = min_acks;
}
