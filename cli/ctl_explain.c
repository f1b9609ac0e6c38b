/*
 * brokerctl explain CORPID SERVICE PATH: for one endpoint, every declared
 * response field, whether the service receives it from that tenant, and
 * why. The records are read through the broker's decoders (record.h) and
 * every decision is the grant's (grant.h), the one the service API asks:
 * effective grant = the tenant's unexpired permissions ∩ the service's
 * scopes; "always" fields pass, "never" fields are removed whatever the
 * grant, a removed object or array takes its children with it, records
 * outside the visible range are dropped, undeclared fields are removed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "capability.h"
#include "errcodes.h"
#include "evfilter.h"
#include "grant.h"
#include "keys.h"
#include "record.h"
#include "scope_events.h"
#include "scope_map.h"
#include "service.h"

#include "ctl.h"

#define PATH_CAP 1024

struct explain {
    struct ctl *c;
    const struct scope_grant *tenant;  /* unexpired permissions */
    const struct scope_grant *service; /* borrowed from the records */
    struct scope_grant none;           /* a tenant with no record */
    long long expires[SCOPE_PERM_MAX]; /* of granted ones; 0 never */
    long long expired[SCOPE_PERM_MAX]; /* when a lapsed one ended */
    const char *svc_scopes;
    long refused; /* errcode the request gets first, or 0 */
    char refusal[256];
    /* an event: the filter's ask, and the reason it is not delivered */
    const struct evfilter_ask *ask;
    enum evfilter_reason ev_why;
    json_t *rows; /* [{"field","type","kept","reason",...}] */
    size_t kept, total;
};

/*---- Reasons ----*/

static void
perm_reason(const struct explain *x, int perm, int *kept, char *buf, size_t len)
{
    const char *name = scope_perm_name(perm);
    enum grant_field f = grant_field(x->tenant, x->service, perm);
    char when[48], tpart[160] = "", spart[200] = "";

    *kept = grant_field_kept(f);
    if (f == GRANT_FIELD_ALWAYS) {
        snprintf(buf, len, "always kept (WeCom's envelope and structure)");
        return;
    }
    if (f == GRANT_FIELD_NEVER) {
        snprintf(buf, len, "never returned: removed whatever the grant");
        return;
    }
    if (f == GRANT_FIELD_KEPT) {
        if (x->expires[perm] != 0) {
            ctl_utc(x->expires[perm], when, sizeof(when));
            snprintf(buf, len,
                     "granted by the tenant (%s, until %s) and allowed for "
                     "the service",
                     name, when);
        } else {
            snprintf(buf, len,
                     "granted by the tenant (%s) and allowed for the service",
                     name);
        }
        return;
    }
    if (f != GRANT_FIELD_SERVICE_LACKS && x->expired[perm] != 0) {
        ctl_utc(x->expired[perm], when, sizeof(when));
        snprintf(tpart, sizeof(tpart),
                 "not granted by the tenant (%s expired %s)", name, when);
    } else if (f != GRANT_FIELD_SERVICE_LACKS) {
        snprintf(tpart, sizeof(tpart), "not granted by the tenant (%s)", name);
    }
    if (f != GRANT_FIELD_TENANT_LACKS)
        snprintf(spart, sizeof(spart),
                 "not allowed for the service (%s is not in its scopes: %s)",
                 name, x->svc_scopes);
    snprintf(buf, len, "%s%s%s", tpart, tpart[0] && spart[0] ? "; " : "",
             spart);
}

/* "; outside the visible range ..." for a record node, into buf. */
static void
record_note(const struct scope_node *n, int items, char *buf, size_t len,
            json_t *row)
{
    const char *kind = scope_record_name(n->record);

    buf[0] = '\0';
    if (n->record == SCOPE_REC_NONE || kind == NULL)
        return;
    if (n->record_id != NULL)
        snprintf(buf, len,
                 "; %s %s record%s, identified by %s: out of range ones "
                 "are removed",
                 items ? "each element is a" : "it is a", kind,
                 n->record == SCOPE_REC_CUSTOMER
                     ? " (in range when any follow user is)"
                     : "",
                 n->record_id);
    else
        snprintf(buf, len, "; %s %s id: out of range ones are removed",
                 items ? "each element is a" : "it is a", kind);
    json_object_set_new(
        row, "record",
        json_pack("{s:s, s:s?}", "kind", kind, "id", n->record_id));
}

