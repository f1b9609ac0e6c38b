/*
 * The service API (see proxy.h): routing, the upstream call, replies and
 * lifetime. A request is a chain of steps over one context; every step
 * either continues or ends the request with exactly one reply through
 * proxy_reply_error / proxy_reply_filtered. In steady state the chain
 * waits for Redis not once: tokens, services, grants and ranges come from
 * in-process caches that live at most cache_max_age, are read again in
 * the background past 3/4 of it (proxy_records.c) and are dropped on
 * change notices and reconnects; the audit entry joins the loop turn's
 * batch (audit.c).
 *
 * The chain, in order:
 *   proxy_handle
 *     -> proxy_gettoken                          (proxy_gettoken.c)
 *     -> data_path -> [HGETALL token -> on_btoken] -> have_token
 *        -> proxy_load_service -> on_data_service (proxy_records.c)
 *        -> proxy_load_tenant -> on_data_tenant   (proxy_records.c)
 *           proxy_decide, proxy_effective_range
 *        -> proxy_oauth_service                   (proxy_oauth.c)
 *         | proxy_check_query / proxy_check_body  (proxy_params.c)
 *        -> proxy_start_upstream -> budget_take -> on_budget
 *        -> tokens_corp -> on_corp_token -> wecom_api_stream
 *        -> on_chunk ... -> on_upstream -> proxy_reply_filtered
 *           (a refused corp token: proxy_start_upstream once more)
 *     (a write: proxy_write_tenant, proxy_write.c, after the tenant)
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "agent_range.h"
#include "audit.h"
#include "budget.h"
#include "cache.h"
#include "codec.h"
#include "config.h"
#include "dynbuf.h"
#include "errcodes.h"
#include "filter.h"
#include "grant.h"
#include "httpd.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "proxy.h"
#include "proxy_int.h"
#include "query.h"
#include "record.h"
#include "scope_map.h"
#include "service.h"
#include "store.h"
#include "tokens.h"
#include "visible_range.h"
#include "wecom_api.h"

#define MAX_PARAMS    32
#define CACHE_ENTRIES 100000
/* how often expired cache entries are dropped, seconds */
#define PROXY_EXPIRE_S 1
/* A filtered reply up to this size is copied into the connection's own
 * buffer (httpd keeps 16 KiB of it between replies) and the filter keeps
 * its output buffer for the next request; a larger one is handed over. */
#define REPLY_COPY_MAX (8 * 1024)
/* The upstream URL: the path, the corp token percent-encoded (up to
 * 2048 bytes, tokens.c) and the query (64 KiB, proxy_params.c). */
#define URL_MAX    (96 * 1024)
#define URL_INLINE 1024

/*---- Replies ----*/

/* Tell the budget how the call it allowed ended (errcode -1: no answer
 * from WeCom, or no call); once per allowed call. */
static void
budget_done(struct preq *q, long errcode)
{
    if (!q->budget_held)
        return;
    q->budget_held = 0;
    budget_report(q->p->budget, q->tr.corp, q->path + strlen("/cgi-bin/"),
                  errcode);
}

void
proxy_preq_free(struct preq *q)
{
    budget_done(q, -1);
    proxy_write_free(q);
    /* read by other threads (a reload's scope-map retirement) */
    __atomic_sub_fetch(&q->p->inflight, 1, __ATOMIC_RELEASE);
    query_free(q->q);
    json_decref(q->body);
    record_service_unref(q->svc);
    record_tenant_unref(q->ten);
    proxy_range_unref(q->narrowed);
    dynbuf_free(&q->upstream_qs);
    if (q->upstream_body != NULL) {
        brk_wipe(q->upstream_body,
                 q->upstream_len ? q->upstream_len : strlen(q->upstream_body));
        free(q->upstream_body);
    }
    dynbuf_free(&q->corp_token);
    proxy_filter_put(q->p, q->filter);
    brk_wipe(q->tdk, sizeof(q->tdk));
    brk_free(q);
}

/*---- Filters and strings without allocations ----*/

