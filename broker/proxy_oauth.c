/*
 * Member OAuth, service side (see proxy_int.h): getuserinfo and
 * getuserdetail over the codes and tickets the broker minted at the
 * member's login.
 *
 * The chain, in order:
 *   proxy_oauth_service -> datakey_load -> on_oauth_tdk
 *     -> getuserinfo:   EVAL code take -> on_code -> the reply
 *     -> getuserdetail: EVAL ticket read -> on_ticket
 *        -> filter -> proxy_reply_filtered
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "config.h"
#include "datakey.h"
#include "filter.h"
#include "httpd.h"
#include "keyring.h"
#include "keys.h"
#include "proxy_int.h"
#include "query.h"
#include "record.h"
#include "scope_map.h"
#include "scripts.h"
#include "service.h"
#include "store.h"
#include "visible_range.h"

/*---- Member OAuth, service side ----*/

/* The fields a member's consent can release, and what each needs; built
 * by whichever event loop asks first. */
static struct scope_node *detail_tree;
static pthread_mutex_t detail_lock = PTHREAD_MUTEX_INITIALIZER;

static void
node_set(struct scope_node *n, const char *name, enum scope_type t,
         const char *perm)
{
    n->name = brk_strdup(name);
    n->type = t;
    n->perm = strcmp(perm, "always") == 0  ? SCOPE_PERM_ALWAYS
              : strcmp(perm, "never") == 0 ? SCOPE_PERM_NEVER
                                           : scope_perm_id(perm);
    if (n->perm < 0)
        n->perm = SCOPE_PERM_NEVER;
}

/* Built once, in code: these paths exist whatever scopes/ declares. */
static struct scope_node *
detail_root(void)
{
    static const struct {
        const char *name, *perm;
        enum scope_type type;
    } f[] = {
        /* sorted by name, for scope_node_field */
        {"address", "contact:sensitive:address", SCOPE_T_STRING},
        {"avatar", "contact:sensitive:avatar", SCOPE_T_STRING},
        {"biz_mail", "contact:sensitive:biz_mail", SCOPE_T_STRING},
        {"corpid", "always", SCOPE_T_STRING},
        {"email", "contact:sensitive:email", SCOPE_T_STRING},
        {"errcode", "always", SCOPE_T_INTEGER},
        {"errmsg", "always", SCOPE_T_STRING},
        {"gender", "contact:sensitive:gender", SCOPE_T_STRING},
        {"mobile", "contact:sensitive:mobile", SCOPE_T_STRING},
        {"name", "never", SCOPE_T_STRING},
        {"open_userid", "contact:base:base", SCOPE_T_STRING},
        {"qr_code", "contact:sensitive:qrcode", SCOPE_T_STRING},
        {"userid", "contact:base:base", SCOPE_T_STRING},
    };
    struct scope_node *root;
    size_t i;

    pthread_mutex_lock(&detail_lock);
    root = detail_tree;
    if (root != NULL)
        goto out;
    root = brk_calloc(1, sizeof(*root));
    if (root == NULL)
        goto out;
    root->type = SCOPE_T_OBJECT;
    root->perm = SCOPE_PERM_ALWAYS;
    root->fields = brk_calloc(nitems(f), sizeof(*root->fields));
    if (root->fields == NULL) {
        brk_free(root);
        root = NULL;
        goto out;
    }
    root->nfields = nitems(f);
    for (i = 0; i < nitems(f); i++)
        node_set(&root->fields[i], f[i].name, f[i].type, f[i].perm);
    detail_tree = root;
out:
    pthread_mutex_unlock(&detail_lock);
    return root;
}

static enum brk_err
oauth_key(struct preq *q, const char *what, const char *secret, char *out)
{
    char h[65], w[120];

    service_token_hash(secret, strlen(secret), h);
    snprintf(w, sizeof(w), "%s:%s", what, h);
    return keys_tenant_sub(out, KEYS_MAX, q->p->cfg->key_prefix, q->tr.corp,
                           q->tr.suite, w);
}

/* Is the member userid (len bytes) in the range this request sees? */
static int
member_in_range(const struct preq *q, const char *userid, size_t len)
{
    return q->range != NULL && len > 0 &&
           vrange_has_member(q->range, userid, len);
}