/* What an event field adds to its permission's reason: the capability
 * it needs (the filter's own test), that it names the event's subject, or
 * that WeCom writes the list as one text. */
static void
event_note(const struct explain *x, const struct scope_node *n, int *kept,
           char *buf, size_t len)
{
    char cap[CAPABILITY_LIST_MAX];
    size_t o = strlen(buf);

    if (n->cap != 0 && o < len) {
        capability_format(n->cap, cap, sizeof(cap));
        if (*kept && !evfilter_field_kept(n, x->ask, NULL)) {
            *kept = 0;
            snprintf(buf, len,
                     "removed: the service does not hold the capability %s "
                     "(the permission alone is not enough)",
                     cap);
        } else {
            snprintf(buf + o, len - o, "; needs the capability %s", cap);
        }
        o = strlen(buf);
    }
    if (n->subject != SCOPE_REC_NONE && o < len)
        snprintf(buf + o, len - o,
                 "; names the event's %s: delivered only when it is in the "
                 "service's range%s",
                 scope_record_name(n->subject),
                 n->subject == SCOPE_REC_CHAT
                     ? " (checked for services with a range of their own)"
                     : "");
    else if (n->separator != 0 && o < len)
        snprintf(buf + o, len - o,
                 "; WeCom writes it as one text, \"%c\" "
                 "between items",
                 n->separator);
}

static void
add_row(struct explain *x, const char *path, const struct scope_node *n,
        int parent_kept, const char *parent, int *kept_out)
{
    char reason[768], note[256] = "", full[1100];
    const struct scope_node *rec = NULL;
    json_t *row = json_object();
    int kept = 0, items = 0, kept_shown;

    if (!parent_kept) {
        snprintf(reason, sizeof(reason), "removed with %s", parent);
    } else {
        perm_reason(x, n->perm, &kept, reason, sizeof(reason));
        if (x->ask != NULL)
            event_note(x, n, &kept, reason, sizeof(reason));
    }
    if (n->type == SCOPE_T_OBJECT && n->record != SCOPE_REC_NONE)
        rec = n;
    else if (n->type == SCOPE_T_ARRAY && n->items != NULL &&
             n->items->record != SCOPE_REC_NONE) {
        rec = n->items;
        items = 1;
    }
    if (rec != NULL)
        record_note(rec, items, note, sizeof(note), row);
    if (x->ask != NULL && x->ev_why != EVFILTER_DELIVER && kept)
        snprintf(full, sizeof(full), "event not delivered (%s); else %s%s",
                 evfilter_reason_name(x->ev_why), reason, note);
    else if (x->refused && kept)
        snprintf(full, sizeof(full), "request refused first (%ld); else %s%s",
                 x->refused, reason, note);
    else
        snprintf(full, sizeof(full), "%s%s", reason, kept ? note : "");
    x->total++;
    if (x->ask != NULL && x->ev_why != EVFILTER_DELIVER)
        kept_shown = 0;
    else
        kept_shown = kept && !x->refused;
    x->kept += kept_shown;
    json_object_set_new(row, "field", json_string(path));
    json_object_set_new(row, "type", json_string(scope_type_name(n->type)));
    json_object_set_new(row, "kept", json_boolean(kept_shown));
    json_object_set_new(row, "reason", json_string(full));
    json_array_append_new(x->rows, row);
    *kept_out = kept;
}

/* Every named child of obj under prefix ("" at the root); parent names
 * the removed ancestor when parent_kept is 0. */
