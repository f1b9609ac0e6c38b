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
 * Is s well-formed UTF-8 (RFC 3629: no overlong form, surrogate or code
 * point past U+10FFFF)? The strings jansson's json_string accepts, which
 * decided it before.
 */
static int
utf8_ok(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned char lo, hi;
    size_t more;

    while (*s != '\0') {
        if (*s < 0x80) {
            s++;
            continue;
        }
        /* the second byte's range narrows for E0, ED, F0 and F4 */
        lo = 0x80;
        hi = 0xbf;
        if (*s >= 0xc2 && *s <= 0xdf) {
            more = 1;
        } else if (*s >= 0xe0 && *s <= 0xef) {
            more = 2;
            if (*s == 0xe0)
                lo = 0xa0;
            else if (*s == 0xed)
                hi = 0x9f;
        } else if (*s >= 0xf0 && *s <= 0xf4) {
            more = 3;
            if (*s == 0xf0)
                lo = 0x90;
            else if (*s == 0xf4)
                hi = 0x8f;
        } else {
            return 0;
        }
        for (s++; more > 0; more--, s++) {
            /* the terminating NUL is below lo */
            if (*s < lo || *s > hi)
                return 0;
            lo = 0x80;
            hi = 0xbf;
        }
    }
    return 1;
}

/* A query value read as its declared type. */
struct qvalue {
    int is_int;
    long long n; /* when is_int */
};

/*
 * Read s as p's declared type into *v; 0 if it is not one. An integer
 * must be written the one way it is forwarded ("2"; not " 2", "+2", "02"
 * or "-0"), so WeCom is asked about what was checked; a string must be
 * UTF-8.
 */
static int
typed_value(const struct scope_param *p, const char *s, struct qvalue *v)
{
    const char *d = s[0] == '-' ? s + 1 : s;

    if (p->type == SCOPE_T_INTEGER) {
        if (*d == '\0' || strlen(d) > 18 ||
            strspn(d, "0123456789") != strlen(d) ||
            (d[0] == '0' && (d[1] != '\0' || d != s)))
            return 0;
        v->is_int = 1;
        v->n = strtoll(s, NULL, 10);
        return 1;
    }
    if (p->type == SCOPE_T_STRING && utf8_ok(s)) {
        v->is_int = 0;
        v->n = 0;
        return 1;
    }
    return 0;
}

/* subject_ok for a query value s read as v: a string names a member, an
 * integer a department or tag, and a list is never a query value. */
static int
query_subject_ok(const struct preq *q, enum scope_param_kind kind,
                 const char *s, const struct qvalue *v)
{
    const struct vrange *r = q->range;

    if (r == NULL)
        return 0;
    switch (kind) {
    case SCOPE_P_MEMBER:
        return !v->is_int && vrange_has_member(r, s, strlen(s));
    case SCOPE_P_DEPARTMENT:
        return v->is_int && vrange_has_department(r, (long)v->n);
    case SCOPE_P_TAG:
        return v->is_int && vrange_has_tag(r, (long)v->n);
    case SCOPE_P_MEMBER_LIST:
        return 0;
    default:
        /* customers and chats: decided on the reply (follow users, owner) */
        return 1;
    }
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
 * Builds the query passed upstream (q->upstream_qs, in q's own storage
 * while it fits) from declared parameters only. */
enum errcode
proxy_check_query(struct preq *q, char *msg, size_t msglen)
{
    struct dynbuf *qs = &q->upstream_qs;
    const struct scope_param *p;
    struct qvalue v;
    size_t i;
    char num[24];
    const char *value;
    enum brk_err err;

    dynbuf_reset(qs);
    for (i = 0; i < q->q->n; i++) {
        const char *name = q->q->params[i].name;

        value = q->q->params[i].value;
        if (strcmp(name, "access_token") == 0)
            continue;
        p = scope_endpoint_param(q->ep, name);
        if (p == NULL || query_count(q->q, name) != 1) {
            snprintf(msg, msglen, "invalid parameter: %s %s",
                     p ? "repeated" : "undeclared", name);
            return ERRCODE_INVALID_PARAMETER;
        }
        if (!typed_value(p, value, &v)) {
            snprintf(msg, msglen, "invalid parameter: %s", name);
            return ERRCODE_INVALID_PARAMETER;
        }
        if (!in_enum(p, value)) {
            snprintf(msg, msglen,
                     "invalid parameter: %s is not an allowed "
                     "value",
                     name);
            return ERRCODE_INVALID_VALUE;
        }
        if (p->kind != SCOPE_P_PLAIN &&
            !query_subject_ok(q, p->kind, value, &v)) {
            snprintf(msg, msglen,
                     "no privilege to access/modify contact/party/agent");
            return ERRCODE_OUT_OF_RANGE;
        }
        note_subject(q, p->kind);
        /* what goes upstream is the value that was checked */
        if (v.is_int) {
            snprintf(num, sizeof(num), "%lld", v.n);
            value = num;
        }
        err = qs->len > 0 ? dynbuf_add(qs, "&", 1) : BRK_OK;
        if (!err)
            err = dynbuf_add_str(qs, name);
        if (!err)
            err = dynbuf_add(qs, "=", 1);
        if (!err)
            err = proxy_pct_append(qs, value);
        if (err == BRK_ERR_NOMEM) {
            snprintf(msg, msglen, "out of memory");
            return ERRCODE_UNAVAILABLE;
        }
        if (err) {
            snprintf(msg, msglen, "invalid parameter: too long");
            return ERRCODE_INVALID_PARAMETER;
        }
    }
    for (i = 0; i < q->ep->nparams; i++)
        if (q->ep->params[i].required &&
            query_count(q->q, q->ep->params[i].name) == 0 && !q->post) {
            snprintf(msg, msglen, "invalid parameter: %s missing",
                     q->ep->params[i].name);
            return ERRCODE_INVALID_PARAMETER;
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