/*
 * A loop's requests reuse its filters: one is taken idle (or made) when
 * the upstream call starts and given back, cleared, when the request ends,
 * so a steady stream of data calls makes none. A filter is only ever used
 * by the loop of the proxy it belongs to.
 */
enum brk_err
proxy_filter_get(struct preq *q, const struct scope_node *root,
                 filter_range_cb *in_range)
{
    struct proxy *p = q->p;
    struct filter *f;
    enum brk_err err;

    assert(q->filter == NULL);
    if (p->nidle_filters == 0)
        return filter_new(root, &q->grant, in_range, q, NULL, &q->filter);
    f = p->idle_filters[--p->nidle_filters];
    err = filter_reset(f, root, &q->grant, in_range, q);
    if (err) {
        proxy_filter_put(p, f);
        return err;
    }
    q->filter = f;
    return BRK_OK;
}

void
proxy_filter_put(struct proxy *p, struct filter *f)
{
    if (f == NULL)
        return;
    if (p->nidle_filters == PROXY_IDLE_FILTERS) {
        filter_free(f);
        return;
    }
    /* nothing of this request's reply stays readable in it */
    filter_clear(f);
    p->idle_filters[p->nidle_filters++] = f;
}

enum brk_err
proxy_pct_append(struct dynbuf *d, const char *s)
{
    char in[128], out[3 * sizeof(in) + 1];
    enum brk_err err = BRK_OK;
    size_t n;

    while (*s != '\0' && !err) {
        n = strnlen(s, sizeof(in) - 1);
        memcpy(in, s, n);
        in[n] = '\0';
        codec_pct_encode(in, out);
        err = dynbuf_add_str(d, out);
        s += n;
    }
    if (d->secret) {
        brk_wipe(in, sizeof(in));
        brk_wipe(out, sizeof(out));
    }
    return err;
}

static void
audit_names(struct preq *q, long errcode, unsigned long stripped,
            unsigned long dropped, const char *returned, const char *removed)
{
    char now[BRK_DEC_MAX], code[BRK_DEC_MAX], sn[BRK_DEC_MAX], dn[BRK_DEC_MAX];
    const char *kv[32];
    size_t n = 0;

    brk_dec(now, brk_wall_ms() / 1000);
    brk_dec(code, errcode);
    brk_decu(sn, stripped);
    brk_decu(dn, dropped);
    kv[n++] = "type";
    kv[n++] = q->ep != NULL && q->ep->write ? "write" : "request";
    kv[n++] = "req";
    kv[n++] = q->r->id;
    kv[n++] = "at";
    kv[n++] = now;
    kv[n++] = "service";
    kv[n++] = q->svc ? q->svc->name : "";
    kv[n++] = "corpid";
    kv[n++] = q->tr.corp;
    kv[n++] = "endpoint";
    kv[n++] = q->path;
    kv[n++] = "errcode";
    kv[n++] = code;
    kv[n++] = "stripped";
    kv[n++] = sn;
    kv[n++] = "dropped";
    kv[n++] = dn;
    if (returned != NULL) {
        kv[n++] = "returned";
        kv[n++] = returned;
        kv[n++] = "removed";
        kv[n++] = removed ? removed : "";
    }
    n = proxy_write_audit(q, kv, n);
    if (q->p->audit != NULL)
        audit_append(q->p->audit, q->r->id, kv, n);
}

void
proxy_audit(struct preq *q, long errcode, unsigned long stripped,
            unsigned long dropped)
{
    audit_names(q, errcode, stripped, dropped, NULL, NULL);
}

void
proxy_count_request(struct preq *q, long errcode)
{
    char labels[192], code[BRK_DEC_MAX];

    brk_dec(code, errcode);
    metrics_inc(METRICS_API_REQUESTS,
                metrics_labels(labels, sizeof(labels), "endpoint",
                               q->ep ? q->ep->path : "other", "errcode", code,
                               NULL));
}

/* The one place an error reply is built: errcode and HTTP status from
 * the table (errcodes.h), errmsg from msg. */