static void
walk(struct explain *x, const struct scope_node *obj, const char *prefix,
     int parent_kept, const char *parent)
{
    char path[PATH_CAP], sub[PATH_CAP];
    const struct scope_node *ch, *inner;
    size_t i, l;
    int kept;

    for (i = 0; i < obj->nfields; i++) {
        ch = &obj->fields[i];
        if (snprintf(path, sizeof(path), "%s%s%s", prefix, prefix[0] ? "." : "",
                     ch->name) >= (int)sizeof(path))
            continue;
        add_row(x, path, ch, parent_kept, parent, &kept);
        /* the elements of an array (of arrays) of objects: "a[].b" */
        memcpy(sub, path, strlen(path) + 1);
        inner = ch;
        while (inner->type == SCOPE_T_ARRAY && inner->items != NULL &&
               (l = strlen(sub)) + 3 <= sizeof(sub)) {
            inner = inner->items;
            memcpy(sub + l, "[]", 3);
        }
        if (inner->type == SCOPE_T_OBJECT)
            walk(x, inner, sub, parent_kept && kept,
                 parent_kept ? path : parent);
    }
}

/*---- Inputs ----*/

/* The tenant's permissions [{"name","expires_at"}] into list, and when
 * each one expires or expired into x, for the reasons shown: which ones
 * count is the decoded record's (record_tenant_decode). */
static void
tenant_expiry(struct explain *x, const char *perms, json_t *list)
{
    json_error_t jerr;
    json_t *arr = json_loads(perms, 0, &jerr), *v;
    long long now = (long long)time(NULL);
    size_t i;
    int id;

    json_array_foreach(arr, i, v)
    {
        long long exp = json_integer_value(json_object_get(v, "expires_at"));
        const char *name = json_string_value(json_object_get(v, "name"));

        if (name == NULL)
            continue;
        json_array_append(list, v);
        id = scope_perm_id(name);
        if (id <= SCOPE_PERM_NEVER)
            continue;
        if (exp != 0 && exp <= now)
            x->expired[id] = exp;
        else
            x->expires[id] = exp;
    }
    json_decref(arr);
}

/* The first refusal the broker would answer, as the grant decides it. */
static void
refusal(struct explain *x, const struct record_service *svc,
        const struct record_tenant *ten, const char *suite, const char *corp,
        int need, const char *what, unsigned write_cap)
{
    struct grant_ask a = {svc, -1, suite, corp, ten, need};
    struct grant_verdict v;
    int tn, sv;

    grant_decide(&a, &v);
    x->refused = errcodes_code(v.code);
    /* a write's capability is checked once the tenant is known, before
     * its permission (the service API's order) */
    if (write_cap != 0 &&
        (v.why == GRANT_ALLOWED || v.why >= GRANT_TENANT_LACKS) &&
        (svc->caps & write_cap) == 0) {
        x->refused = errcodes_code(ERRCODE_API_FORBIDDEN);
        snprintf(x->refusal, sizeof(x->refusal),
                 "the write needs the capability %s, which ops did not "
                 "grant the service",
                 capability_name(write_cap));
        return;
    }
    tn = v.why != GRANT_TENANT_LACKS && v.why != GRANT_BOTH_LACK;
    sv = v.why != GRANT_SERVICE_LACKS && v.why != GRANT_BOTH_LACK;
    switch (v.why) {
    case GRANT_ALLOWED:
        break;
    case GRANT_NO_SERVICE:
    case GRANT_REVOKED:
        snprintf(x->refusal, sizeof(x->refusal),
                 "the service is revoked: its tokens are refused");
        break;
    case GRANT_OTHER_SUITE:
        snprintf(x->refusal, sizeof(x->refusal),
                 "the service is limited to suite %s; %s is a tenant of %s",
                 svc->suite, corp, suite);
        break;
    case GRANT_NO_TENANT:
        snprintf(x->refusal, sizeof(x->refusal), "%s is not a tenant of %s",
                 corp, suite);
        break;
    case GRANT_INACTIVE:
        snprintf(x->refusal, sizeof(x->refusal), "the tenant is %s",
                 ten->status);
        break;
    case GRANT_CORP:
        snprintf(x->refusal, sizeof(x->refusal),
                 "%s is not among the service's --corps", corp);
        break;
    default:
        snprintf(
            x->refusal, sizeof(x->refusal), "the %s needs %s, which is %s%s%s",
            what, scope_perm_name(need), tn ? "" : "not granted by the tenant",
            !tn && !sv ? " and " : "", sv ? "" : "not allowed for the service");
        break;
    }
}

