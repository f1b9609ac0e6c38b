/*
 * The service API's writes (SPEC §5b): an endpoint declared with "write":
 * true is served only as declared, and WeCom is called only once every
 * check has passed. The chain, after the token, service and tenant are
 * loaded (proxy.c, proxy_records.c):
 *
 *   proxy_write_tenant
 *     tenant active and allowed (grant_decide)        48004 ...
 *     the endpoint's capability (ops)                 48002
 *     the endpoint's permission ∩ service scopes      48002
 *     query (access_token only) and idempotency key   40035
 *     body (write_check)                              40035 / 40058
 *     members and departments in the range            60011
 *     add_msg_template of a narrowed service          60011
 *   -> [HMGET customer index -> on_customers]         60011
 *   -> [HMGET owners -> on_owners]                    48002
 *   -> [EVAL idem_begin -> on_idem]                   stored reply / 409
 *   -> [EVAL write_rate -> on_rate]                   45009
 *   -> [EVAL welcome_take -> on_welcome]              41050 / 41051
 *   -> proxy_start_upstream (budget, corp token, WeCom, filter)
 *   -> proxy_write_replied: creators recorded, idempotent reply stored
 *
 * A refused corp tag or contact way is 48002: WeCom's own answer to an app
 * editing what another app created is not documented, and to WeCom every
 * service is the same app, so the broker keeps the creator itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "capability.h"
#include "config.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "proxy_int.h"
#include "scripts.h"
#include "store.h"
#include "visible_range.h"
#include "write_check.h"
#include "write_store.h"

#define IDEM_HEADER  "X-Broker-Idempotency-Key"
#define IDEM_KEY_MAX 64

enum stage {
    ST_CUSTOMERS,
    ST_OWNERS,
    ST_IDEM,
    ST_RATE,
    ST_WELCOME,
    ST_UPSTREAM,
};

struct pwrite {
    struct write_checked *wc;
    struct proxy_media media; /* media/upload's; size 0 otherwise */
    char media_size[24];
    char sha[65];        /* of the forwarded body */
    char idem[KEYS_MAX]; /* the key's record, "" without a key */
    int idem_held;       /* a pending record is ours to finish */
    enum stage stage;
    const char *result; /* for the metrics: forwarded, refused, replayed */
};

static void step(struct preq *q);

/*---- Lifetime and the audit ----*/

void
proxy_write_free(struct preq *q)
{
    struct pwrite *w = q->wr;
    const char *argv[6];

    if (w == NULL)
        return;
    /* a write that ended without WeCom's answer may be tried again */
    if (w->idem_held) {
        argv[0] = "EVAL";
        argv[1] = scripts_text(SCRIPT_IDEM_FINISH);
        argv[2] = "1";
        argv[3] = w->idem;
        argv[4] = w->sha;
        argv[5] = "";
        if (store_cmd_argv(q->p->st, NULL, NULL, 6, argv, NULL))
            log_warn("idempotency key not released");
    }
    write_checked_free(w->wc);
    brk_free(w);
    q->wr = NULL;
}

size_t
proxy_write_audit(const struct preq *q, const char **kv, size_t n)
{
    const struct pwrite *w = q->wr;

    if (w == NULL || w->wc == NULL)
        return n;
    if (q->ep->multipart) {
        /* the media's type, size and digest; never its bytes or name */
        kv[n++] = "media_type";
        kv[n++] = w->media.part_ctype;
        kv[n++] = "media_size";
        kv[n++] = w->media_size;
        kv[n++] = "media_sha256";
        kv[n++] = w->media.sha;
        return n;
    }
    kv[n++] = "body_keys";
    kv[n++] = w->wc->keys;
    kv[n++] = "body_sha256";
    kv[n++] = w->sha;
    return n;
}