static void
reply_send(struct preq *q, int http, long errcode, const char *msg)
{
    char body[400];

    if (errcodes_body(errcode, msg, body, sizeof(body)) != BRK_OK &&
        errcodes_body(errcode, "error", body, sizeof(body)) != BRK_OK)
        snprintf(body, sizeof(body), "{\"errcode\":%ld,\"errmsg\":\"error\"}",
                 errcode);
    log_req(errcode == -1 ? LOG_LVL_WARN : LOG_LVL_INFO, q->r->id,
            "service API %s %s: errcode %ld: %s", q->svc ? q->svc->name : "-",
            q->path, errcode, msg);
    proxy_count_request(q, errcode);
    if (q->svc != NULL)
        proxy_audit(q, errcode, 0, 0);
    httpd_reply(q->r, http, "application/json; charset=utf-8", body,
                strlen(body));
    proxy_preq_free(q);
}

void
proxy_reply_error(struct preq *q, enum errcode e, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply_send(q, errcodes_http(e), errcodes_code(e), msg);
}

/* WeCom's own error, passed on as WeCom answered it. */
static void
reply_relay(struct preq *q, long errcode, const char *msg)
{
    reply_send(q, errcodes_http(ERRCODE_OK), errcode, msg);
}

/* A stored record that is damaged or could not be read: the request is
 * refused, never served with a wider default. */
void
proxy_reply_unusable(struct preq *q, const char *what, enum brk_err err)
{
    log_req(LOG_LVL_WARN, q->r->id, "stored %s record unusable (%s)", what,
            brk_strerror(err));
    proxy_reply_error(q, ERRCODE_UNAVAILABLE, "stored record unusable");
}

/*---- The data path ----*/

static int
range_has(const struct vrange *v, enum scope_record kind, const char *id,
          size_t len)
{
    char buf[32], *end;
    long n;

    if (v == NULL)
        return 0;
    switch (kind) {
    case SCOPE_REC_MEMBER:
    case SCOPE_REC_FOLLOW_USER:
    case SCOPE_REC_CHAT_MEMBER:
    case SCOPE_REC_CHAT:
        return vrange_has_member(v, id, len);
    case SCOPE_REC_DEPARTMENT:
    case SCOPE_REC_TAG:
        if (len == 0 || len >= sizeof(buf))
            return 0;
        memcpy(buf, id, len);
        buf[len] = '\0';
        n = strtol(buf, &end, 10);
        if (*end != '\0')
            return 0;
        return kind == SCOPE_REC_DEPARTMENT ? vrange_has_department(v, n)
                                            : vrange_has_tag(v, n);
    default:
        return 0;
    }
}

static int
in_range(enum scope_record kind, const char *id, size_t len, void *arg)
{
    struct preq *q = arg;
    int in = range_has(q->range, kind, id, len);

    if (in && kind == q->must_see)
        q->seen = 1;
    return in;
}