/* "/cgi-bin/user/get" from "/cgi-bin/user/get?x", "user/get" or
 * "cgi-bin/user/get". */
static void
normal_path(const char *in, char *out, size_t len)
{
    size_t n = strcspn(in, "?#");

    while (n > 0 && in[0] == '/') {
        in++;
        n--;
    }
    if (n >= 8 && strncmp(in, "cgi-bin/", 8) == 0)
        snprintf(out, len, "/%.*s", (int)n, in);
    else
        snprintf(out, len, "/cgi-bin/%.*s", (int)n, in);
}

/*---- Output ----*/

/* "departments 2,5; members u1; tags 1" from WeCom's privilege object
 * (allow_* and extra_* together). */
static void
range_text(const char *privilege, char *buf, size_t len)
{
    static const char *const names[] = {"departments", "members", "tags"};
    static const char *const keys[][2] = {{"allow_party", "extra_party"},
                                          {"allow_user", "extra_user"},
                                          {"allow_tag", "extra_tag"}};
    json_error_t jerr;
    json_t *p = json_loads(privilege, 0, &jerr), *v;
    size_t i, k, j, o = 0, n;
    int w;

    buf[0] = '\0';
    for (i = 0; i < 3 && o < len; i++) {
        w = snprintf(buf + o, len - o, "%s%s ", i ? "; " : "", names[i]);
        o += w > 0 ? (size_t)w : 0;
        n = 0;
        for (k = 0; k < 2; k++)
            json_array_foreach(json_object_get(p, keys[i][k]), j, v)
            {
                if (o >= len)
                    break;
                if (json_is_integer(v))
                    w = snprintf(buf + o, len - o, "%s%lld", n ? "," : "",
                                 (long long)json_integer_value(v));
                else
                    w = snprintf(buf + o, len - o, "%s%s", n ? "," : "",
                                 json_string_value(v) ? json_string_value(v)
                                                      : "?");
                o += w > 0 ? (size_t)w : 0;
                n++;
            }
        if (n == 0 && o < len) {
            w = snprintf(buf + o, len - o, "none");
            o += w > 0 ? (size_t)w : 0;
        }
    }
    json_decref(p);
}

/* The lines between the title and the result: who asks, of whom. */
static void
print_parties(const struct explain *x, const char *corp, const char *suite,
              const json_t *ten, const char *svc_name, const json_t *perms,
              const struct record_parties *parties)
{
    char when[48], range[512];
    const json_t *p;
    size_t i;

    printf("tenant:   %s (", corp);
    ctl_sanitize(stdout, ctl_str_of(ten, "corp_name", ""));
    printf(") of suite %s, %s\n", suite,
           ctl_str_of(ten, "status", "installing"));
    printf("grants:   ");
    if (json_array_size(perms) == 0)
        printf("nothing");
    json_array_foreach(perms, i, p)
    {
        long long exp = json_integer_value(json_object_get(p, "expires_at"));

        ctl_utc(exp, when, sizeof(when));
        printf("%s%s (%s%s)", i ? ", " : "",
               json_string_value(json_object_get(p, "name")),
               exp == 0
                   ? "never expires"
                   : (exp <= (long long)time(NULL) ? "expired " : "until "),
               exp == 0 ? "" : when);
    }
    printf("\nservice:  %s, scopes %s\n", svc_name, x->svc_scopes);
    range_text(ctl_str_of(ten, "privilege", "{}"), range, sizeof(range));
    printf("range:    ");
    ctl_sanitize(stdout, range);
    printf("\n");
    if (parties != NULL) {
        printf("          narrowed by the service to the departments [");
        for (i = 0; i < parties->n; i++)
            printf("%s%ld", i ? "," : "", parties->ids[i]);
        printf("] and their subdepartments\n");
    }
}

