/*
 * The service API's parameter checks (see proxy_int.h): every parameter
 * declared by the scope file, once, well-typed, and its subjects in the
 * range the request sees. They run no callback chain and never reply:
 * the caller refuses the request with the errcode they return.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "codec.h"
#include "dynbuf.h"
#include "proxy_int.h"
#include "query.h"
#include "scope_map.h"
#include "visible_range.h"

/* What a customer or chat subject must show in range on the reply. */
static void
note_subject(struct preq *q, enum scope_param_kind kind)
{
    if (kind == SCOPE_P_CUSTOMER)
        q->must_see = SCOPE_REC_FOLLOW_USER;
    else if (kind == SCOPE_P_CHAT)
        q->must_see = SCOPE_REC_CHAT;
}

/* Is a subject value in range? kind from the scope file. */
static int
subject_ok(const struct preq *q, enum scope_param_kind kind, const json_t *v)
{
    const struct vrange *r = q->range;
    size_t i;
    const json_t *e;

    if (r == NULL)
        return 0;
    switch (kind) {
    case SCOPE_P_MEMBER:
        return json_is_string(v) && vrange_has_member(r, json_string_value(v),
                                                      json_string_length(v));
    case SCOPE_P_DEPARTMENT:
        return json_is_integer(v) &&
               vrange_has_department(r, (long)json_integer_value(v));
    case SCOPE_P_TAG:
        return json_is_integer(v) &&
               vrange_has_tag(r, (long)json_integer_value(v));
    case SCOPE_P_MEMBER_LIST:
        if (!json_is_array(v))
            return 0;
        json_array_foreach(
            v, i, e) if (!json_is_string(e) ||
                         !vrange_has_member(r, json_string_value(e),
                                            json_string_length(e))) return 0;
        return 1;
    default:
        /* customers and chats: decided on the reply (follow users, owner) */
        return 1;
    }
}

/*
 * A query value as the JSON value its declared type says; NULL if it is
 * not one. An integer must be written the one way it is forwarded ("2";
 * not " 2", "+2", "02" or "-0"), so WeCom is asked about what was
 * checked.
 */
static json_t *
typed_value(const struct scope_param *p, const char *s)
{
    const char *d = s[0] == '-' ? s + 1 : s;
    long long n;

    if (p->type == SCOPE_T_INTEGER) {
        if (*d == '\0' || strlen(d) > 18 ||
            strspn(d, "0123456789") != strlen(d) ||
            (d[0] == '0' && (d[1] != '\0' || d != s)))
            return NULL;
        n = strtoll(s, NULL, 10);
        return json_integer(n);
    }
    if (p->type == SCOPE_T_STRING)
        return json_string(s);
    return NULL;
}

/* Is v one of p's enum values (any value when p declares none)? */
static int
in_enum(const struct scope_param *p, const char *v)
{
    size_t i;

    for (i = 0; i < p->nenums; i++)
        if (strcmp(p->enums[i], v) == 0)
            return 1;
    return p->nenums == 0;
}

/* GET: every parameter declared, once, well-typed; subjects in range.
 * Builds the query passed upstream from declared parameters only. */
enum errcode
proxy_check_query(struct preq *q, char *msg, size_t msglen)
{
    struct dynbuf qs;
    const struct scope_param *p;
    size_t i;
    json_t *v;
    char *enc, num[24] = "";

    dynbuf_init(&qs, 64 * 1024);
    for (i = 0; i < q->q->n; i++) {
        const char *name = q->q->params[i].name;

        if (strcmp(name, "access_token") == 0)
            continue;
        p = scope_endpoint_param(q->ep, name);
        if (p == NULL || query_count(q->q, name) != 1) {
            dynbuf_free(&qs);
            snprintf(msg, msglen, "invalid parameter: %s %s",
                     p ? "repeated" : "undeclared", name);
            return ERRCODE_INVALID_PARAMETER;
        }
        v = typed_value(p, q->q->params[i].value);
        if (v == NULL) {
            dynbuf_free(&qs);
            snprintf(msg, msglen, "invalid parameter: %s", name);
            return ERRCODE_INVALID_PARAMETER;
        }
        if (!in_enum(p, q->q->params[i].value)) {
            json_decref(v);
            dynbuf_free(&qs);
            snprintf(msg, msglen,
                     "invalid parameter: %s is not an allowed "
                     "value",
                     name);
            return ERRCODE_INVALID_VALUE;
        }
        if (p->kind != SCOPE_P_PLAIN && !subject_ok(q, p->kind, v)) {
            json_decref(v);
            dynbuf_free(&qs);
            snprintf(msg, msglen,
                     "no privilege to access/modify contact/party/agent");
            return ERRCODE_OUT_OF_RANGE;
        }
        note_subject(q, p->kind);
        /* what goes upstream is the value that was checked */
        if (json_is_integer(v))
            snprintf(num, sizeof(num), "%lld",
                     (long long)json_integer_value(v));
        json_decref(v);
        enc = brk_malloc(strlen(q->q->params[i].value) * 3 + 1);
        if (enc == NULL) {
            dynbuf_free(&qs);
            snprintf(msg, msglen, "out of memory");
            return ERRCODE_UNAVAILABLE;
        }
        codec_pct_encode(
            p->type == SCOPE_T_INTEGER ? num : q->q->params[i].value, enc);
        if (dynbuf_printf(&qs, "%s%s=%s", qs.len ? "&" : "", name, enc)) {
            brk_free(enc);
            snprintf(msg, msglen, "invalid parameter: too long");
            return ERRCODE_INVALID_PARAMETER;
        }
        brk_free(enc);
    }
    for (i = 0; i < q->ep->nparams; i++)
        if (q->ep->params[i].required &&
            query_count(q->q, q->ep->params[i].name) == 0 && !q->post) {
            dynbuf_free(&qs);
            snprintf(msg, msglen, "invalid parameter: %s missing",
                     q->ep->params[i].name);
            return ERRCODE_INVALID_PARAMETER;
        }
    if (dynbuf_take(&qs, &q->upstream_qs, NULL)) {
        snprintf(msg, msglen, "out of memory");
        return ERRCODE_UNAVAILABLE;
    }
    return ERRCODE_OK;
}