void
proxy_reply_filtered(struct preq *q)
{
    const char *out = NULL, *kept = NULL, *removed = NULL;
    char *owned = NULL, n[BRK_DEC_MAX];
    size_t len = 0;
    unsigned long stripped = filter_stripped(q->filter);
    unsigned long dropped = filter_dropped(q->filter);
    long errcode = 0;

    /* out is the filter's (borrowed) or owned; owned is NULL or out */
    if (filter_output(q->filter, &out, &len) != BRK_OK ||
        (len > REPLY_COPY_MAX &&
         filter_take_output(q->filter, &owned, &len) != BRK_OK)) {
        proxy_reply_error(q, ERRCODE_BAD_GATEWAY,
                          "upstream reply could not be filtered");
        return;
    }
    if (owned != NULL)
        out = owned;
    /* WeCom's errcode as the filter read it (none: 0): a refused corp
     * token is refreshed and the call repeated once */
    (void)filter_errcode(q->filter, &errcode);
    /* a 45009 or 45033 is the budget's business too */
    budget_done(q, errcode);
    if (tokens_is_corp_token_error(errcode) && !q->retried) {
        q->retried = 1;
        tokens_corp_rejected(q->p->tok, q->tr.suite, q->tr.corp,
                             q->corp_token.buf);
        brk_free(owned);
        proxy_filter_put(q->p, q->filter);
        q->filter = NULL;
        proxy_start_upstream(q);
        return;
    }
    if (errcode == 0 && q->must_see != SCOPE_REC_NONE && !q->seen) {
        brk_free(owned);
        proxy_reply_error(q, ERRCODE_OUT_OF_RANGE,
                          "no privilege to access/modify contact/party/agent");
        return;
    }
    /* a range-narrowed service reads its own range from agent/get */
    if (q->narrowed != NULL && strcmp(q->path, AGENT_RANGE_PATH) == 0) {
        char *rw = NULL;
        size_t rwlen = 0;
        unsigned long more = 0;
        enum brk_err err =
            agent_range_rewrite(out, len, q->range, &rw, &rwlen, &more);

        brk_free(owned);
        owned = NULL;
        if (err) {
            proxy_reply_error(q, ERRCODE_UNAVAILABLE,
                              "agent range not narrowed (%s)",
                              brk_strerror(err));
            return;
        }
        out = owned = rw;
        len = rwlen;
        dropped += more;
    }
    httpd_add_header(q->r, "X-Broker-Stripped", brk_decu(n, stripped));
    httpd_add_header(q->r, "X-Broker-Dropped", brk_decu(n, dropped));
    metrics_add(METRICS_FIELDS_STRIPPED, NULL, (double)stripped);
    metrics_add(METRICS_RECORDS_DROPPED, NULL, (double)dropped);
    proxy_write_replied(q, out, len);
    proxy_count_request(q, errcode);
    /* names of the fields returned and removed, never a value */
    if (filter_names_get(q->filter, &kept, &removed) != BRK_OK)
        kept = removed = NULL;
    audit_names(q, errcode, stripped, dropped, kept, removed);
    /* a large reply leaves from where it was written; a small one is
     * copied, and the filter's buffer serves the next request */
    if (owned != NULL)
        httpd_reply_take(q->r, 200, "application/json; charset=utf-8", owned,
                         len);
    else
        httpd_reply(q->r, 200, "application/json; charset=utf-8", out, len);
    proxy_preq_free(q);
}

static int
on_chunk(const char *data, size_t len, void *arg)
{
    struct preq *q = arg;
    enum brk_err err = filter_feed(q->filter, data, len);

    return err ? (int)err : 0;
}

static void
on_upstream(const struct wecom_api_result *res, void *arg)
{
    struct preq *q = arg;
    enum brk_err err = res->err;

    if (err == BRK_OK)
        err = filter_finish(q->filter);
    switch (err) {
    case BRK_OK:
        proxy_reply_filtered(q);
        return;
    case BRK_ERR_UPSTREAM_TIMEOUT:
        proxy_reply_error(q, ERRCODE_GATEWAY_TIMEOUT, "WeCom timed out");
        return;
    case BRK_ERR_UPSTREAM:
        proxy_reply_error(q, ERRCODE_BAD_GATEWAY, "WeCom unreachable");
        return;
    case BRK_ERR_SHUTDOWN:
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "shutting down");
        return;
    default:
        /* malformed, not JSON, too big, repeated keys: never the bytes */
        proxy_reply_error(q, ERRCODE_BAD_GATEWAY,
                          "WeCom replied with something unusable (%s)",
                          brk_strerror(err));
        return;
    }
}