static void
print_header(const struct explain *x, const struct scope_endpoint *e,
             const char *corp, const char *suite, const json_t *ten,
             const char *svc_name, const json_t *perms,
             const struct record_parties *parties)
{
    char caps[CAPABILITY_LIST_MAX];

    printf("%s %s   scope %s   (%s)\n", e->method, e->path,
           scope_perm_name(e->scope), e->file);
    print_parties(x, corp, suite, ten, svc_name, perms, parties);
    if (e->multipart)
        printf("write:    needs any of the capabilities %s; the body is one "
               "multipart part named media within WeCom's limits for the "
               "type (no part, another name or a second part 40035; "
               "malformed, wrong type, too large 40058); the broker builds "
               "the body WeCom gets\n",
               capability_format(e->capability, caps, sizeof(caps)));
    else if (e->write)
        printf("write:    needs the capability %s; body keys are checked "
               "(undeclared or repeated 40035, bad value 40058) and only "
               "declared ones are forwarded (rows body:...)\n",
               capability_format(e->capability, caps, sizeof(caps)));
    if (x->refused)
        printf("result:   refused with errcode %ld before WeCom is called: "
               "%s\n\n",
               x->refused, x->refusal);
    else
        printf("result:   served; %zu of %zu declared fields can reach the "
               "service\n\n",
               x->kept, x->total);
}

static void
print_event_header(const struct explain *x, const struct scope_event *ev,
                   const char *corp, const char *suite, const json_t *ten,
                   const char *svc_name, const json_t *perms,
                   const struct record_parties *parties)
{
    char cap[CAPABILITY_LIST_MAX], held[CAPABILITY_LIST_MAX];

    capability_format(ev->cap, cap, sizeof(cap));
    capability_format(x->ask->caps, held, sizeof(held));
    printf("event:%s (%s callback)   scope %s   capability %s   (%s)\n",
           ev->name, scope_callback_name(ev->callback),
           scope_perm_name(ev->scope), cap[0] ? cap : "none", ev->file);
    print_parties(x, corp, suite, ten, svc_name, perms, parties);
    printf("          capabilities %s\n", held[0] ? held : "none");
    if (x->ev_why != EVFILTER_DELIVER)
        printf("result:   not delivered (%s): %s\n\n",
               evfilter_reason_name(x->ev_why), x->refusal);
    else
        printf("result:   delivered %s; %zu of %zu declared fields reach the "
               "service\n\n",
               ev->whole_tenant ? "(a whole-tenant event)"
                                : "when its subject is in the service's range",
               x->kept, x->total);
}

/*
 * The event-level decision for the service: the grant's refusals first
 * (service, suite, tenant, corp, scope), then the filter's own
 * (evfilter_decide: capability, whole-tenant events). Fills *ask for the
 * field rows; x->ev_why and x->refusal say why it is not delivered.
 */
static void
explain_event(struct explain *x, const struct record_service *rs,
              const struct record_tenant *rt, const char *suite,
              const char *corp, const struct scope_event *ev,
              const struct record_parties *parties, struct evfilter_ask *ask)
{
    char cap[CAPABILITY_LIST_MAX];

    memset(ask, 0, sizeof(*ask));
    ask->callback = ev->callback;
    ask->corpid = corp;
    ask->tenant = x->tenant;
    ask->service = x->service;
    ask->caps = rs->caps;
    ask->own_range = parties != NULL;
    x->ask = ask;
    refusal(x, rs, rt, suite, corp, ev->scope, "event", 0);
    x->ev_why = evfilter_decide(ev, ask, NULL);
    if (x->refused && x->ev_why == EVFILTER_DELIVER)
        x->ev_why = EVFILTER_PERMISSION;
    x->refused = 0;
    if (x->ev_why == EVFILTER_CAPABILITY) {
        capability_format(ev->cap, cap, sizeof(cap));
        snprintf(x->refusal, sizeof(x->refusal),
                 "the event needs the capability %s, which ops did not give "
                 "the service",
                 cap);
    } else if (x->ev_why == EVFILTER_NARROWED) {
        snprintf(x->refusal, sizeof(x->refusal),
                 "the event concerns the whole tenant and the service has a "
                 "range of its own (--parties)");
    }
}

