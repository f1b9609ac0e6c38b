/*
 * brokerctl service: create, list, show, revoke and rotate the internal
 * services that may call the service API. A secret is printed once, at
 * add and rotate; Redis keeps only its salted hash. Revoke and rotate end
 * the service's tokens and tell every broker instance at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "capability.h"
#include "ctl.h"
#include "keys.h"
#include "record.h"
#include "scope_map.h"
#include "scripts.h"
#include "service.h"
#include "worker.h"

static int
usage_error(const char *msg)
{
    return ctl_usage("%s", msg);
}

/* The id of a service by name into id (SERVICE_ID_LEN + 1 bytes); 0, or 1
 * after printing why. */
int
ctl_service_id(struct ctl *c, const char *name, char *id)
{
    char key[KEYS_MAX];
    redisReply *r;

    if (!service_name_ok(name) ||
        keys_service_name(key, sizeof(key), c->cfg->key_prefix, name)) {
        fprintf(stderr, "brokerctl: no service called %s\n", name);
        return 1;
    }
    r = ctl_cmd(c, "GET %s", key);
    if (r == NULL)
        return 1;
    if (r->type != REDIS_REPLY_STRING || r->len != SERVICE_ID_LEN) {
        fprintf(stderr, "brokerctl: no service called %s\n", name);
        freeReplyObject(r);
        return 1;
    }
    memcpy(id, r->str, SERVICE_ID_LEN + 1);
    freeReplyObject(r);
    return 0;
}