static void
on_corp_token(enum brk_err err, const char *token, long errcode, void *arg)
{
    struct preq *q = arg;
    struct dynbuf url;
    char first[URL_INLINE];

    if (err) {
        if (err == BRK_ERR_WECOM)
            reply_relay(q, errcode, "WeCom refused the corp token");
        else
            proxy_reply_error(q,
                              err == BRK_ERR_STORE ? ERRCODE_UNAVAILABLE
                                                   : ERRCODE_BAD_GATEWAY,
                              "no corp token (%s)", brk_strerror(err));
        return;
    }
    /* path?access_token=TOKEN[&query], on the stack while it fits (the
     * WeCom client copies it) */
    dynbuf_init_inline_secret(&url, first, sizeof(first), URL_MAX);
    dynbuf_reset(&q->corp_token);
    err = dynbuf_add_str(&q->corp_token, token);
    if (!err)
        err = dynbuf_add_str(&url, q->path);
    if (!err)
        err = dynbuf_add_str(&url, "?access_token=");
    if (!err)
        err = proxy_pct_append(&url, token);
    if (!err && q->upstream_qs.len > 0)
        err = dynbuf_add(&url, "&", 1);
    if (!err)
        err = dynbuf_add(&url, q->upstream_qs.buf, q->upstream_qs.len);
    if (err) {
        dynbuf_free(&url);
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "%s",
                          err == BRK_ERR_NOMEM ? "out of memory"
                                               : "upstream URL too long");
        return;
    }
    q->seen = 0;
    err = proxy_filter_get(q, &q->ep->root, in_range);
    if (!err && q->upstream_len > 0)
        err = wecom_api_stream_body(q->p->api, url.buf, q->upstream_ctype,
                                    q->upstream_body, q->upstream_len, NULL,
                                    on_chunk, on_upstream, q);
    else if (!err)
        err =
            wecom_api_stream(q->p->api, q->post ? "POST" : "GET", url.buf,
                             q->upstream_body, NULL, on_chunk, on_upstream, q);
    dynbuf_free(&url);
    if (err)
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "cannot call WeCom (%s)",
                          brk_strerror(err));
}

static void
on_budget(enum budget_result res, void *arg)
{
    struct preq *q = arg;

    switch (res) {
    case BUDGET_OK:
        q->budget_held = 1;
        if (tokens_corp(q->p->tok, q->tr.suite, q->tr.corp, on_corp_token, q))
            proxy_reply_error(q, ERRCODE_UNAVAILABLE, "no corp token");
        return;
    case BUDGET_SPENT:
        proxy_reply_error(q, ERRCODE_FREQ_LIMIT, "api freq out of limit");
        return;
    case BUDGET_PAUSED:
        proxy_reply_error(q, ERRCODE_FREQ_LIMIT,
                          "api freq out of limit (paused after WeCom's 45009)");
        return;
    case BUDGET_BUSY:
        proxy_reply_error(q, ERRCODE_CONCURRENT_LIMIT,
                          "api concurrent out of limit");
        return;
    default:
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
}

/* Every WeCom call, a retry too, is first allowed by the shared budget:
 * a spent one is answered at once, without calling WeCom. */
void
proxy_start_upstream(struct preq *q)
{
    if (q->p->budget == NULL ||
        budget_take(q->p->budget, q->tr.corp, q->path + strlen("/cgi-bin/"),
                    BUDGET_SERVICE, on_budget, q) != BRK_OK)
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "no upstream budget");
}

static void
on_data_tenant(struct preq *q)
{
    enum brk_err err;
    enum errcode e;
    char msg[256];

    if (q->ep != NULL && q->ep->write) {
        proxy_write_tenant(q);
        return;
    }
    switch (proxy_decide(q, q->tr.gen,
                         q->oauth ? SCOPE_PERM_ALWAYS : q->ep->scope)) {
    case GRANT_ALLOWED:
        break;
    case GRANT_TENANT_LACKS:
    case GRANT_SERVICE_LACKS:
    case GRANT_BOTH_LACK:
        proxy_reply_error(q, grant_errcode(q->why),
                          "api forbidden: the grant lacks %s",
                          scope_perm_name(q->ep->scope));
        return;
    default:
        proxy_reply_error(q, grant_errcode(q->why),
                          "authorization relation invalid");
        return;
    }
    err = proxy_effective_range(q);
    if (err) {
        proxy_reply_unusable(q, "service range", err);
        return;
    }
    if (q->oauth) {
        proxy_oauth_service(q);
        return;
    }
    e = q->post ? proxy_check_body(q, msg, sizeof(msg))
                : proxy_check_query(q, msg, sizeof(msg));
    if (e != ERRCODE_OK) {
        proxy_reply_error(q, e, "%s", msg);
        return;
    }
    proxy_start_upstream(q);
}