static void
print_rows(const struct explain *x)
{
    static const char *const heads[] = {"FIELD", "TYPE", "KEPT", "WHY"};
    struct ctl_table *t = ctl_table_new(4, heads);
    const char *row[4];
    const json_t *r;
    size_t i;

    json_array_foreach(x->rows, i, r)
    {
        row[0] = ctl_str_of(r, "field", "");
        row[1] = ctl_str_of(r, "type", "");
        row[2] = json_is_true(json_object_get(r, "kept")) ? "yes" : "no";
        row[3] = ctl_str_of(r, "reason", "");
        ctl_table_add(t, row);
    }
    ctl_table_print(t, stdout);
    ctl_table_free(t);
}

/* One row per declared body key of a write, at any depth: what the
 * broker checks before WeCom is called, and that it is forwarded. */
static void
body_walk(struct explain *x, const struct scope_body *b, const char *prefix)
{
    char field[PATH_CAP], why[400];
    const struct scope_body *f, *leaf;
    size_t i;
    int o;

    for (i = 0; i < b->nfields; i++) {
        f = &b->fields[i];
        snprintf(field, sizeof(field), "body:%s%s", prefix, f->name);
        leaf = f->type == SCOPE_T_ARRAY ? f->items : f;
        o = snprintf(why, sizeof(why), "forwarded%s",
                     f->required ? "; required" : "");
        if (f->max_len && o > 0 && (size_t)o < sizeof(why))
            o += snprintf(why + o, sizeof(why) - (size_t)o,
                          "; at most %ld characters", f->max_len);
        if (f->max_items && o > 0 && (size_t)o < sizeof(why))
            o += snprintf(why + o, sizeof(why) - (size_t)o,
                          "; at most %ld items", f->max_items);
        if (leaf->nenum && o > 0 && (size_t)o < sizeof(why))
            o += snprintf(why + o, sizeof(why) - (size_t)o,
                          "; %zu allowed "
                          "values",
                          leaf->nenum);
        if (leaf->subject != SCOPE_S_NONE && o > 0 && (size_t)o < sizeof(why))
            snprintf(why + o, sizeof(why) - (size_t)o, "; names a %s: %s",
                     scope_subject_name(leaf->subject),
                     leaf->subject == SCOPE_S_CORP_TAG ||
                             leaf->subject == SCOPE_S_CONTACT_WAY
                         ? "only the service that created it (48002)"
                     : leaf->subject == SCOPE_S_WELCOME_CODE
                         ? "delivered to this service, within 20 s, once "
                           "(41050/41051)"
                         : "in the service's range (60011)");
        json_array_append_new(x->rows,
                              json_pack("{s:s, s:s, s:b, s:s, s:b}", "field",
                                        field, "type", scope_type_name(f->type),
                                        "kept", 1, "reason", why, "body", 1));
        if (f->type == SCOPE_T_OBJECT ||
            (f->type == SCOPE_T_ARRAY && f->items->type == SCOPE_T_OBJECT)) {
            snprintf(field, sizeof(field), "%s%s%s.", prefix, f->name,
                     f->type == SCOPE_T_ARRAY ? "[]" : "");
            body_walk(x, f->type == SCOPE_T_ARRAY ? f->items : f, field);
        }
    }
}

/* The footer row: what the allow-list does with everything else. */
static const char unknown_reason[] =
    "unknown fields are removed: a field WeCom returns that the scope "
    "files do not declare never reaches a service, nor does a value of "
    "another type than declared";

/* The service's record through the broker's decoder, into *out; 1 when
 * there is none or it is unusable (said on stderr). */
