/*
 * The event filter: the callback is parsed whole (it is small and bounded),
 * checked against its declaration in one pass that also collects its
 * subjects, decided, and only then written out for the service in a second
 * pass, in WeCom's element order.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "capability.h"
#include "dynbuf.h"
#include "evfilter.h"
#include "wecom_xml.h"

static const char *const reason_names[] = {
    [EVFILTER_DELIVER] = "deliver",
    [EVFILTER_UNDECLARED] = "undeclared",
    [EVFILTER_PERMISSION] = "permission",
    [EVFILTER_CAPABILITY] = "capability",
    [EVFILTER_NARROWED] = "narrowed",
    [EVFILTER_OUT_OF_RANGE] = "out_of_range",
};

/* Elements that carry a secret: never passed on, whatever is declared. */
static const char *const secret_fields[] = {"AuthCode", "SuiteTicket",
                                            "PermanentCode"};

/* Longest field path recorded in the names ("ExtAttr[].Text.Value"). */
#define PATH_MAX_LEN 200

const char *
evfilter_reason_name(enum evfilter_reason r)
{
    if ((unsigned)r >= nitems(reason_names))
        return "unknown";
    return reason_names[r];
}

/*---- Decisions ----*/

static const struct scope_grant no_grant;

enum evfilter_reason
evfilter_decide(const struct scope_event *ev, const struct evfilter_ask *ask,
                enum grant_field *perm)
{
    enum grant_field f;

    f = grant_field(ask->tenant ? ask->tenant : &no_grant,
                    ask->service ? ask->service : &no_grant, ev->scope);
    if (perm != NULL)
        *perm = f;
    if (!grant_field_kept(f))
        return EVFILTER_PERMISSION;
    if ((ev->cap & ask->caps) != ev->cap)
        return EVFILTER_CAPABILITY;
    if (ev->whole_tenant && ask->own_range)
        return EVFILTER_NARROWED;
    return EVFILTER_DELIVER;
}

int
evfilter_field_kept(const struct scope_node *n, const struct evfilter_ask *ask,
                    enum grant_field *perm)
{
    enum grant_field f;

    f = grant_field(ask->tenant ? ask->tenant : &no_grant,
                    ask->service ? ask->service : &no_grant, n->perm);
    if (perm != NULL)
        *perm = f;
    return grant_field_kept(f) && (n->cap & ask->caps) == n->cap;
}

/*---- State ----*/

struct ef {
    const struct evfilter_ask *ask;
    struct dynbuf out;     /* the service's XML (secret) */
    struct dynbuf kept;    /* ",a,b," while building */
    struct dynbuf removed; /* the same */
    struct evfilter_subject *subj;
    size_t nsubj, capsubj;
    size_t dropped;
};

static void
ef_free(struct ef *e)
{
    size_t i;

    dynbuf_free(&e->out);
    dynbuf_free(&e->kept);
    dynbuf_free(&e->removed);
    for (i = 0; i < e->nsubj; i++)
        brk_free_secret_str(e->subj[i].id);
    brk_free(e->subj);
}

static enum brk_err refuse(const struct ef *e, enum brk_err err,
                           const char *fmt, ...) BRK_PRINTF(3, 4);

/* Say why the input is refused (into ask->info) and return err. */
static enum brk_err
refuse(const struct ef *e, enum brk_err err, const char *fmt, ...)
{
    char msg[sizeof(e->ask->info->msg)];
    va_list ap;

    if (e->ask->info != NULL) {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        brk_errinfo_set(e->ask->info, 0, -1, "%s", msg);
    }
    return err;
}