static void
reply_json_body(struct preq *q, const char *body)
{
    proxy_count_request(q, 0);
    proxy_audit(q, 0, 0, 0);
    httpd_reply(q->r, 200, "application/json; charset=utf-8", body,
                strlen(body));
    proxy_preq_free(q);
}

static void
on_code(enum brk_err err, struct redisReply *r, void *arg)
{
    struct preq *q = arg;
    char key[KEYS_MAX], ctx[KEYS_MAX + 8], *rec = NULL, *body = NULL;
    size_t len = 0;
    json_t *out = NULL;
    struct record_oauth_code c;

    if (err) {
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
    if (r->type != REDIS_REPLY_STRING ||
        oauth_key(q, "oauth:code", query_get(q->q, "code"), key) ||
        keys_seal_ctx(ctx, sizeof(ctx), key, "rec") ||
        keyring_open(q->tdk, ctx, r->str, r->len, &rec, &len)) {
        brk_free_secret(rec, len);
        /* unknown, used, or another tenant's */
        proxy_reply_error(q, ERRCODE_INVALID_CODE, "invalid code");
        return;
    }
    err = record_oauth_code_decode(rec, len, &c);
    brk_free_secret(rec, len);
    if (err) {
        proxy_reply_unusable(q, "OAuth code", err);
        return;
    }
    /* a member outside the range this service sees: nothing of them,
     * as for any subject (a non-member has no place in any range) */
    if (c.userid[0] != '\0' &&
        !member_in_range(q, c.userid, strlen(c.userid))) {
        brk_wipe(&c, sizeof(c));
        proxy_reply_error(q, ERRCODE_OUT_OF_RANGE,
                          "no privilege to access/modify contact/party/agent");
        return;
    }
    if (c.userid[0] != '\0') {
        out = json_pack("{s:i, s:s, s:s}", "errcode", 0, "errmsg", "ok",
                        "userid", c.userid);
        if (out != NULL && c.user_ticket[0] != '\0' &&
            (json_object_set_new(out, "user_ticket",
                                 json_string(c.user_ticket)) ||
             json_object_set_new(out, "expires_in",
                                 json_integer(c.expires_in)))) {
            json_decref(out);
            out = NULL;
        }
        if (out != NULL && c.openid[0] != '\0' &&
            json_object_set_new(out, "open_userid", json_string(c.openid))) {
            json_decref(out);
            out = NULL;
        }
    } else {
        out = json_pack("{s:i, s:s, s:s}", "errcode", 0, "errmsg", "ok",
                        "openid", c.openid);
    }
    brk_wipe(&c, sizeof(c));
    body = out ? json_dumps(out, JSON_COMPACT) : NULL;
    json_decref(out);
    if (body == NULL) {
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "out of memory");
        return;
    }
    reply_json_body(q, body);
    brk_wipe(body, strlen(body));
    free(body);
}