static int
load_service(struct ctl *c, const char *id, const char *name,
             struct record_service **out)
{
    char key[KEYS_MAX];
    redisReply *r;
    enum brk_err err;

    if (keys_service(key, sizeof(key), c->cfg->key_prefix, id, NULL) ||
        (r = ctl_cmd(c, "HGETALL %s", key)) == NULL)
        return 1;
    err = record_service_decode(id, r, out);
    freeReplyObject(r);
    if (err == BRK_ERR_NOTFOUND)
        fprintf(stderr, "brokerctl: service %s has no record\n", name);
    else if (err)
        fprintf(stderr,
                "brokerctl: service %s: stored record unusable (%s): the "
                "broker refuses its requests (errcode %ld)\n",
                name, brk_strerror(err), errcodes_code(ERRCODE_UNAVAILABLE));
    return err != BRK_OK;
}

/* The tenant's record (its hash and directory) through the broker's
 * decoder, as of now: *out NULL when it is not a tenant; 1 when it is
 * unusable (said on stderr). */
static int
load_tenant(struct ctl *c, const char *corp, const char *suite,
            struct record_tenant **out)
{
    static const char *const subs[] = {"dir:parents", "dir:users", "dir:tags"};
    char key[KEYS_MAX];
    redisReply *parts[4] = {NULL, NULL, NULL, NULL}, all;
    enum brk_err err = BRK_ERR_NOMEM;
    size_t i;
    int rc = 1;

    *out = NULL;
    for (i = 0; i < nitems(parts); i++) {
        if ((i == 0 ? keys_tenant(key, sizeof(key), c->cfg->key_prefix, corp,
                                  suite)
                    : keys_tenant_sub(key, sizeof(key), c->cfg->key_prefix,
                                      corp, suite, subs[i - 1])) ||
            (parts[i] = ctl_cmd(c, "HGETALL %s", key)) == NULL)
            goto out;
    }
    memset(&all, 0, sizeof(all));
    all.type = REDIS_REPLY_ARRAY;
    all.elements = nitems(parts);
    all.element = parts;
    err = record_tenant_decode(&all, (long long)time(NULL), out);
    if (err == BRK_ERR_NOTFOUND)
        err = BRK_OK;
    if (err)
        fprintf(stderr,
                "brokerctl: tenant %s: stored record unusable (%s): the "
                "broker refuses its requests (errcode %ld)\n",
                corp, brk_strerror(err), errcodes_code(ERRCODE_UNAVAILABLE));
    rc = err != BRK_OK;
out:
    for (i = 0; i < nitems(parts); i++)
        if (parts[i] != NULL)
            freeReplyObject(parts[i]);
    return rc;
}