static void
on_data_service(struct preq *q)
{
    struct grant_ask a = {q->svc, q->tr.gen, NULL, NULL, NULL, 0};
    struct grant_verdict v;

    grant_decide(&a, &v);
    if (v.why != GRANT_ALLOWED) {
        record_service_unref(q->svc);
        q->svc = NULL;
        proxy_reply_error(q, v.code, "invalid access_token");
        return;
    }
    proxy_load_tenant(q, on_data_tenant);
}

static void
have_token(struct preq *q)
{
    if (q->tr.exp <= brk_wall_ms() / 1000) {
        proxy_reply_error(q, ERRCODE_TOKEN_EXPIRED, "access_token expired");
        return;
    }
    proxy_load_service(q, q->tr.svc, on_data_service);
}

static void
on_btoken(enum brk_err err, struct redisReply *r, void *arg)
{
    struct preq *q = arg;
    struct record_token *t;

    if (err) {
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
    err = record_token_decode(r, &q->tr);
    if (err == BRK_ERR_NOTFOUND) {
        proxy_reply_error(q, ERRCODE_INVALID_TOKEN, "invalid access_token");
        return;
    }
    if (err) {
        proxy_reply_unusable(q, "token", err);
        return;
    }
    t = q->gen == q->p->gen ? brk_malloc(sizeof(*t)) : NULL;
    if (t != NULL) {
        *t = q->tr;
        if (cache_put(q->p->tokens, q->token_hash, t, brk_mono_ms()))
            log_debug("token cache full");
    }
    have_token(q);
}

static void
data_path(struct preq *q)
{
    const char *tok;
    struct record_token *t;
    char key[KEYS_MAX];
    const char *argv[2];
    long long age = 0;

    /* an empty token is none, as at WeCom */
    if (query_count(q->q, "access_token") == 0 ||
        query_get(q->q, "access_token")[0] == '\0') {
        proxy_reply_error(q, ERRCODE_TOKEN_MISSING, "access_token missing");
        return;
    }
    if (query_count(q->q, "access_token") > 1) {
        proxy_reply_error(q, ERRCODE_INVALID_PARAMETER,
                          "invalid parameter: access_token repeated");
        return;
    }
    tok = query_get(q->q, "access_token");
    if (strlen(tok) != SERVICE_TOKEN_LEN) {
        proxy_reply_error(q, ERRCODE_INVALID_TOKEN, "invalid access_token");
        return;
    }
    service_token_hash(tok, strlen(tok), q->token_hash);
    t = cache_get_age(q->p->tokens, q->token_hash, brk_mono_ms(), &age);
    if (t != NULL) {
        q->tr = *t;
        proxy_refresh_token(q->p, q->token_hash, age);
        have_token(q);
        return;
    }
    if (keys_btoken(key, sizeof(key), q->p->cfg->key_prefix, q->token_hash)) {
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "key names too long");
        return;
    }
    argv[0] = "HGETALL";
    argv[1] = key;
    if (store_cmd_argv(q->p->st, on_btoken, q, 2, argv, NULL))
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
}