static void
on_ticket(enum brk_err err, struct redisReply *r, void *arg)
{
    struct preq *q = arg;
    const char *ticket =
        json_string_value(json_object_get(q->body, "user_ticket"));
    char key[KEYS_MAX], ctx[KEYS_MAX + 8], *fields = NULL;
    size_t len = 0;
    struct scope_node *root = detail_root();

    if (err || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
    if (r->element[0]->integer == 0) {
        proxy_reply_error(q, ERRCODE_INVALID_TICKET, "invalid user_ticket");
        return;
    }
    if (r->element[0]->integer == 1) {
        proxy_reply_error(q, ERRCODE_TICKET_EXPIRED, "user_ticket expired");
        return;
    }
    if (r->elements != 3 || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[2]->type != REDIS_REPLY_STRING) {
        proxy_reply_unusable(q, "user_ticket", BRK_ERR_INVAL);
        return;
    }
    /* the member must be in the range this service sees, like any
     * subject */
    if (!member_in_range(q, r->element[2]->str, r->element[2]->len)) {
        proxy_reply_error(q, ERRCODE_OUT_OF_RANGE,
                          "no privilege to access/modify contact/party/agent");
        return;
    }
    if (root == NULL || oauth_key(q, "oauth:detail", ticket, key) ||
        keys_seal_ctx(ctx, sizeof(ctx), key, "fields") ||
        keyring_open(q->tdk, ctx, r->element[1]->str, r->element[1]->len,
                     &fields, &len)) {
        proxy_reply_error(q, ERRCODE_INVALID_TICKET, "invalid user_ticket");
        return;
    }
    /* filtered like any response: sensitive fields need the service's
     * member.sensitive and the tenant's contact:sensitive:* grant */
    if (proxy_filter_get(q, root, NULL) ||
        filter_feed(q->filter, fields, len) || filter_finish(q->filter)) {
        brk_free_secret(fields, len);
        proxy_reply_error(q, ERRCODE_BAD_GATEWAY, "stored details unusable");
        return;
    }
    brk_free_secret(fields, len);
    proxy_reply_filtered(q);
}

static void
on_oauth_tdk(enum brk_err err, const unsigned char *dk, void *arg)
{
    struct preq *q = arg;
    char k1[KEYS_MAX], k2[KEYS_MAX], now[24];
    const char *argv[6];
    const char *code, *ticket;

    if (err) {
        proxy_reply_error(q, ERRCODE_NOT_AUTHORIZED,
                          "authorization relation invalid");
        return;
    }
    memcpy(q->tdk, dk, KEYRING_KEY_LEN);
    if (q->oauth == 1) {
        code = query_get(q->q, "code");
        if (oauth_key(q, "oauth:code", code, k1)) {
            proxy_reply_error(q, ERRCODE_INVALID_CODE, "invalid code");
            return;
        }
        argv[0] = "EVAL";
        argv[1] = scripts_text(SCRIPT_OAUTH_CODE_TAKE);
        argv[2] = "1";
        argv[3] = k1;
        if (store_cmd_argv(q->p->st, on_code, q, 4, argv, NULL))
            proxy_reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
        return;
    }
    ticket = json_string_value(json_object_get(q->body, "user_ticket"));
    if (oauth_key(q, "oauth:ticket", ticket, k1) ||
        oauth_key(q, "oauth:detail", ticket, k2)) {
        proxy_reply_error(q, ERRCODE_INVALID_TICKET, "invalid user_ticket");
        return;
    }
    snprintf(now, sizeof(now), "%lld", brk_wall_ms() / 1000);
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_MEMBER_TICKET_READ);
    argv[2] = "2";
    argv[3] = k1;
    argv[4] = k2;
    argv[5] = now;
    if (store_cmd_argv(q->p->st, on_ticket, q, 6, argv, NULL))
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
}

/* getuserinfo / getuserdetail: codes and tickets minted by the broker at
 * the member's login, bound to the tenant (any of its services). */
void
proxy_oauth_service(struct preq *q)
{
    char key[KEYS_MAX], ctx[KEYS_MAX];
    const char *v;

    if (q->oauth == 1) {
        v = query_get(q->q, "code");
        if (query_count(q->q, "code") != 1 || q->q->n != 2 ||
            strlen(v) != SERVICE_TOKEN_LEN) {
            proxy_reply_error(q,
                              v && query_count(q->q, "code") == 1 &&
                                      q->q->n == 2
                                  ? ERRCODE_INVALID_CODE
                                  : ERRCODE_INVALID_PARAMETER,
                              "invalid code");
            return;
        }
    } else {
        v = json_string_value(json_object_get(q->body, "user_ticket"));
        if (v == NULL || json_object_size(q->body) != 1 || q->q->n != 1) {
            proxy_reply_error(q, ERRCODE_INVALID_PARAMETER,
                              "invalid parameter: user_ticket");
            return;
        }
        if (strlen(v) != SERVICE_TOKEN_LEN) {
            proxy_reply_error(q, ERRCODE_INVALID_TICKET, "invalid user_ticket");
            return;
        }
    }
    if (keys_tenant_sub(key, sizeof(key), q->p->cfg->key_prefix, q->tr.corp,
                        q->tr.suite, "dk")) {
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "key names too long");
        return;
    }
    snprintf(ctx, sizeof(ctx), "tenant:%s:%s", q->tr.suite, q->tr.corp);
    if (datakey_load(q->p->st, q->p->kr, key, ctx, 0, on_oauth_tdk, q))
        proxy_reply_error(q, ERRCODE_UNAVAILABLE, "store unavailable");
}

void
proxy_oauth_free(void)
{
    size_t i;

    /* at teardown, once no loop runs */
    if (detail_tree != NULL) {
        for (i = 0; i < detail_tree->nfields; i++)
            brk_free(detail_tree->fields[i].name);
        brk_free(detail_tree->fields);
        brk_free(detail_tree);
        detail_tree = NULL;
    }
}