/* explain CORPID SERVICE PATH */
int
ctl_explain(struct ctl *c, int argc, char **argv)
{
    struct brk_errinfo info = {"", 0, -1};
    struct scope_map *m = NULL;
    const struct record_parties *parties = NULL;
    struct record_service *rs = NULL;
    struct record_tenant *rt = NULL;
    struct explain *x = NULL;
    const struct scope_endpoint *e = NULL;
    const struct scope_event *ev = NULL;
    struct evfilter_ask ask;
    const char *found[16], *suite;
    char path[PATH_CAP], id[SERVICE_ID_LEN + 1], key[KEYS_MAX];
    json_t *svc = NULL, *ten = NULL, *perms = NULL;
    size_t n, i;
    int rc = 1;

    if (argc != 3)
        return ctl_usage("explain takes CORPID SERVICE PATH or "
                         "event:INFOTYPE[/CHANGETYPE]");
    if (!keys_id_ok(argv[0]))
        return ctl_usage("%s is not a corpid", argv[0]);
    normal_path(argv[2], path, sizeof(path));
    if (scope_map_load(c->cfg->scopes_dir, &m, &info) != BRK_OK) {
        fprintf(stderr, "brokerctl: %s\n", info.msg);
        return 1;
    }
    if (strncmp(argv[2], "event:", 6) == 0) {
        ev = scope_events_lookup(m, argv[2]);
        if (ev == NULL) {
            fprintf(stderr,
                    "brokerctl: %s is not declared in %s: it is delivered to "
                    "no service (see brokerctl scopes list)\n",
                    argv[2], c->cfg->scopes_dir);
            goto out;
        }
    } else if ((e = scope_map_find(m, path)) == NULL) {
        fprintf(stderr,
                "brokerctl: %s is not declared in %s: every service gets "
                "errcode %ld for it (see brokerctl scopes list)\n",
                path, c->cfg->scopes_dir, errcodes_code(ERRCODE_API_FORBIDDEN));
        goto out;
    }
    if (ctl_service_id(c, argv[1], id) != 0 ||
        load_service(c, id, argv[1], &rs) != 0)
        goto out;
    /* the raw hash: what is shown (the scopes as ops wrote them) */
    if (keys_service(key, sizeof(key), c->cfg->key_prefix, id, NULL) ||
        (svc = ctl_hgetall(c, key)) == NULL)
        goto out;
    n = ctl_suites_of(c, argv[0], found, nitems(found));
    if (n > 1 && rs->suite[0] != '\0') {
        /* the service's own suite decides */
        for (i = 0; i < n; i++)
            if (strcmp(found[i], rs->suite) == 0)
                found[0] = found[i];
        n = 1;
    }
    if (n == 0) {
        fprintf(stderr,
                "brokerctl: %s is not a tenant%s: no service "
                "receives anything of it\n",
                argv[0], c->suite ? " of that suite" : "");
        goto out;
    }
    if (n > 1) {
        rc = ctl_usage("%s installed several suites; give --suite", argv[0]);
        goto out;
    }
    suite = found[0];
    if (load_tenant(c, argv[0], suite, &rt) != 0)
        goto out;
    if (keys_tenant(key, sizeof(key), c->cfg->key_prefix, argv[0], suite) ||
        (ten = ctl_hgetall(c, key)) == NULL)
        goto out;
    if (record_service_parties(rs, argv[0], &parties) != BRK_OK) {
        fprintf(stderr,
                "brokerctl: service %s: its --parties name %s in other "
                "letter cases: the broker refuses its requests\n",
                argv[1], argv[0]);
        goto out;
    }
    x = ctl_xmalloc(sizeof(*x));
    memset(x, 0, sizeof(*x));
    x->c = c;
    x->rows = json_array();
    x->svc_scopes = ctl_str_of(svc, "scopes", "");
    x->service = &rs->grant;
    x->tenant = rt != NULL ? &rt->grant : &x->none;
    perms = json_array();
    tenant_expiry(x, ctl_str_of(ten, "permissions", "[]"), perms);
    if (ev != NULL) {
        explain_event(x, rs, rt, suite, argv[0], ev, parties, &ask);
        walk(x, &ev->root, "", 1, "");
    } else {
        refusal(x, rs, rt, suite, argv[0], e->scope, "endpoint",
                e->write ? e->capability : 0);
        if (e->write)
            body_walk(x, &e->body, "");
        walk(x, &e->root, "", 1, "");
    }
    if (c->json) {
        json_array_append_new(x->rows,
                              json_pack("{s:s, s:b, s:s}", "field", "*", "kept",
                                        0, "reason", unknown_reason));
        ctl_print_json(x->rows);
    } else {
        if (ev != NULL)
            print_event_header(x, ev, argv[0], suite, ten, argv[1], perms,
                               parties);
        else
            print_header(x, e, argv[0], suite, ten, argv[1], perms, parties);
        print_rows(x);
        printf("\n* %s.\n", unknown_reason);
    }
    rc = 0;
out:
    if (x != NULL)
        json_decref(x->rows);
    brk_free(x);
    json_decref(perms);
    json_decref(ten);
    json_decref(svc);
    record_tenant_unref(rt);
    record_service_unref(rs);
    scope_map_free(m);
    return rc;
}