void
proxy_handle(struct httpd_req *r, void *arg)
{
    struct proxy *p = arg;
    struct preq *q;
    const char *path = httpd_path(r), *method = httpd_method(r);
    json_error_t jerr;
    size_t blen;

    r->route = "api";
    q = brk_calloc(1, sizeof(*q));
    if (q == NULL) {
        httpd_reply_text(r, 503, "{\"errcode\":-1,\"errmsg\":\"busy\"}");
        return;
    }
    q->p = p;
    q->gen = p->gen;
    q->r = r;
    q->scopes = p->scopes;
    dynbuf_init_inline(&q->upstream_qs, q->upstream_qs_first,
                       sizeof(q->upstream_qs_first), PROXY_QS_MAX);
    dynbuf_init_inline_secret(&q->corp_token, q->corp_token_first,
                              sizeof(q->corp_token_first), PROXY_TOKEN_MAX);
    __atomic_add_fetch(&p->inflight, 1, __ATOMIC_ACQUIRE);
    snprintf(q->path, sizeof(q->path), "%s", path);
    if (strlen(path) >= sizeof(q->path) || strncmp(path, "/cgi-bin/", 9)) {
        proxy_reply_error(q, ERRCODE_API_FORBIDDEN,
                          "api forbidden: not declared in scopes");
        return;
    }
    if (query_parse(httpd_raw_query(r), MAX_PARAMS, &q->q) != BRK_OK) {
        proxy_reply_error(q, ERRCODE_INVALID_PARAMETER,
                          "invalid parameter: malformed query");
        return;
    }
    if (strcmp(q->path, "/cgi-bin/gettoken") == 0) {
        r->route = "gettoken";
        if (strcmp(method, "GET") != 0) {
            proxy_reply_error(q, ERRCODE_INVALID_PARAMETER,
                              "invalid parameter: use GET");
            return;
        }
        proxy_gettoken(q);
        return;
    }
    q->post = strcmp(method, "POST") == 0;
    if (!q->post && strcmp(method, "GET") != 0) {
        proxy_reply_error(q, ERRCODE_API_FORBIDDEN,
                          "api forbidden: read APIs only");
        return;
    }
    if (q->scopes == NULL) {
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "scope maps not loaded");
        return;
    }
    if (strcmp(q->path, "/cgi-bin/auth/getuserinfo") == 0 ||
        strcmp(q->path, "/cgi-bin/auth/getuserdetail") == 0) {
        /* part of the service API whatever scopes/ declares */
        q->oauth = strcmp(q->path, "/cgi-bin/auth/getuserinfo") == 0 ? 1 : 2;
        r->route = q->oauth == 1 ? "getuserinfo" : "getuserdetail";
        if (q->post != (q->oauth == 2)) {
            proxy_reply_error(q, ERRCODE_INVALID_PARAMETER,
                              "invalid parameter: wrong method");
            return;
        }
        if (q->post) {
            blen = httpd_body_len(r);
            q->body = blen && blen < 4096
                          ? json_loadb(httpd_body(r), blen,
                                       JSON_REJECT_DUPLICATES, &jerr)
                          : NULL;
            if (!json_is_object(q->body)) {
                proxy_reply_error(q, ERRCODE_INVALID_PARAMETER,
                                  "invalid parameter: body");
                return;
            }
        }
        data_path(q);
        return;
    }
    /* undeclared paths and write APIs are refused before anything else */
    q->ep = scope_map_find(q->scopes, q->path);
    if (q->ep == NULL || strcmp(q->ep->method, q->post ? "POST" : "GET") != 0) {
        q->ep = NULL;
        proxy_reply_error(q, ERRCODE_API_FORBIDDEN,
                          "api forbidden: not declared in scopes");
        return;
    }
    /* the listener takes media/upload's 20 MB: JSON bodies stay small */
    if (!q->ep->multipart && httpd_body_len(r) > PROXY_JSON_BODY_MAX) {
        proxy_reply_error(q, ERRCODE_INVALID_VALUE,
                          "invalid parameter: body too large");
        return;
    }
    /* a write's body is checked whole once the caller is known */
    if (q->ep->write) {
        data_path(q);
        return;
    }
    if (q->post) {
        blen = httpd_body_len(r);
        q->body = blen ? json_loadb(httpd_body(r), blen, JSON_REJECT_DUPLICATES,
                                    &jerr)
                       : json_object();
        if (!json_is_object(q->body)) {
            proxy_reply_error(q, ERRCODE_INVALID_PARAMETER,
                              "invalid parameter: body is not a "
                              "JSON object");
            return;
        }
    }
    data_path(q);
}

/*---- Notices and lifetime ----*/

void
proxy_notice(struct proxy *p, const char *msg, size_t len)
{
    char buf[200];

    p->gen++;
    if (len >= sizeof(buf))
        return;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    if (strncmp(buf, "svc ", 4) == 0) {
        cache_remove(p->services, buf + 4);
        /* tokens name their service inside the value: start over */
        cache_clear(p->tokens);
        cache_clear(p->ranges);
        return;
    }
    cache_remove(p->tenants, buf);
    cache_remove_prefix(p->ranges, buf);
}

void
proxy_drop_caches(struct proxy *p)
{
    p->gen++;
    cache_clear(p->tokens);
    cache_clear(p->services);
    cache_clear(p->tenants);
    cache_clear(p->ranges);
}