/* "A,B" -> JSON array of the parts, each checked by ok (NULL: none). */
static json_t *
split_list(const char *s, int (*ok)(const char *))
{
    json_t *arr = json_array();
    char *dup = ctl_xstrdup(s), *tok, *save = NULL;

    for (tok = strtok_r(dup, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (ok != NULL && !ok(tok)) {
            json_decref(arr);
            arr = NULL;
            break;
        }
        json_array_append_new(arr, json_string(tok));
    }
    brk_free(dup);
    if (arr != NULL && json_array_size(arr) == 0) {
        json_decref(arr);
        arr = NULL;
    }
    return arr;
}

/* "CORP:P,CORP:Q" -> {"CORP":[P,Q]}, or NULL when malformed. */
static json_t *
parse_parties(const char *s)
{
    json_t *o = json_object(), *list;
    char *dup = ctl_xstrdup(s), *tok, *save = NULL, *colon, *end;
    long id;

    for (tok = strtok_r(dup, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        colon = strchr(tok, ':');
        if (colon == NULL)
            goto bad;
        *colon = '\0';
        id = strtol(colon + 1, &end, 10);
        if (!keys_id_ok(tok) || *end != '\0' || colon[1] == '\0' || id < 0)
            goto bad;
        list = json_object_get(o, tok);
        if (list == NULL) {
            list = json_array();
            json_object_set_new(o, tok, list);
        }
        json_array_append_new(list, json_integer(id));
    }
    brk_free(dup);
    if (json_object_size(o) == 0) {
        json_decref(o);
        return NULL;
    }
    return o;
bad:
    brk_free(dup);
    json_decref(o);
    return NULL;
}

static int
scope_ok(const char *name)
{
    struct scope_grant g;

    scope_grant_clear(&g);
    return scope_grant_add_name(&g, name) == BRK_OK;
}

/* Nonzero when a service of (suite, corps) could serve a tenant s serves:
 * their suites meet ("" is any) and so do their corps (NULL is any). */
static int
overlaps(const struct record_service *s, const char *suite, const json_t *corps)
{
    const json_t *v;
    size_t i, k;

    if (s->suite[0] != '\0' && suite != NULL && suite[0] != '\0' &&
        strcmp(s->suite, suite) != 0)
        return 0;
    if (s->any_corp || corps == NULL)
        return 1;
    json_array_foreach(
        corps, i, v) for (k = 0; k < s->ncorps;
                          k++) if (strcmp(s->corps[k], json_string_value(v)) ==
                                   0) return 1;
    return 0;
}

/*
 * external.welcome is held by at most one service per tenant (SPEC §5b):
 * 0 when no live service holding it could serve a tenant the new one
 * would, else 1 after saying which does. A service whose record does not
 * decode is counted as overlapping: in doubt, refuse.
 */
static int
welcome_taken(struct ctl *c, const char *suite, const json_t *corps)
{
    char key[KEYS_MAX];
    struct record_service *s;
    redisReply *all, *r;
    size_t i;
    int taken = 0;

    if (keys_services(key, sizeof(key), c->cfg->key_prefix))
        return 1;
    all = ctl_cmd(c, "SMEMBERS %s", key);
    if (all == NULL)
        return 1;
    for (i = 0; i < all->elements && !taken; i++) {
        const char *id = all->element[i]->str;

        if (keys_service(key, sizeof(key), c->cfg->key_prefix, id, NULL)) {
            taken = 1;
            break;
        }
        r = ctl_cmd(c, "HGETALL %s", key);
        if (r == NULL) {
            taken = 1;
            break;
        }
        s = NULL;
        switch (record_service_decode(id, r, &s)) {
        case BRK_OK:
            if (!s->revoked && (s->caps & CAP_EXTERNAL_WELCOME) != 0 &&
                overlaps(s, suite, corps)) {
                fprintf(stderr,
                        "brokerctl: service %s already holds external.welcome "
                        "for tenants this one would serve\n",
                        s->name);
                taken = 1;
            }
            break;
        case BRK_ERR_NOTFOUND:
            break;
        default:
            fprintf(stderr,
                    "brokerctl: service id %s has a record that does not "
                    "decode; cannot tell whether it holds external.welcome\n",
                    id);
            taken = 1;
        }
        record_service_unref(s);
        freeReplyObject(r);
    }
    freeReplyObject(all);
    return taken;
}

/* "N/min" (or "N"), N in 1..1000000, into its stored form (decimal N);
 * 0, or -1 when it is not one. */
static int
write_rate_parse(const char *s, char *out, size_t len)
{
    size_t n = strspn(s, "0123456789");
    long long v;

    if (n == 0 || n > 7 || s[0] == '0' ||
        (s[n] != '\0' && strcmp(s + n, "/min") != 0))
        return -1;
    v = strtoll(s, NULL, 10);
    if (v < 1 || v > 1000000)
        return -1;
    snprintf(out, len, "%lld", v);
    return 0;
}

/* What `service add` was asked for, checked; cl and pl owned. */
struct add_args {
    const char *name, *scopes, *suite;
    char caps[CAPABILITY_LIST_MAX];
    unsigned capbits;
    char rate[16];   /* "" without --write-rate */
    json_t *cl, *pl; /* --corps, --parties; NULL when not given */
};

static void
add_args_clear(struct add_args *a)
{
    json_decref(a->cl);
    json_decref(a->pl);
    a->cl = a->pl = NULL;
}

/* Parse and check the arguments into a: 0, or the exit status of a usage
 * error (printed; nothing owned left in a). */
static int
add_parse(struct ctl *c, int argc, char **argv, struct add_args *a)
{
    const char *corps = NULL, *parties = NULL, *capabilities = NULL;
    const char *wrate = NULL;
    json_t *sl;
    int i;

    memset(a, 0, sizeof(*a));
    if (argc < 1)
        return usage_error("service add needs a NAME");
    a->name = argv[0];
    for (i = 1; i < argc; i++) {
        const char **dst = NULL;

        if (strcmp(argv[i], "--scopes") == 0)
            dst = &a->scopes;
        else if (strcmp(argv[i], "--suite") == 0)
            dst = &a->suite;
        else if (strcmp(argv[i], "--corps") == 0)
            dst = &corps;
        else if (strcmp(argv[i], "--parties") == 0)
            dst = &parties;
        else if (strcmp(argv[i], "--capabilities") == 0)
            dst = &capabilities;
        else if (strcmp(argv[i], "--write-rate") == 0)
            dst = &wrate;
        if (dst == NULL || i + 1 >= argc)
            return usage_error("unknown or incomplete option");
        *dst = argv[++i];
    }
    if (a->suite == NULL)
        a->suite = c->suite;
    if (!service_name_ok(a->name))
        return usage_error("a NAME is 1..64 of [A-Za-z0-9_.-]");
    if (a->scopes == NULL || (sl = split_list(a->scopes, scope_ok)) == NULL)
        return usage_error("--scopes takes known scopes, comma-separated "
                           "(see brokerctl scopes list)");
    json_decref(sl);
    if (capabilities != NULL &&
        (capabilities[0] == '\0' ||
         capability_parse(capabilities, &a->capbits) != BRK_OK))
        return usage_error("--capabilities takes external.write, "
                           "external.welcome, external.message, messages, "
                           "comma-separated, each once");
    capability_format(a->capbits, a->caps, sizeof(a->caps));
    if (wrate != NULL && write_rate_parse(wrate, a->rate, sizeof(a->rate)) != 0)
        return usage_error("--write-rate takes N/min, N from 1 to 1000000");
    if (a->suite != NULL && config_find_suite(c->cfg, a->suite) == NULL)
        return usage_error("--suite names no configured suite");
    if (corps != NULL && (a->cl = split_list(corps, keys_id_ok)) == NULL)
        return usage_error("--corps takes corpids, comma-separated");
    if (parties != NULL && (a->pl = parse_parties(parties)) == NULL) {
        add_args_clear(a);
        return usage_error("--parties takes CORPID:DEPARTMENT_ID,...");
    }
    return 0;
}

/*
 * Store the service under id with the secret's salt and hash: three
 * slots, three steps (see the service_add script) — the record, then the
 * name (taken: the record is deleted), then the index. 0, or 1 after
 * saying why.
 */
static int
add_store(struct ctl *c, const struct add_args *a, const char *id,
          const char *salt, const char *hash)
{
    char kname[KEYS_MAX], ksvc[KEYS_MAX], kall[KEYS_MAX], now[24];
    char *corps_s = NULL, *parties_s = NULL;
    redisReply *r = NULL;
    int rc = 1;

    if (keys_service_name(kname, sizeof(kname), c->cfg->key_prefix, a->name) ||
        keys_service(ksvc, sizeof(ksvc), c->cfg->key_prefix, id, NULL) ||
        keys_services(kall, sizeof(kall), c->cfg->key_prefix))
        return 1;
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    corps_s = a->cl ? json_dumps(a->cl, JSON_COMPACT) : NULL;
    parties_s = a->pl ? json_dumps(a->pl, JSON_COMPACT) : NULL;
    r = ctl_cmd(c, "EVAL %s 1 %s %s %s %s %s %s %s %s %s %s %s %s",
                scripts_text(SCRIPT_SERVICE_ADD), ksvc, id, a->name, salt, hash,
                a->scopes, a->suite ? a->suite : "", corps_s ? corps_s : "",
                parties_s ? parties_s : "", now, a->caps, a->rate);
    if (r == NULL)
        goto out;
    if (r->type != REDIS_REPLY_INTEGER || r->integer != 1) {
        fprintf(stderr, "brokerctl: service id %s exists; try again\n", id);
        goto out;
    }
    freeReplyObject(r);
    r = ctl_cmd(c, "SETNX %s %s", kname, id);
    if (r == NULL)
        goto out;
    if (r->type != REDIS_REPLY_INTEGER || r->integer != 1) {
        freeReplyObject(r);
        r = ctl_cmd(c, "DEL %s", ksvc);
        fprintf(stderr, "brokerctl: a service called %s exists\n", a->name);
        goto out;
    }
    freeReplyObject(r);
    r = ctl_cmd(c, "SADD %s %s", kall, id);
    if (r != NULL)
        rc = 0;
out:
    if (r != NULL)
        freeReplyObject(r);
    free(corps_s); /* from jansson */
    free(parties_s);
    return rc;
}

static int
cmd_add(struct ctl *c, int argc, char **argv)
{
    char id[SERVICE_ID_LEN + 1], secret[SERVICE_SECRET_LEN + 1];
    char salt[SERVICE_SALT_LEN + 1], hash[SERVICE_HASH_LEN + 1];
    char full[SERVICE_ID_LEN + SERVICE_SECRET_LEN + 2] = "";
    struct add_args a;
    json_t *out;
    int rc;

    rc = add_parse(c, argc, argv, &a);
    if (rc != 0)
        return rc;
    rc = 1;
    if ((a.capbits & CAP_EXTERNAL_WELCOME) != 0 &&
        welcome_taken(c, a.suite, a.cl))
        goto out;
    if (service_credentials_new(id, secret, salt, hash) != BRK_OK ||
        add_store(c, &a, id, salt, hash))
        goto out;
    snprintf(full, sizeof(full), "%s.%s", id, secret);
    if (c->json) {
        out = json_pack("{s:s, s:s}", "name", a.name, "secret", full);
        ctl_print_json(out);
        json_decref(out);
    } else {
        printf("service %s created (id %s)\n"
               "secret, shown only now — store it in the service's secret "
               "store:\n  %s\n",
               a.name, id, full);
    }
    rc = 0;
out:
    brk_wipe(secret, sizeof(secret));
    brk_wipe(full, sizeof(full));
    add_args_clear(&a);
    return rc;
}

/* The service's corps and parties as the broker reads them (its record
 * decoder), into o; null for any corp, for no parties. */
static void
record_json(const struct record_service *rs, json_t *o)
{
    json_t *corps = json_null(), *parties = json_null(), *ids, *caps;
    size_t i, k;
    unsigned bit;

    if (rs != NULL && !rs->any_corp) {
        corps = json_array();
        for (i = 0; i < rs->ncorps; i++)
            json_array_append_new(corps, json_string(rs->corps[i]));
    }
    if (rs != NULL && rs->nparties > 0) {
        parties = json_object();
        for (i = 0; i < rs->nparties; i++) {
            ids = json_array();
            for (k = 0; k < rs->parties[i].n; k++)
                json_array_append_new(ids, json_integer(rs->parties[i].ids[k]));
            json_object_set_new(parties, rs->parties[i].corp, ids);
        }
    }
    json_object_set_new(o, "corps", corps);
    json_object_set_new(o, "parties", parties);
    caps = json_array();
    for (bit = 1; rs != NULL && bit <= CAP_ALL; bit <<= 1)
        if ((rs->caps & bit) != 0)
            json_array_append_new(caps, json_string(capability_name(bit)));
    json_object_set_new(o, "capabilities", caps);
    /* writes a minute; null: none of its own */
    json_object_set_new(o, "write_rate",
                        rs != NULL && rs->write_rate > 0
                            ? json_integer(rs->write_rate)
                            : json_null());
}

static json_t *
service_json(struct ctl *c, const char *id)
{
    char key[KEYS_MAX], toks[KEYS_MAX];
    struct record_service *rs = NULL;
    enum brk_err err = BRK_ERR_STORE;
    json_t *h, *o, *v;
    redisReply *r;

    if (keys_service(key, sizeof(key), c->cfg->key_prefix, id, NULL) ||
        keys_service(toks, sizeof(toks), c->cfg->key_prefix, id, "toks"))
        return NULL;
    h = ctl_hgetall(c, key);
    if (h == NULL || json_object_size(h) == 0) {
        json_decref(h);
        return NULL;
    }
    r = ctl_cmd(c, "HGETALL %s", key);
    if (r != NULL) {
        err = record_service_decode(id, r, &rs);
        freeReplyObject(r);
    }
    v = split_list(ctl_str_of(h, "scopes", ""), NULL);
    o = json_pack("{s:s, s:s, s:o, s:s, s:s, s:I, s:I}", "name",
                  ctl_str_of(h, "name", ""), "id", id, "scopes",
                  v ? v : json_array(), "suite", ctl_str_of(h, "suite", ""),
                  "status",
                  err           ? "unusable"
                  : rs->revoked ? "revoked"
                                : "active",
                  "created_at", (json_int_t)ctl_num_of(h, "created_at"),
                  "updated_at", (json_int_t)ctl_num_of(h, "updated_at"));
    record_json(rs, o);
    record_service_unref(rs);
    json_object_set_new(o, "delivery", ctl_delivery_json(c, id));
    json_object_set_new(o, "secret_generation",
                        json_integer(ctl_num_of(h, "gen")));
    r = ctl_cmd(c, "SCARD %s", toks);
    json_object_set_new(
        o, "tokens",
        json_integer(r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0));
    if (r != NULL)
        freeReplyObject(r);
    json_decref(h);
    return o;
}

static char *
joined(const json_t *arr)
{
    static char buf[512];
    size_t i, o = 0;
    const json_t *v;

    buf[0] = '\0';
    json_array_foreach(arr, i, v) if (o < sizeof(buf)) o += (size_t)snprintf(
        buf + o, sizeof(buf) - o, "%s%s", i ? "," : "", json_string_value(v));
    return buf;
}

static int
cmd_list(struct ctl *c)
{
    char key[KEYS_MAX], w[64];
    redisReply *r;
    json_t *all = json_array(), *s;
    size_t i;

    if (keys_services(key, sizeof(key), c->cfg->key_prefix))
        return 1;
    r = ctl_cmd(c, "SMEMBERS %s", key);
    if (r == NULL)
        return 1;
    for (i = 0; i < r->elements; i++) {
        s = service_json(c, r->element[i]->str);
        if (s != NULL)
            json_array_append_new(all, s);
    }
    freeReplyObject(r);
    if (c->json) {
        ctl_print_json(all);
    } else {
        static const char *const heads[] = {"NAME",   "ID",    "STATUS",
                                            "SCOPES", "SUITE", "CREATED"};
        struct ctl_table *t = ctl_table_new(6, heads);
        const char *row[6];

        json_array_foreach(all, i, s)
        {
            ctl_when(json_integer_value(json_object_get(s, "created_at")), w,
                     sizeof(w));
            row[0] = ctl_str_of(s, "name", "");
            row[1] = ctl_str_of(s, "id", "");
            row[2] = ctl_str_of(s, "status", "");
            row[3] = joined(json_object_get(s, "scopes"));
            row[4] = ctl_str_of(s, "suite", "")[0] ? ctl_str_of(s, "suite", "")
                                                   : "(any)";
            row[5] = w;
            ctl_table_add(t, row);
        }
        ctl_table_print(t, stdout);
        ctl_table_free(t);
    }
    json_decref(all);
    return 0;
}

static int
cmd_show(struct ctl *c, const char *name)
{
    char id[SERVICE_ID_LEN + 1], cw[64], uw[64], caps[CAPABILITY_LIST_MAX];
    char dlv[3200];
    json_t *s;
    char *corps, *parties;

    if (ctl_service_id(c, name, id))
        return 1;
    s = service_json(c, id);
    if (s == NULL) {
        fprintf(stderr, "brokerctl: service %s has no record\n", name);
        return 1;
    }
    if (c->json) {
        ctl_print_json(s);
    } else {
        ctl_when(json_integer_value(json_object_get(s, "created_at")), cw,
                 sizeof(cw));
        ctl_when(json_integer_value(json_object_get(s, "updated_at")), uw,
                 sizeof(uw));
        {
            const json_t *d = json_object_get(s, "delivery");

            if (!json_is_object(d))
                snprintf(dlv, sizeof(dlv), "(none)");
            else if (json_object_get(d, "url") == NULL)
                snprintf(dlv, sizeof(dlv), "%s", ctl_str_of(d, "status", ""));
            else
                snprintf(dlv, sizeof(dlv), "%s to %s, events %s%s%s",
                         ctl_str_of(d, "status", ""), ctl_str_of(d, "url", ""),
                         ctl_str_of(d, "events", ""),
                         ctl_str_of(d, "suite", "")[0] ? ", suite " : "",
                         ctl_str_of(d, "suite", ""));
        }
        corps = json_dumps(json_object_get(s, "corps"), JSON_ENCODE_ANY);
        parties = json_dumps(json_object_get(s, "parties"), JSON_ENCODE_ANY);
        /* joined() has one buffer: the capabilities' own copy first */
        snprintf(caps, sizeof(caps), "%s",
                 json_array_size(json_object_get(s, "capabilities"))
                     ? joined(json_object_get(s, "capabilities"))
                     : "(none)");
        printf(
            "name:        %s\nid:          %s\nstatus:      %s\n"
            "scopes:      %s\nsuite:       %s\ncorps:       %s\n"
            "parties:     %s\ncapabilities: %s\n"
            "tokens:      %lld live\n"
            "delivery:    %s\n"
            "created:     %s\nupdated:     %s\n",
            name, id, ctl_str_of(s, "status", ""),
            joined(json_object_get(s, "scopes")),
            ctl_str_of(s, "suite", "")[0] ? ctl_str_of(s, "suite", "")
                                          : "(any)",
            strcmp(corps ? corps : "null", "null") ? corps : "(any)",
            strcmp(parties ? parties : "null", "null") ? parties : "(tenant's)",
            caps, (long long)json_integer_value(json_object_get(s, "tokens")),
            dlv, cw, uw);
        free(corps);
        free(parties);
    }
    json_decref(s);
    return 0;
}

static int
cmd_end(struct ctl *c, const char *name, int rotate)
{
    char id[SERVICE_ID_LEN + 1], ksvc[KEYS_MAX], toks[KEYS_MAX], chan[160];
    char secret[SERVICE_SECRET_LEN + 1] = "", salt[SERVICE_SALT_LEN + 1] = "";
    char hash[SERVICE_HASH_LEN + 1] = "", now[24], msg[64];
    char full[SERVICE_ID_LEN + SERVICE_SECRET_LEN + 2];
    redisReply *r;
    json_t *out;
    int rc = 1;

    if (ctl_service_id(c, name, id))
        return 1;
    if (keys_service(ksvc, sizeof(ksvc), c->cfg->key_prefix, id, NULL) ||
        keys_service(toks, sizeof(toks), c->cfg->key_prefix, id, "toks") ||
        ctl_inval_channel(c, chan, sizeof(chan)))
        return 1;
    if (rotate && service_secret_new(secret, salt, hash) != BRK_OK)
        return 1;
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    snprintf(msg, sizeof(msg), "svc %s", id);
    r = ctl_cmd(c, "EVAL %s 2 %s %s %s %s %s %s %s %s",
                scripts_text(SCRIPT_SERVICE_END), ksvc, toks, now,
                rotate ? salt : "", rotate ? hash : "", c->cfg->key_prefix, msg,
                chan);
    if (r == NULL)
        goto out;
    if (r->type != REDIS_REPLY_INTEGER || r->integer != 1) {
        fprintf(stderr, "brokerctl: service %s %s\n", name,
                r->integer == -2 ? "is revoked" : "has no record");
        goto out;
    }
    if (!rotate) {
        if (c->json) {
            out = json_pack("{s:s, s:s}", "name", name, "status", "revoked");
            ctl_print_json(out);
            json_decref(out);
        } else {
            printf("service %s revoked; its tokens no longer work\n", name);
        }
    } else {
        snprintf(full, sizeof(full), "%s.%s", id, secret);
        if (c->json) {
            out = json_pack("{s:s, s:s}", "name", name, "secret", full);
            ctl_print_json(out);
            json_decref(out);
        } else {
            printf("service %s rotated; the old secret and its tokens no "
                   "longer work\nnew secret, shown only now:\n  %s\n",
                   name, full);
        }
        brk_wipe(full, sizeof(full));
    }
    rc = 0;
out:
    brk_wipe(secret, sizeof(secret));
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

/* service add|list|show|revoke|rotate: exit status as every command. */
int
ctl_service(struct ctl *c, int argc, char **argv)
{
    if (argc < 1)
        return usage_error("service needs a verb");
    if (strcmp(argv[0], "add") == 0)
        return cmd_add(c, argc - 1, argv + 1);
    if (strcmp(argv[0], "list") == 0 && argc == 1)
        return cmd_list(c);
    if (strcmp(argv[0], "deliver") == 0)
        return ctl_service_deliver(c, argc - 1, argv + 1);
    if (argc != 2)
        return usage_error("service show|revoke|rotate take one NAME");
    if (strcmp(argv[0], "show") == 0)
        return cmd_show(c, argv[1]);
    if (strcmp(argv[0], "revoke") == 0)
        return cmd_end(c, argv[1], 0);
    if (strcmp(argv[0], "rotate") == 0)
        return cmd_end(c, argv[1], 1);
    return usage_error("unknown service verb");
}