static int
type_matches(enum scope_type t, const json_t *v)
{
    size_t i;
    const json_t *e;

    if (!scope_type_matches(t, v))
        return 0;
    /* a parameter array is a list of strings (scopes/README.md) */
    if (t == SCOPE_T_ARRAY)
        json_array_foreach(v, i, e) if (!json_is_string(e)) return 0;
    return 1;
}

/* POST: the body's keys (one level of nesting, "a.b") declared and typed;
 * subjects in range; the body passed upstream is re-serialised from them. */
enum errcode
proxy_check_body(struct preq *q, char *msg, size_t msglen)
{
    const char *k, *k2;
    json_t *v, *v2, *out = json_object(), *sub;
    const struct scope_param *p;
    char name[160];
    size_t i;

    if (out == NULL) {
        snprintf(msg, msglen, "out of memory");
        return ERRCODE_UNAVAILABLE;
    }
    /* a POST's parameters are its body's keys: nothing else but the
     * token may come in the query */
    if (q->q->n != query_count(q->q, "access_token")) {
        json_decref(out);
        snprintf(msg, msglen, "invalid parameter: %s",
                 "a POST takes its parameters in the body");
        return ERRCODE_INVALID_PARAMETER;
    }
    json_object_foreach(q->body, k, v)
    {
        if (json_is_object(v) && scope_endpoint_param(q->ep, k) == NULL) {
            /* held by out at once, so a refusal below frees it too */
            sub = json_object();
            if (sub == NULL || json_object_set_new(out, k, sub) != 0) {
                json_decref(out);
                snprintf(msg, msglen, "out of memory");
                return ERRCODE_UNAVAILABLE;
            }
            json_object_foreach(v, k2, v2)
            {
                snprintf(name, sizeof(name), "%s.%s", k, k2);
                p = scope_endpoint_param(q->ep, name);
                if (p == NULL || !type_matches(p->type, v2))
                    goto bad;
                if (p->kind != SCOPE_P_PLAIN && !subject_ok(q, p->kind, v2))
                    goto range;
                note_subject(q, p->kind);
                json_object_set(sub, k2, v2);
            }
            continue;
        }
        snprintf(name, sizeof(name), "%s", k);
        p = scope_endpoint_param(q->ep, k);
        if (p == NULL || !type_matches(p->type, v))
            goto bad;
        if (p->kind != SCOPE_P_PLAIN && !subject_ok(q, p->kind, v))
            goto range;
        note_subject(q, p->kind);
        json_object_set(out, k, v);
    }
    /* a required key must be there, and a required list not empty: an
     * empty owner filter would list every chat of the tenant */
    for (i = 0; i < q->ep->nparams; i++) {
        const struct scope_param *rp = &q->ep->params[i];
        const char *dot = strchr(rp->name, '.');

        if (!rp->required)
            continue;
        snprintf(name, sizeof(name), "%s", rp->name);
        if (dot != NULL) {
            name[dot - rp->name] = '\0';
            v = json_object_get(json_object_get(q->body, name), dot + 1);
            snprintf(name, sizeof(name), "%s", rp->name);
        } else {
            v = json_object_get(q->body, rp->name);
        }
        if (v == NULL || (json_is_array(v) && json_array_size(v) == 0))
            goto bad;
    }
    q->upstream_body = json_dumps(out, JSON_COMPACT);
    json_decref(out);
    if (q->upstream_body == NULL) {
        snprintf(msg, msglen, "out of memory");
        return ERRCODE_UNAVAILABLE;
    }
    return ERRCODE_OK;
bad:
    json_decref(out);
    snprintf(msg, msglen, "invalid parameter: %s", name);
    return ERRCODE_INVALID_PARAMETER;
range:
    json_decref(out);
    snprintf(msg, msglen, "no privilege to access/modify contact/party/agent");
    return ERRCODE_OUT_OF_RANGE;
}