/* Use b (borrowed, must outlive the proxy) for every WeCom call; until
 * set, data calls are refused (-1, 503). Cannot fail. */
void
proxy_set_budget(struct proxy *p, struct budget *b)
{
    p->budget = b;
}

/* Write the audit trail through a (borrowed). Cannot fail. */
void
proxy_set_audit(struct proxy *p, struct audit *a)
{
    p->audit = a;
}

void
proxy_set_scopes(struct proxy *p, const struct scope_map *m)
{
    p->scopes = m;
}

unsigned
proxy_inflight(const struct proxy *p)
{
    return __atomic_load_n(&p->inflight, __ATOMIC_ACQUIRE);
}

static void
tok_free(void *v)
{
    brk_free(v);
}

static size_t
tok_size(const void *v)
{
    (void)v;
    return sizeof(struct record_token);
}

static void
on_expire(evutil_socket_t fd, short what, void *arg)
{
    struct proxy *p = arg;
    long long now = brk_mono_ms();

    (void)fd;
    (void)what;
    /* entries nobody asks for again give their bytes back to the shared
     * budget instead of waiting for the next put here */
    cache_expire(p->tokens, now);
    cache_expire(p->services, now);
    cache_expire(p->tenants, now);
    cache_expire(p->ranges, now);
}

/* Count every cache of p against b (borrowed, outlives p); before the
 * first request. Expired entries are dropped once a second from then on.
 * Cannot fail (without a timer, entries still go at their next put). */
void
proxy_set_cache_budget(struct proxy *p, struct cache_budget *b)
{
    struct timeval tv = {PROXY_EXPIRE_S, 0};

    cache_set_budget(p->tokens, b, tok_size);
    cache_set_budget(p->services, b, proxy_svc_size);
    cache_set_budget(p->tenants, b, proxy_tenant_size);
    cache_set_budget(p->ranges, b, proxy_range_size);
    if (p->expire == NULL)
        p->expire = event_new(p->base, -1, EV_PERSIST, on_expire, p);
    if (p->expire == NULL || event_add(p->expire, &tv) != 0)
        log_warn("proxy: no cache expiry timer");
}

enum brk_err
proxy_new(struct event_base *base, const struct config *cfg,
          const struct keyring *kr, struct store *st, struct suites *suites,
          struct tokens *tok, struct wecom_api *api, struct proxy **out)
{
    struct proxy *p = brk_calloc(1, sizeof(*p));
    long long age = cfg->cache_max_age * 1000LL;
    enum brk_err err;

    if (p == NULL)
        return BRK_ERR_NOMEM;
    p->base = base;
    p->cfg = cfg;
    p->kr = kr;
    p->st = st;
    p->suites = suites;
    p->tok = tok;
    p->api = api;
    err = cache_new(CACHE_ENTRIES, age, tok_free, &p->tokens);
    if (!err)
        err = cache_new(10000, age, proxy_svc_unref, &p->services);
    if (!err)
        err = cache_new(10000, age, proxy_tenant_unref, &p->tenants);
    if (!err)
        err = cache_new(10000, age, proxy_range_unref, &p->ranges);
    if (err) {
        proxy_free(p);
        return err;
    }
    *out = p;
    return BRK_OK;
}

/*
 * Use kr (borrowed) from now on, for the configuration reload. Work
 * already started may still hold the previous keyring, so the caller
 * keeps that one alive a while longer. Cannot fail.
 */
void
proxy_set_keyring(struct proxy *p, const struct keyring *kr)
{
    p->kr = kr;
}

void
proxy_free(struct proxy *p)
{
    if (p == NULL)
        return;
    proxy_oauth_free();
    proxy_records_orphan(p);
    while (p->nidle_filters > 0)
        filter_free(p->idle_filters[--p->nidle_filters]);
    if (p->expire != NULL)
        event_free(p->expire);
    cache_free(p->tokens);
    cache_free(p->services);
    cache_free(p->tenants);
    cache_free(p->ranges);
    brk_free(p);
}