/* Letters, digits and '_', 1..64 bytes: a name that may be recorded. */
static int
plain_name(const char *s, size_t n)
{
    size_t i;

    if (n == 0 || n > 64)
        return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

/* Add a name to a ",a,b," list once. Untrusted names are recorded as "?". */
static enum brk_err
add_name(struct dynbuf *d, const char *path)
{
    char probe[PATH_MAX_LEN + 3];
    const char *p = path;
    size_t i;

    for (i = 0; p[i] != '\0'; i++)
        if (p[i] == ',')
            p = "?";
    snprintf(probe, sizeof(probe), ",%s,", p);
    if (d->len == 0 && (d->buf == NULL || d->buf[0] == '\0'))
        return dynbuf_add_str(d, probe);
    if (strstr(d->buf, probe) != NULL)
        return BRK_OK;
    return dynbuf_add_str(d, probe + 1);
}

/* "prefix.name" or "name" into buf; untrusted element names become "?". */
static void
join_path(char *buf, size_t len, const char *prefix, const char *name)
{
    const char *n = plain_name(name, strlen(name)) ? name : "?";

    snprintf(buf, len, "%s%s%s", prefix, prefix[0] ? "." : "", n);
}

/*---- Values ----*/

/* -?[0-9]{1,20}: how WeCom writes an integer. */
static int
is_integer(const char *s, size_t n)
{
    size_t i = 0;

    if (n > 0 && s[0] == '-')
        i = 1;
    if (n == i || n - i > 20)
        return 0;
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* -?[0-9]+(\.[0-9]+)?: a coordinate or a scale. */
static int
is_number(const char *s, size_t n)
{
    const char *dot = memchr(s, '.', n);

    if (n == 0 || n > 40)
        return 0;
    if (dot == NULL)
        return is_integer(s, n);
    if (!is_integer(s, (size_t)(dot - s)))
        return 0;
    return is_integer(dot + 1, n - (size_t)(dot - s) - 1) && dot[1] != '-';
}

static int
scalar_ok(enum scope_type t, const char *s, size_t n)
{
    switch (t) {
    case SCOPE_T_STRING:
        return 1;
    case SCOPE_T_INTEGER:
        return is_integer(s, n);
    case SCOPE_T_NUMBER:
        return is_number(s, n);
    default:
        return 0;
    }
}

/* The next item of a separator list at *p (advanced past it), or -1 at
 * the end. An empty text is an empty list. */
static long
next_item(const char *text, size_t len, size_t *p, char sep, size_t *start)
{
    const char *hit;
    size_t n;

    if (len == 0 || *p > len)
        return -1;
    hit = memchr(text + *p, sep, len - *p);
    n = hit ? (size_t)(hit - (text + *p)) : len - *p;
    *start = *p;
    *p += n + 1;
    return (long)n;
}

static enum brk_err
add_subject(struct ef *e, const struct scope_node *n, const char *text,
            size_t len)
{
    struct evfilter_subject *grown;
    size_t cap;

    if (e->nsubj == e->capsubj) {
        cap = e->capsubj ? e->capsubj * 2 : 4;
        grown = brk_realloc(e->subj, cap * sizeof(*grown));
        if (grown == NULL)
            return BRK_ERR_NOMEM;
        e->subj = grown;
        e->capsubj = cap;
    }
    e->subj[e->nsubj].kind = n->subject;
    e->subj[e->nsubj].field = n->name;
    e->subj[e->nsubj].checked = 0;
    e->subj[e->nsubj].id = brk_strndup(text, len);
    if (e->subj[e->nsubj].id == NULL)
        return BRK_ERR_NOMEM;
    e->nsubj++;
    return BRK_OK;
}

/* A second element of one name among x's children: the range check and
 * the service could read different copies. Arrays repeat <Item> only. */
static const char *
repeated_child(const struct wecom_xml_node *x)
{
    size_t i, k;

    for (i = 1; i < x->nchildren; i++)
        for (k = 0; k < i; k++)
            if (strcmp(x->children[i].name, x->children[k].name) == 0)
                return x->children[i].name;
    return NULL;
}

/*
 * Pass 1: x against its declaration n (name: the element's, for
 * messages). Every declared value is checked, kept or not; subjects are
 * collected. in_array: below an array's items, where no subject is.
 */
static enum brk_err
check_value(struct ef *e, const struct wecom_xml_node *x,
            const struct scope_node *n)
{
    const struct scope_node *f;
    const char *rep;
    size_t i, p = 0, start;
    long l;
    enum brk_err err;

    switch (n->type) {
    case SCOPE_T_STRING:
    case SCOPE_T_INTEGER:
    case SCOPE_T_NUMBER:
        if (x->nchildren > 0 || !scalar_ok(n->type, x->text, x->text_len))
            return refuse(e, BRK_ERR_INVAL, "<%.40s> is not %s", x->name,
                          scope_type_name(n->type));
        if (n->subject != SCOPE_REC_NONE)
            return add_subject(e, n, x->text, x->text_len);
        return BRK_OK;
    case SCOPE_T_OBJECT:
        if (x->text_len > 0)
            return refuse(e, BRK_ERR_INVAL, "<%.40s> is not an object",
                          x->name);
        rep = repeated_child(x);
        if (rep != NULL)
            return refuse(e, BRK_ERR_WX_PARSE_XML,
                          "element <%.40s> repeated in <%.40s>", rep, x->name);
        for (i = 0; i < x->nchildren; i++) {
            f = scope_node_field(n, x->children[i].name,
                                 strlen(x->children[i].name));
            if (f == NULL)
                continue;
            err = check_value(e, &x->children[i], f);
            if (err)
                return err;
        }
        return BRK_OK;
    case SCOPE_T_ARRAY:
        if (n->separator != 0) {
            if (x->nchildren > 0)
                return refuse(e, BRK_ERR_INVAL, "<%.40s> is not a list",
                              x->name);
            while ((l = next_item(x->text, x->text_len, &p, n->separator,
                                  &start)) >= 0)
                if (!scalar_ok(n->items->type, x->text + start, (size_t)l))
                    return refuse(e, BRK_ERR_INVAL,
                                  "an item of <%.40s> is not %s", x->name,
                                  scope_type_name(n->items->type));
            return BRK_OK;
        }
        if (x->text_len > 0)
            return refuse(e, BRK_ERR_INVAL, "<%.40s> is not a list of <Item>",
                          x->name);
        for (i = 0; i < x->nchildren; i++) {
            if (strcmp(x->children[i].name, "Item") != 0)
                return refuse(e, BRK_ERR_INVAL,
                              "<%.40s> in <%.40s>: a list holds <Item>",
                              x->children[i].name, x->name);
            err = check_value(e, &x->children[i], n->items);
            if (err)
                return err;
        }
        return BRK_OK;
    default:
        return refuse(e, BRK_ERR_INVAL, "<%.40s>: no such type", x->name);
    }
}

/* Is an item of a record list in range? 1, 0, or an error. */
static enum brk_err
item_in_range(struct ef *e, enum scope_record kind, const char *id, size_t len,
              int *in)
{
    char buf[256];
    int r;

    /* an id longer than any WeCom id is in no range */
    if (len >= sizeof(buf) || e->ask->in_range == NULL) {
        *in = 0;
        return BRK_OK;
    }
    memcpy(buf, id, len);
    buf[len] = '\0';
    r = e->ask->in_range(e->ask->arg, kind, buf);
    brk_wipe(buf, len);
    if (r < 0)
        return refuse(e, BRK_ERR_STORE, "the range cannot tell");
    *in = r > 0;
    return BRK_OK;
}

static enum brk_err emit_children(struct ef *e, const struct wecom_xml_node *x,
                                  const struct scope_node *n,
                                  const char *prefix);

/* Pass 2: one checked value of a kept element as the service gets it. */
static enum brk_err
emit_value(struct ef *e, const char *tag, const struct wecom_xml_node *x,
           const struct scope_node *n, const char *path)
{
    struct dynbuf list;
    char sub[PATH_MAX_LEN];
    size_t i, p = 0, start, nitem = 0;
    long l;
    int in;
    enum brk_err err;

    err = dynbuf_printf(&e->out, "<%s>", tag);
    if (err)
        return err;
    switch (n->type) {
    case SCOPE_T_STRING:
        err = wecom_xml_add_cdata(&e->out, x->text);
        break;
    case SCOPE_T_INTEGER:
    case SCOPE_T_NUMBER:
        err = dynbuf_add(&e->out, x->text, x->text_len);
        break;
    case SCOPE_T_OBJECT:
        err = emit_children(e, x, n, path);
        break;
    case SCOPE_T_ARRAY:
        snprintf(sub, sizeof(sub), "%s[]", path);
        if (n->separator == 0) {
            for (i = 0; err == BRK_OK && i < x->nchildren; i++) {
                if (n->items->record != SCOPE_REC_NONE) {
                    err =
                        item_in_range(e, n->items->record, x->children[i].text,
                                      x->children[i].text_len, &in);
                    if (err == BRK_OK && !in) {
                        e->dropped++;
                        continue;
                    }
                }
                if (err == BRK_OK)
                    err = emit_value(e, "Item", &x->children[i], n->items, sub);
            }
            break;
        }
        /* the list is written again from the items that stay */
        dynbuf_init_secret(&list, EVFILTER_MAX_BYTES);
        while (err == BRK_OK && (l = next_item(x->text, x->text_len, &p,
                                               n->separator, &start)) >= 0) {
            in = 1;
            if (n->items->record != SCOPE_REC_NONE)
                err = item_in_range(e, n->items->record, x->text + start,
                                    (size_t)l, &in);
            if (err == BRK_OK && !in)
                e->dropped++;
            if (err == BRK_OK && in && nitem++ > 0)
                err = dynbuf_add(&list, &n->separator, 1);
            if (err == BRK_OK && in)
                err = dynbuf_add(&list, x->text + start, (size_t)l);
        }
        if (err == BRK_OK)
            err = wecom_xml_add_cdata(&e->out, list.buf ? list.buf : "");
        dynbuf_free(&list);
        break;
    default:
        err = BRK_ERR_INVAL;
        break;
    }
    if (err == BRK_OK)
        err = dynbuf_printf(&e->out, "</%s>", tag);
    return err;
}

/* The children of an object element the service may see, in order. */
static enum brk_err
emit_children(struct ef *e, const struct wecom_xml_node *x,
              const struct scope_node *n, const char *prefix)
{
    const struct wecom_xml_node *c;
    const struct scope_node *f;
    char path[PATH_MAX_LEN];
    size_t i;
    enum brk_err err;

    for (i = 0; i < x->nchildren; i++) {
        c = &x->children[i];
        join_path(path, sizeof(path), prefix, c->name);
        f = scope_node_field(n, c->name, strlen(c->name));
        if (f == NULL || !evfilter_field_kept(f, e->ask, NULL)) {
            err = add_name(&e->removed, path);
        } else {
            err = add_name(&e->kept, path);
            if (err == BRK_OK)
                err = emit_value(e, c->name, c, f, path);
        }
        if (err)
            return err;
    }
    return BRK_OK;
}

static int
is_secret(const char *name)
{
    size_t i;

    for (i = 0; i < nitems(secret_fields); i++)
        if (strcmp(secret_fields[i], name) == 0)
            return 1;
    return 0;
}

/* The corp of a command event, when WeCom's event has none. */
static enum brk_err
emit_corp(struct ef *e)
{
    enum brk_err err;

    err = dynbuf_add_str(&e->out, "<AuthCorpId>");
    if (err == BRK_OK)
        err = wecom_xml_add_cdata(&e->out, e->ask->corpid);
    if (err == BRK_OK)
        err = dynbuf_add_str(&e->out, "</AuthCorpId>");
    if (err == BRK_OK)
        err = add_name(&e->kept, "AuthCorpId");
    return err;
}

/* Pass 2 at the root: <xml>, the kept elements, AuthCorpId when added. */
static enum brk_err
emit_root(struct ef *e, const struct wecom_xml_node *root,
          const struct scope_event *ev)
{
    const struct wecom_xml_node *c;
    const struct scope_node *f;
    int add_corp = ev->callback == SCOPE_CB_COMMAND &&
                   wecom_xml_child(root, "AuthCorpId") == NULL;
    int after_suite = wecom_xml_child(root, "SuiteId") != NULL;
    size_t i;
    enum brk_err err;

    err = dynbuf_add_str(&e->out, "<xml>");
    if (err == BRK_OK && add_corp && !after_suite)
        err = emit_corp(e);
    for (i = 0; err == BRK_OK && i < root->nchildren; i++) {
        c = &root->children[i];
        f = scope_node_field(&ev->root, c->name, strlen(c->name));
        if (f == NULL || is_secret(c->name) ||
            !evfilter_field_kept(f, e->ask, NULL)) {
            err =
                add_name(&e->removed,
                         plain_name(c->name, strlen(c->name)) ? c->name : "?");
            continue;
        }
        err = add_name(&e->kept, c->name);
        if (err == BRK_OK)
            err = emit_value(e, c->name, c, f, c->name);
        if (err == BRK_OK && add_corp && strcmp(c->name, "SuiteId") == 0)
            err = emit_corp(e);
    }
    if (err == BRK_OK)
        err = dynbuf_add_str(&e->out, "</xml>");
    return err;
}

/*---- The event ----*/

/* name = A or A/B from the root's elements, when both are plain names. */
static void
event_name(const struct wecom_xml *doc, enum scope_callback cb, char *name,
           size_t len)
{
    const char *a, *b = NULL;

    name[0] = '\0';
    if (cb == SCOPE_CB_COMMAND) {
        a = wecom_xml_get(doc, "InfoType");
        b = wecom_xml_get(doc, "ChangeType");
    } else {
        a = wecom_xml_get(doc, "MsgType");
        if (a != NULL && strcmp(a, "event") == 0)
            b = wecom_xml_get(doc, "Event");
    }
    if (a == NULL || !plain_name(a, strlen(a)) ||
        (b != NULL && !plain_name(b, strlen(b))))
        return;
    snprintf(name, len, "%s%s%s", a, b ? "/" : "", b ? b : "");
}

/* The corp the event names agrees with the tenant's. */
static enum brk_err
check_corp(struct ef *e, const struct wecom_xml *doc, enum scope_callback cb)
{
    const char *named = wecom_xml_get(
        doc, cb == SCOPE_CB_COMMAND ? "AuthCorpId" : "ToUserName");
    const char *corp = e->ask->corpid;

    if (named != NULL && corp != NULL && strcmp(named, corp) != 0)
        return refuse(e, BRK_ERR_INVAL, "the event names another corp");
    if (named == NULL && cb == SCOPE_CB_COMMAND &&
        (corp == NULL || !plain_name(corp, strlen(corp))))
        return refuse(e, BRK_ERR_INVAL, "the event names no corp");
    return BRK_OK;
}

/* Ask the range about each subject; the first one outside refuses. */
static enum brk_err
check_subjects(struct ef *e, enum evfilter_reason *why)
{
    size_t i;
    int in;
    enum brk_err err;

    for (i = 0; i < e->nsubj; i++) {
        /* a chat's owner is checked for services with their own range;
         * WeCom sends the tenant only chats of owners in its range */
        if (e->subj[i].kind == SCOPE_REC_CHAT && !e->ask->own_range)
            continue;
        e->subj[i].checked = 1;
        err = item_in_range(e, e->subj[i].kind, e->subj[i].id,
                            strlen(e->subj[i].id), &in);
        if (err)
            return err;
        if (!in) {
            *why = EVFILTER_OUT_OF_RANGE;
            return BRK_OK;
        }
    }
    return BRK_OK;
}

/* ",a,b," into an owned "a,b" ("" for none). */
static enum brk_err
take_names(struct dynbuf *d, char **out)
{
    const char *s = d->buf ? d->buf : "";
    size_t n = strlen(s);

    if (n >= 2)
        *out = brk_strndup(s + 1, n - 2);
    else
        *out = brk_strdup("");
    return *out ? BRK_OK : BRK_ERR_NOMEM;
}

enum brk_err
evfilter_apply(const struct scope_map *m, const char *xml, size_t len,
               const struct evfilter_ask *ask, struct evfilter_result *out)
{
    static const struct wecom_xml_limits lim = {
        EVFILTER_MAX_BYTES, EVFILTER_MAX_ELEMENTS, EVFILTER_MAX_DEPTH,
        WECOM_XML_DEFAULT_MAX_TEXT};
    struct brk_errinfo pinfo = {"", 0, -1};
    struct evfilter_result r;
    struct wecom_xml *doc = NULL;
    const struct wecom_xml_node *root;
    const struct scope_event *ev;
    struct ef e;
    const char *rep;
    enum brk_err err;

    assert(ask != NULL && out != NULL);
    memset(&e, 0, sizeof(e));
    memset(&r, 0, sizeof(r));
    e.ask = ask;
    dynbuf_init_secret(&e.out, 4 * (size_t)EVFILTER_MAX_BYTES);
    dynbuf_init(&e.kept, EVFILTER_MAX_BYTES);
    dynbuf_init(&e.removed, EVFILTER_MAX_BYTES);
    if (xml == NULL && len > 0) {
        err = refuse(&e, BRK_ERR_INVAL, "no input");
        goto out;
    }
    err = wecom_xml_parse(xml, len, &lim, &doc, &pinfo);
    if (err) {
        if (ask->info != NULL)
            *ask->info = pinfo;
        goto out;
    }
    root = wecom_xml_root(doc);
    event_name(doc, ask->callback, r.name, sizeof(r.name));
    r.welcome_code = wecom_xml_child(root, "WelcomeCode") != NULL;
    ev = r.name[0] ? scope_events_find(m, ask->callback, r.name) : NULL;
    if (ev == NULL) {
        r.reason = EVFILTER_UNDECLARED;
        r.perm = GRANT_FIELD_NEVER;
        goto done;
    }
    r.event = ev;
    err = check_corp(&e, doc, ev->callback);
    if (err)
        goto out;
    /* the parser refuses repeats only among <xml>'s children */
    rep = repeated_child(root);
    if (rep != NULL) {
        err = refuse(&e, BRK_ERR_WX_PARSE_XML, "element <%.40s> repeated", rep);
        goto out;
    }
    err = check_value(&e, root, &ev->root);
    if (err)
        goto out;
    r.reason = evfilter_decide(ev, ask, &r.perm);
    if (r.reason == EVFILTER_DELIVER) {
        err = check_subjects(&e, &r.reason);
        if (err)
            goto out;
    }
    if (r.reason == EVFILTER_DELIVER) {
        err = emit_root(&e, root, ev);
        if (err == BRK_OK)
            err = take_names(&e.kept, &r.kept);
        if (err == BRK_OK)
            err = take_names(&e.removed, &r.removed);
        if (err == BRK_OK)
            err = dynbuf_take(&e.out, &r.xml, &r.xml_len);
        if (err)
            goto out;
        r.dropped = e.dropped;
    }
done:
    r.subjects = e.subj;
    r.nsubjects = e.nsubj;
    e.subj = NULL;
    e.nsubj = 0;
    *out = r;
    memset(&r, 0, sizeof(r));
    err = BRK_OK;
out:
    evfilter_result_free(&r);
    wecom_xml_free(doc);
    ef_free(&e);
    return err;
}

void
evfilter_result_free(struct evfilter_result *r)
{
    size_t i;

    if (r == NULL)
        return;
    if (r->xml != NULL)
        brk_free_secret(r->xml, r->xml_len);
    brk_free(r->kept);
    brk_free(r->removed);
    for (i = 0; i < r->nsubjects; i++)
        brk_free_secret_str(r->subjects[i].id);
    brk_free(r->subjects);
    memset(r, 0, sizeof(*r));
}