static void
count(struct preq *q, const char *result, long errcode)
{
    char labels[192], code[24];

    snprintf(code, sizeof(code), "%ld", errcode);
    metrics_inc(METRICS_WRITES,
                metrics_labels(labels, sizeof(labels), "endpoint", q->ep->path,
                               "result", result, "errcode", code, NULL));
}

static void
refuse(struct preq *q, enum errcode e, const char *msg)
{
    count(q, "refused", errcodes_code(e));
    proxy_reply_error(q, e, "%s", msg);
}

/*---- The store's steps ----*/

static int
store_failed(struct preq *q, enum brk_err err, const redisReply *r, int type)
{
    if (err || r == NULL || (type >= 0 && r->type != type)) {
        refuse(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return 1;
    }
    return 0;
}

/* Is any of the space-separated userids in v in the range? */
static int
follower_in_range(const struct preq *q, const char *v, size_t len)
{
    size_t i = 0, n;

    while (i < len) {
        while (i < len && v[i] == ' ')
            i++;
        for (n = 0; i + n < len && v[i + n] != ' '; n++)
            ;
        if (n > 0 && vrange_has_member(q->range, v + i, n))
            return 1;
        i += n;
    }
    return 0;
}

static void
on_customers(enum brk_err err, struct redisReply *r, void *arg)
{
    struct preq *q = arg;
    size_t i;

    if (store_failed(q, err, r, REDIS_REPLY_ARRAY))
        return;
    /* an unknown customer is out of range: closed, never asked of WeCom */
    for (i = 0; i < r->elements; i++)
        if (r->element[i]->type != REDIS_REPLY_STRING ||
            !follower_in_range(q, r->element[i]->str, r->element[i]->len)) {
            refuse(q, ERRCODE_OUT_OF_RANGE,
                   "no privilege to access/modify contact/party/agent "
                   "(customer)");
            return;
        }
    q->wr->stage = ST_OWNERS;
    step(q);
}

static void
on_owners(enum brk_err err, struct redisReply *r, void *arg)
{
    struct preq *q = arg;
    size_t i;

    if (store_failed(q, err, r, REDIS_REPLY_ARRAY))
        return;
    for (i = 0; i < r->elements; i++)
        if (r->element[i]->type != REDIS_REPLY_STRING ||
            strcmp(r->element[i]->str, q->svc->id) != 0) {
            refuse(q, ERRCODE_API_FORBIDDEN,
                   "api forbidden: created by another service, or unknown");
            return;
        }
    q->wr->stage = ST_IDEM;
    step(q);
}

static void
on_idem(enum brk_err err, struct redisReply *r, void *arg)
{
    struct preq *q = arg;
    const char *what;
    json_t *v;
    json_error_t jerr;
    long code;

    if (store_failed(q, err, r, REDIS_REPLY_ARRAY) || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        if (!err && r != NULL && r->type == REDIS_REPLY_ARRAY)
            refuse(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
    what = r->element[0]->str;
    if (strcmp(what, "new") == 0) {
        q->wr->idem_held = 1;
        q->wr->stage = ST_RATE;
        step(q);
        return;
    }
    if (strcmp(what, "conflict") == 0 || strcmp(what, "pending") == 0) {
        refuse(q, ERRCODE_IDEMPOTENCY_CONFLICT,
               what[0] == 'c' ? "idempotency key reused with another body"
                              : "a write with this idempotency key is under "
                                "way");
        return;
    }
    if (r->elements != 2 || r->element[1]->type != REDIS_REPLY_STRING) {
        refuse(q, ERRCODE_UNAVAILABLE, "stored record unusable");
        return;
    }
    /* the stored reply, as the service got it, without calling WeCom */
    v = json_loadb(r->element[1]->str, r->element[1]->len, 0, &jerr);
    code = (long)json_integer_value(json_object_get(v, "errcode"));
    json_decref(v);
    httpd_add_header(q->r, "X-Broker-Idempotent-Replay", "1");
    count(q, "replayed", code);
    proxy_count_request(q, code);
    proxy_audit(q, code, 0, 0);
    httpd_reply(q->r, 200, "application/json; charset=utf-8",
                r->element[1]->str, r->element[1]->len);
    proxy_preq_free(q);
}

static void
on_rate(enum brk_err err, struct redisReply *r, void *arg)
{
    struct preq *q = arg;

    if (store_failed(q, err, r, REDIS_REPLY_INTEGER))
        return;
    if (r->integer != 1) {
        refuse(q, ERRCODE_FREQ_LIMIT,
               "api freq out of limit (the service's write rate)");
        return;
    }
    q->wr->stage = ST_WELCOME;
    step(q);
}

static void
on_welcome(enum brk_err err, struct redisReply *r, void *arg)
{
    struct preq *q = arg;

    if (store_failed(q, err, r, REDIS_REPLY_INTEGER))
        return;
    if (r->integer == 41051) {
        refuse(q, ERRCODE_WELCOME_USED, "welcome_code already used");
        return;
    }
    if (r->integer != 0) {
        refuse(q, ERRCODE_WELCOME_INVALID, "invalid or expired welcome_code");
        return;
    }
    q->wr->stage = ST_UPSTREAM;
    step(q);
}

/* HMGET key on the fields the subjects of kinds a or b make ("tag:<id>"
 * for a corp tag, "cw:<id>" for a contact way, the id for a customer);
 * 0 when none: nothing sent. */
static int
hmget_subjects(struct preq *q, const char *what, enum scope_subject a,
               enum scope_subject b, store_reply_cb *cb, int *sent)
{
    const struct write_checked *wc = q->wr->wc;
    char key[KEYS_MAX];
    const char **argv = NULL;
    char **owned = NULL;
    size_t i, n = 0, k;
    int rc = -1;

    *sent = 0;
    for (i = 0; i < wc->nsubjects; i++)
        n += wc->subjects[i].kind == a || wc->subjects[i].kind == b;
    if (n == 0)
        return 0;
    if (write_store_key(key, sizeof(key), q->p->cfg->key_prefix, q->tr.suite,
                        q->tr.corp, what))
        return -1;
    argv = brk_calloc(n + 2, sizeof(*argv));
    owned = brk_calloc(n, sizeof(*owned));
    if (argv == NULL || owned == NULL)
        goto out;
    argv[0] = "HMGET";
    argv[1] = key;
    for (i = 0, k = 0; i < wc->nsubjects; i++) {
        const struct write_subject *s = &wc->subjects[i];
        size_t len;

        if (s->kind != a && s->kind != b)
            continue;
        if (s->kind == SCOPE_S_CUSTOMER) {
            argv[2 + k++] = s->id;
            continue;
        }
        len = strlen(s->id) + sizeof("tag:");
        owned[k] = brk_malloc(len);
        if (owned[k] == NULL)
            goto out;
        snprintf(owned[k], len, "%s:%s",
                 s->kind == SCOPE_S_CORP_TAG ? "tag" : "cw", s->id);
        argv[2 + k] = owned[k];
        k++;
    }
    if (store_cmd_argv(q->p->st, cb, q, (int)(n + 2), argv, NULL) == BRK_OK) {
        *sent = 1;
        rc = 0;
    }
out:
    for (i = 0; owned != NULL && i < n; i++)
        brk_free(owned[i]);
    brk_free(owned);
    brk_free(argv);
    return rc;
}

static const struct write_subject *
subject_of(const struct preq *q, enum scope_subject kind)
{
    size_t i;

    for (i = 0; i < q->wr->wc->nsubjects; i++)
        if (q->wr->wc->subjects[i].kind == kind)
            return &q->wr->wc->subjects[i];
    return NULL;
}

/* EVAL script id on key with the arguments a1.. up to the first NULL. */
static int
eval_one(struct preq *q, enum script_id id, const char *key, const char *a1,
         const char *a2, const char *a3, store_reply_cb *cb)
{
    const char *argv[7] = {"EVAL", scripts_text(id), "1", key, a1, a2, a3};
    int argc = 4;

    while (argc < 7 && argv[argc] != NULL)
        argc++;
    return store_cmd_argv(q->p->st, cb, q, argc, argv, NULL) == BRK_OK ? 0 : -1;
}

/* The next store step that applies, or the call to WeCom. */
static void
step(struct preq *q)
{
    struct pwrite *w = q->wr;
    const struct write_subject *wcode;
    char key[KEYS_MAX], what[96], lim[24], now[24], win[24], hash[65];
    int sent = 0;
    long long minute;

    switch (w->stage) {
    case ST_CUSTOMERS:
        if (hmget_subjects(q, "cust", SCOPE_S_CUSTOMER, SCOPE_S_CUSTOMER,
                           on_customers, &sent))
            goto fail;
        if (sent)
            return;
        w->stage = ST_OWNERS;
        /* fall through */
    case ST_OWNERS:
        if (hmget_subjects(q, "owner", SCOPE_S_CORP_TAG, SCOPE_S_CONTACT_WAY,
                           on_owners, &sent))
            goto fail;
        if (sent)
            return;
        w->stage = ST_IDEM;
        /* fall through */
    case ST_IDEM:
        if (w->idem[0] != '\0') {
            snprintf(lim, sizeof(lim), "%d", IDEM_PENDING_S);
            if (eval_one(q, SCRIPT_IDEM_BEGIN, w->idem, w->sha, lim, NULL,
                         on_idem))
                goto fail;
            return;
        }
        w->stage = ST_RATE;
        /* fall through */
    case ST_RATE:
        if (q->svc->write_rate > 0) {
            minute = brk_wall_ms() / 60000;
            snprintf(what, sizeof(what), "wrate:%lld", minute);
            snprintf(lim, sizeof(lim), "%ld", q->svc->write_rate);
            if (keys_service(key, sizeof(key), q->p->cfg->key_prefix,
                             q->svc->id, what) ||
                eval_one(q, SCRIPT_WRITE_RATE, key, lim, NULL, NULL, on_rate))
                goto fail;
            return;
        }
        w->stage = ST_WELCOME;
        /* fall through */
    case ST_WELCOME:
        wcode = subject_of(q, SCOPE_S_WELCOME_CODE);
        if (wcode != NULL) {
            snprintf(now, sizeof(now), "%lld", brk_wall_ms());
            snprintf(win, sizeof(win), "%d", WELCOME_WINDOW_MS);
            if (write_store_sha256(wcode->id, strlen(wcode->id), hash))
                goto fail;
            snprintf(what, sizeof(what), "welcome:%s", hash);
            if (write_store_key(key, sizeof(key), q->p->cfg->key_prefix,
                                q->tr.suite, q->tr.corp, what) ||
                eval_one(q, SCRIPT_WELCOME_TAKE, key, q->svc->id, now, win,
                         on_welcome))
                goto fail;
            return;
        }
        w->stage = ST_UPSTREAM;
        /* fall through */
    case ST_UPSTREAM:
        if (q->ep->multipart) {
            /* up to 20 MB: handed over, not copied */
            q->upstream_body = w->wc->body;
            q->upstream_len = w->wc->body_len;
            w->wc->body = NULL;
            snprintf(q->upstream_ctype, sizeof(q->upstream_ctype), "%s",
                     w->media.ctype_line);
        } else {
            q->upstream_body = brk_strdup(w->wc->body);
        }
        if (q->upstream_body == NULL)
            goto fail;
        w->result = "forwarded";
        proxy_start_upstream(q);
        return;
    }
fail:
    refuse(q, ERRCODE_UNAVAILABLE, "store unavailable");
}

/*---- The synchronous checks ----*/

/* The idempotency key header into w->idem (its record's key); 0, or -1
 * when it is malformed or repeated. */
static int
idem_key(struct preq *q)
{
    const char *v = NULL, *h;
    size_t pos = 0;
    char buf[SERVICE_ID_LEN + IDEM_KEY_MAX + 2], hash[65], what[80];
    size_t n;
    int seen = 0;

    /* every header of that name: one only */
    while ((h = httpd_header_next(q->r, IDEM_HEADER, &pos)) != NULL) {
        v = h;
        seen++;
    }
    if (seen == 0)
        return 0;
    n = v != NULL ? strlen(v) : 0;
    if (seen > 1 || n == 0 || n > IDEM_KEY_MAX ||
        strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                  "0123456789_.-") != n)
        return -1;
    /* the key is the service's: another service's same key is another */
    snprintf(buf, sizeof(buf), "%s %s", q->svc->id, v);
    snprintf(what, sizeof(what), "idem:");
    if (write_store_sha256(buf, strlen(buf), hash) ||
        (size_t)snprintf(what, sizeof(what), "idem:%s", hash) >= sizeof(what) ||
        write_store_key(q->wr->idem, sizeof(q->wr->idem), q->p->cfg->key_prefix,
                        q->tr.suite, q->tr.corp, what))
        return -1;
    return 0;
}

/* Members and departments in the range; 0, or -1 (one is not). */
static int
range_ok(const struct preq *q)
{
    const struct write_checked *wc = q->wr->wc;
    const struct write_subject *s;
    size_t i;
    char *end;
    long d;

    for (i = 0; i < wc->nsubjects; i++) {
        s = &wc->subjects[i];
        if (s->kind == SCOPE_S_MEMBER &&
            !vrange_has_member(q->range, s->id, strlen(s->id)))
            return -1;
        if (s->kind == SCOPE_S_DEPARTMENT) {
            d = strtol(s->id, &end, 10);
            if (*end != '\0' || !vrange_has_department(q->range, d))
                return -1;
        }
    }
    return 0;
}

/* media/upload's body as a checked write: the body the broker built, no
 * subjects, its one key "media". */
static enum errcode
media_checked(struct preq *q, char *msg, size_t msglen)
{
    struct pwrite *w = q->wr;
    struct proxy_media m;
    enum errcode e;

    e = proxy_media_build(q, &m, msg, msglen);
    if (e != ERRCODE_OK)
        return e;
    w->wc = brk_calloc(1, sizeof(*w->wc));
    if (w->wc == NULL || (w->wc->keys = brk_strdup("media")) == NULL) {
        brk_free(w->wc);
        w->wc = NULL;
        brk_free(m.body);
        snprintf(msg, msglen, "out of memory");
        return ERRCODE_UNAVAILABLE;
    }
    w->wc->body = m.body;
    w->wc->body_len = m.len;
    m.body = NULL;
    w->media = m;
    snprintf(w->media_size, sizeof(w->media_size), "%zu", m.size);
    return ERRCODE_OK;
}

void
proxy_write_tenant(struct preq *q)
{
    char msg[256], caps[CAPABILITY_LIST_MAX];
    enum errcode e;
    enum brk_err err;

    q->wr = brk_calloc(1, sizeof(*q->wr));
    if (q->wr == NULL) {
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "out of memory");
        return;
    }
    q->wr->result = "refused";
    /* who: the tenant first, as for a read */
    switch (proxy_decide(q, q->tr.gen, SCOPE_PERM_ALWAYS)) {
    case GRANT_ALLOWED:
        break;
    default:
        refuse(q, grant_errcode(q->why), "authorization relation invalid");
        return;
    }
    if ((q->svc->caps & q->ep->capability) == 0) {
        capability_format(q->ep->capability, caps, sizeof(caps));
        snprintf(msg, sizeof(msg), "api forbidden: the service lacks %s%s",
                 strchr(caps, ',') ? "all of the capabilities "
                                   : "the capability ",
                 caps);
        refuse(q, ERRCODE_API_FORBIDDEN, msg);
        return;
    }
    if (proxy_decide(q, q->tr.gen, q->ep->scope) != GRANT_ALLOWED) {
        snprintf(msg, sizeof(msg), "api forbidden: the grant lacks %s",
                 scope_perm_name(q->ep->scope));
        refuse(q, grant_errcode(q->why), msg);
        return;
    }
    err = proxy_effective_range(q);
    if (err) {
        proxy_reply_unusable(q, "service range", err);
        return;
    }
    /* what: the query, the key, the body */
    e = proxy_check_query(q, msg, sizeof(msg));
    if (e != ERRCODE_OK) {
        refuse(q, e, msg);
        return;
    }
    if (idem_key(q)) {
        refuse(q, ERRCODE_INVALID_PARAMETER,
               "invalid parameter: " IDEM_HEADER
               " is 1..64 of [A-Za-z0-9_.-], once");
        return;
    }
    if (q->ep->multipart)
        e = media_checked(q, msg, sizeof(msg));
    else
        e = write_check(&q->ep->body, httpd_body(q->r), httpd_body_len(q->r),
                        &q->wr->wc, msg, sizeof(msg));
    if (e != ERRCODE_OK) {
        refuse(q, e, msg);
        return;
    }
    if (write_store_sha256(q->wr->wc->body, q->wr->wc->body_len, q->wr->sha)) {
        refuse(q, ERRCODE_UNAVAILABLE, "no digest");
        return;
    }
    if (range_ok(q)) {
        refuse(q, ERRCODE_OUT_OF_RANGE,
               "no privilege to access/modify contact/party/agent");
        return;
    }
    /* a service with a range of its own may not let WeCom pick the sender
     * (the member who last chatted, maybe outside it) nor reach customers
     * by tag (any follow user's) */
    if (q->narrowed != NULL &&
        strcmp(q->ep->path, "/cgi-bin/externalcontact/add_msg_template") == 0 &&
        (subject_of(q, SCOPE_S_MEMBER) == NULL ||
         write_checked_has_key(q->wr->wc, "tag_filter"))) {
        refuse(q, ERRCODE_OUT_OF_RANGE,
               "no privilege to access/modify contact/party/agent: name a "
               "sender in range and no tag_filter");
        return;
    }
    q->wr->stage = ST_CUSTOMERS;
    step(q);
}

/*---- The reply ----*/

static void
record_creator(struct preq *q, const json_t *v)
{
    char key[KEYS_MAX];
    const char *argv[2 + 2 * 101];
    char fields[101][80];
    const json_t *tg, *t;
    size_t i, n = 0;

    if (q->ep->creates == SCOPE_C_CONTACT_WAY) {
        const char *id = json_string_value(json_object_get(v, "config_id"));

        if (id != NULL && strlen(id) < 70)
            snprintf(fields[n++], sizeof(fields[0]), "cw:%s", id);
    } else if (q->ep->creates == SCOPE_C_CORP_TAG) {
        tg = json_object_get(v, "tag_group");
        if (json_string_value(json_object_get(tg, "group_id")) != NULL &&
            json_string_length(json_object_get(tg, "group_id")) < 70)
            snprintf(fields[n++], sizeof(fields[0]), "tag:%s",
                     json_string_value(json_object_get(tg, "group_id")));
        json_array_foreach(json_object_get(tg, "tag"), i, t)
        {
            const char *id = json_string_value(json_object_get(t, "id"));

            if (n < nitems(fields) && id != NULL && strlen(id) < 70)
                snprintf(fields[n++], sizeof(fields[0]), "tag:%s", id);
        }
    }
    if (n == 0 || write_store_key(key, sizeof(key), q->p->cfg->key_prefix,
                                  q->tr.suite, q->tr.corp, "owner"))
        return;
    argv[0] = "HSET";
    argv[1] = key;
    for (i = 0; i < n; i++) {
        argv[2 + 2 * i] = fields[i];
        argv[3 + 2 * i] = q->svc->id;
    }
    if (store_cmd_argv(q->p->st, NULL, NULL, (int)(2 + 2 * n), argv, NULL))
        log_warn("write: creator of %s not recorded", q->ep->path);
}

/* Feed the customer index from a reply's (customer, follow user) pairs. */
static void
index_customers(struct preq *q, const json_t *v)
{
    const char *pairs[2 * CUSTIDX_MAX_PAIRS];
    const json_t *e, *f;
    const char *c;
    size_t i, n = 0;

    if (strcmp(q->path, "/cgi-bin/externalcontact/get") == 0) {
        c = json_string_value(json_object_get(
            json_object_get(v, "external_contact"), "external_userid"));
        json_array_foreach(json_object_get(v, "follow_user"), i, f)
        {
            if (c == NULL || n == CUSTIDX_MAX_PAIRS)
                break;
            pairs[2 * n] = c;
            pairs[2 * n + 1] = json_string_value(json_object_get(f, "userid"));
            n += pairs[2 * n + 1] != NULL;
        }
    } else {
        json_array_foreach(json_object_get(v, "external_contact_list"), i, e)
        {
            if (n == CUSTIDX_MAX_PAIRS)
                break;
            pairs[2 * n] = json_string_value(json_object_get(
                json_object_get(e, "external_contact"), "external_userid"));
            pairs[2 * n + 1] = json_string_value(
                json_object_get(json_object_get(e, "follow_info"), "userid"));
            n += pairs[2 * n] != NULL && pairs[2 * n + 1] != NULL;
        }
    }
    if (n > 0 && custidx_add(q->p->st, q->p->cfg->key_prefix, q->tr.suite,
                             q->tr.corp, pairs, n, NULL, NULL))
        log_warn("customer index not fed");
}

void
proxy_write_replied(struct preq *q, const char *out, size_t len)
{
    struct pwrite *w = q->wr;
    const char *argv[7];
    char ttl[16];
    json_error_t jerr;
    json_t *v;
    long code;

    if (q->ep == NULL)
        return;
    if (!q->ep->write) {
        /* reads that show which members follow a customer */
        if (strcmp(q->path, "/cgi-bin/externalcontact/get") != 0 &&
            strcmp(q->path, "/cgi-bin/externalcontact/batch/get_by_user") != 0)
            return;
        v = json_loadb(out, len, 0, &jerr);
        if (json_integer_value(json_object_get(v, "errcode")) == 0)
            index_customers(q, v);
        json_decref(v);
        return;
    }
    if (w == NULL)
        return;
    v = json_loadb(out, len, 0, &jerr);
    code = v != NULL ? (long)json_integer_value(json_object_get(v, "errcode"))
                     : -1;
    if (code == 0 && q->ep->creates != SCOPE_C_NONE)
        record_creator(q, v);
    json_decref(v);
    count(q, "forwarded", code);
    /* a success is kept for the key's retries; anything else releases the
     * key, so a retry is a new write, as without one */
    if (w->idem_held && code == 0 && len < 16384) {
        snprintf(ttl, sizeof(ttl), "%d", IDEM_TTL_S);
        argv[0] = "EVAL";
        argv[1] = scripts_text(SCRIPT_IDEM_FINISH);
        argv[2] = "1";
        argv[3] = w->idem;
        argv[4] = w->sha;
        argv[5] = out;
        argv[6] = ttl;
        if (store_cmd_argv(q->p->st, NULL, NULL, 7, argv,
                           (const size_t[]){4, strlen(argv[1]), 1,
                                            strlen(w->idem), 64, len,
                                            strlen(ttl)}) == BRK_OK)
            w->idem_held = 0;
    }
}
