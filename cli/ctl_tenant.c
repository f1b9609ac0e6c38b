/*
 * brokerctl tenants, tenant show|purge, suite: the tenants of each suite,
 * one tenant's grant and range, its purge, and each suite's health.
 *
 * tenant purge does what a cancel_auth does in the worker (broker/
 * worker.c, "cancel_auth: purge"), in the same order and with the same
 * scripts, so the store looks the same whichever removed the tenant:
 * cancel marker (keyed by an HMAC), data key, the broker tokens services
 * hold for the tenant, every key of the tenant, AOF rewrite, index and
 * deletion report, change notice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keyring.h"
#include "keys.h"
#include "scripts.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#include "ctl.h"
#include "purge.h"

/*---- The tenant record as JSON ----*/

/* The visible range of a stored privilege JSON, as SPEC's "visible". */
static json_t *
visible_of(const json_t *priv)
{
    json_t *users = json_array(), *parties = json_array(), *tags = json_array();
    static const char *const u[] = {"allow_user", "extra_user"};
    static const char *const p[] = {"allow_party", "extra_party"};
    static const char *const t[] = {"allow_tag", "extra_tag"};
    size_t i, k;
    json_t *v;

    for (i = 0; i < 2; i++) {
        json_array_foreach(json_object_get(priv, u[i]), k, v)
            json_array_append(users, v);
        json_array_foreach(json_object_get(priv, p[i]), k, v)
            json_array_append(parties, v);
        json_array_foreach(json_object_get(priv, t[i]), k, v)
            json_array_append(tags, v);
    }
    return json_pack("{s:o, s:o, s:o}", "users", users, "parties", parties,
                     "tags", tags);
}

/* One tenant as the JSON object SPEC §8 fixes (new reference). */
static json_t *
tenant_json(const char *suite, const char *corp, const json_t *h, int full)
{
    json_error_t jerr;
    json_t *priv = json_loads(ctl_str_of(h, "privilege", "{}"), 0, &jerr);
    json_t *perms = json_loads(ctl_str_of(h, "permissions", "[]"), 0, &jerr);
    json_t *o, *names = json_array(), *v, *admins;
    size_t i;

    if (!json_is_object(priv)) {
        json_decref(priv);
        priv = json_object();
    }
    if (!json_is_array(perms)) {
        json_decref(perms);
        perms = json_array();
    }
    json_array_foreach(perms, i, v)
        json_array_append(names, json_object_get(v, "name"));
    o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "suite_id", suite,
                  "corpid", corp, "corp_name", ctl_str_of(h, "corp_name", ""),
                  "status", ctl_str_of(h, "status", "installing"), "level",
                  (json_int_t)ctl_num_of(h, "level"), "authorized_at",
                  (json_int_t)ctl_num_of(h, "authorized_at"), "updated_at",
                  (json_int_t)ctl_num_of(h, "updated_at"));
    json_object_set_new(o, "visible", visible_of(priv));
    if (full) {
        json_object_set(o, "permissions", perms);
        json_object_set(o, "privilege", priv);
        json_object_set_new(
            o, "directory",
            json_pack("{s:I, s:I, s:I, s:I}", "users",
                      (json_int_t)ctl_num_of(h, "dir_users"), "departments",
                      (json_int_t)ctl_num_of(h, "dir_departments"), "tags",
                      (json_int_t)ctl_num_of(h, "dir_tags"), "synced_at",
                      (json_int_t)ctl_num_of(h, "synced_at")));
        json_object_set_new(o, "data_sources",
                            json_pack("[s]", "third_party_app"));
        /* the app's admins as WeCom last listed them (change_app_admin);
         * [] until then, and for a value that does not parse */
        admins = json_loads(ctl_str_of(h, "admins", "[]"), 0, &jerr);
        if (!json_is_array(admins)) {
            json_decref(admins);
            admins = json_array();
        }
        json_object_set_new(o, "admins", admins);
    } else {
        json_object_set(o, "scopes", names);
    }
    json_decref(names);
    json_decref(perms);
    json_decref(priv);
    return o;
}

static void
visible_summary(const json_t *t, char *buf, size_t len)
{
    const json_t *v = json_object_get(t, "visible");

    snprintf(buf, len, "%zu parties, %zu users, %zu tags",
             json_array_size(json_object_get(v, "parties")),
             json_array_size(json_object_get(v, "users")),
             json_array_size(json_object_get(v, "tags")));
}

/*---- Dead letters ----*/

/* The stream id after id ("ms-seq" -> "ms-(seq+1)"), for paging with
 * XRANGE on servers without exclusive ranges. */
static void
next_id(const char *id, char *out, size_t len)
{
    unsigned long long ms, seq;

    if (sscanf(id, "%llu-%llu", &ms, &seq) != 2) {
        snprintf(out, len, "+");
        return;
    }
    if (seq == ~0ULL)
        snprintf(out, len, "%llu-0", ms + 1);
    else
        snprintf(out, len, "%llu-%llu", ms, seq + 1);
}

/* A field of a stream entry's [f, v, ...] array (borrowed), or NULL. */
static const char *
entry_field(const redisReply *fields, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[i]->str, name) == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1]->str;
    return NULL;
}

/*
 * The corp a dead-lettered event is about, into corp: it is stored as
 * WeCom sent it, so verify and decrypt it as the worker does. The
 * plaintext (which may carry an AuthCode or members' contact details) is
 * wiped at once and never printed. 0, or -1 when the event names no corp
 * (create_auth, reset_permanent_code) or does not open.
 */
static int
dead_corp(const struct wecom_crypto *wc, const char *suite,
          const redisReply *fields, char *corp, size_t len)
{
    const char *kind = entry_field(fields, "kind");
    const char *sig = entry_field(fields, "msg_signature");
    const char *ts = entry_field(fields, "timestamp");
    const char *nonce = entry_field(fields, "nonce");
    const char *enc = entry_field(fields, "encrypt");
    struct wecom_xml *x = NULL;
    char *msg = NULL, *rid = NULL;
    const char *id;
    size_t msglen = 0;
    int rc = -1;
    const char *named = entry_field(fields, "corp");

    /* an entry of a tenant's queue: the broker wrote which tenant */
    if (named != NULL) {
        if (!keys_id_ok(named))
            return -1;
        snprintf(corp, len, "%s", named);
        return 0;
    }
    if (kind == NULL || sig == NULL || ts == NULL || nonce == NULL ||
        enc == NULL)
        return -1;
    if (wecom_crypto_verify(wc, sig, ts, nonce, enc) != BRK_OK ||
        wecom_crypto_decrypt(wc, enc, strlen(enc), &msg, &msglen, &rid) !=
            BRK_OK)
        goto out;
    if (strcmp(kind, "data") == 0) {
        /* a data callback is encrypted for the corp itself */
        id = rid;
    } else {
        if (strcmp(rid, suite) != 0 ||
            wecom_xml_parse(msg, msglen, NULL, &x, NULL) != BRK_OK)
            goto out;
        id = wecom_xml_get(x, "AuthCorpId");
    }
    if (id == NULL || !keys_id_ok(id))
        goto out;
    snprintf(corp, len, "%s", id);
    rc = 0;
out:
    wecom_xml_free(x);
    brk_free_secret(msg, msglen);
    brk_free(rid);
    return rc;
}

/*
 * Count the dead-lettered events of suite per corp into counts ("suite
 * corp" -> integer). 0, or 1 after printing why.
 */
static int
count_dead(struct ctl *c, const struct suite_conf *sc, json_t *counts)
{
    struct wecom_crypto *wc = NULL;
    char key[KEYS_MAX], start[64] = "-", corp[80], member[200];
    redisReply *r = NULL, *e;
    json_t *n;
    size_t i;
    int rc = 1;

    if (keys_suite(key, sizeof(key), c->cfg->key_prefix, sc->suite_id, "dead"))
        goto out;
    if (wecom_crypto_new(sc->token, sc->encoding_aes_key, &wc) != BRK_OK) {
        fprintf(stderr, "brokerctl: suite %s: unusable token or key\n",
                sc->suite_id);
        goto out;
    }
    for (;;) {
        r = ctl_cmd(c, "XRANGE %s %s + COUNT 500", key, start);
        if (r == NULL)
            goto out;
        if (r->type != REDIS_REPLY_ARRAY || r->elements == 0)
            break;
        for (i = 0; i < r->elements; i++) {
            e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                e->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            if (dead_corp(wc, sc->suite_id, e->element[1], corp,
                          sizeof(corp)) != 0)
                continue;
            snprintf(member, sizeof(member), "%s %s", sc->suite_id, corp);
            n = json_object_get(counts, member);
            json_object_set_new(
                counts, member,
                json_integer(n ? json_integer_value(n) + 1 : 1));
        }
        e = r->element[r->elements - 1];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            break;
        next_id(e->element[0]->str, start, sizeof(start));
        freeReplyObject(r);
        r = NULL;
    }
    rc = 0;
out:
    if (r != NULL)
        freeReplyObject(r);
    wecom_crypto_free(wc);
    return rc;
}

/*---- tenants ----*/

static void
scopes_text(const json_t *scopes, char *buf, size_t len)
{
    size_t k, o = 0;
    const json_t *s;
    int w;

    buf[0] = '\0';
    json_array_foreach(scopes, k, s)
    {
        w = snprintf(buf + o, len - o, "%s%s", k ? "," : "",
                     json_string_value(s) ? json_string_value(s) : "?");
        if (w < 0 || (size_t)w >= len - o)
            break;
        o += (size_t)w;
    }
}

static void
print_tenants(const json_t *out)
{
    static const char *const heads[] = {
        "CORPID",  "NAME",       "SUITE",   "STATUS",    "LEVEL", "SCOPES",
        "VISIBLE", "AUTHORIZED", "UPDATED", "REINSTALL", "DEAD"};
    struct ctl_table *tb = ctl_table_new(11, heads);
    char vis[64], a[64], u[64], sc[512], lvl[24], dead[24];
    const char *row[11];
    const json_t *t;
    size_t i;

    json_array_foreach(out, i, t)
    {
        scopes_text(json_object_get(t, "scopes"), sc, sizeof(sc));
        visible_summary(t, vis, sizeof(vis));
        ctl_when(json_integer_value(json_object_get(t, "authorized_at")), a,
                 sizeof(a));
        ctl_when(json_integer_value(json_object_get(t, "updated_at")), u,
                 sizeof(u));
        snprintf(lvl, sizeof(lvl), "%lld",
                 (long long)json_integer_value(json_object_get(t, "level")));
        snprintf(
            dead, sizeof(dead), "%lld",
            (long long)json_integer_value(json_object_get(t, "dead_letters")));
        row[0] = ctl_str_of(t, "corpid", "");
        row[1] = ctl_str_of(t, "corp_name", "");
        row[2] = ctl_str_of(t, "suite_id", "");
        row[3] = ctl_str_of(t, "status", "");
        row[4] = lvl;
        row[5] = sc;
        row[6] = vis;
        row[7] = a;
        row[8] = u;
        row[9] = json_is_true(json_object_get(t, "reinstall_required")) ? "yes"
                                                                        : "no";
        row[10] = dead;
        ctl_table_add(tb, row);
    }
    ctl_table_print(tb, stdout);
    ctl_table_free(tb);
}

static int
by_corp_then_suite(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int d = strcmp(ctl_str_of(x, "corpid", ""), ctl_str_of(y, "corpid", ""));

    return d ? d
             : strcmp(ctl_str_of(x, "suite_id", ""),
                      ctl_str_of(y, "suite_id", ""));
}

/* The array sorted by corpid, then suite (new reference): SMEMBERS has no
 * order, and a listing should not shuffle between runs. */
static json_t *
sorted(json_t *arr)
{
    size_t i, n = json_array_size(arr);
    json_t **v = ctl_xmalloc((n ? n : 1) * sizeof(*v)), *out = json_array();

    for (i = 0; i < n; i++)
        v[i] = json_array_get(arr, i);
    qsort(v, n, sizeof(*v), by_corp_then_suite);
    for (i = 0; i < n; i++)
        json_array_append(out, v[i]);
    brk_free(v);
    return out;
}

/* tenants: every tenant that is not cancelled. */
int
ctl_tenants(struct ctl *c, int argc, char **argv)
{
    char idx[KEYS_MAX], key[KEYS_MAX];
    redisReply *r = NULL;
    json_t *out = json_array(), *dead = json_object(), *h, *t;
    size_t i;
    int rc = 1;

    (void)argv;
    if (argc != 0) {
        rc = ctl_usage("tenants takes no arguments");
        goto out;
    }
    for (i = 0; i < c->cfg->nsuites; i++)
        if ((c->suite == NULL ||
             strcmp(c->suite, c->cfg->suites[i].suite_id) == 0) &&
            count_dead(c, &c->cfg->suites[i], dead) != 0)
            goto out;
    if (keys_tenants(idx, sizeof(idx), c->cfg->key_prefix))
        goto out;
    r = ctl_cmd(c, "SMEMBERS %s", idx);
    if (r == NULL)
        goto out;
    for (i = 0; i < r->elements; i++) {
        char suite[80], corp[80];
        json_t *n;

        if (sscanf(r->element[i]->str, "%79s %79s", suite, corp) != 2)
            continue;
        if (c->suite != NULL && strcmp(c->suite, suite) != 0)
            continue;
        if (keys_tenant(key, sizeof(key), c->cfg->key_prefix, corp, suite))
            continue;
        h = ctl_hgetall(c, key);
        if (h == NULL)
            goto out;
        if (json_object_size(h) == 0) {
            /* purged meanwhile: the index is cleaned last */
            json_decref(h);
            continue;
        }
        t = tenant_json(suite, corp, h, 0);
        json_object_set_new(t, "reinstall_required",
                            json_boolean(strcmp(ctl_str_of(h, "status", ""),
                                                "reinstall_required") == 0));
        n = json_object_get(dead, r->element[i]->str);
        json_object_set_new(t, "dead_letters",
                            json_integer(n ? json_integer_value(n) : 0));
        json_array_append_new(out, t);
        json_decref(h);
    }
    h = sorted(out);
    json_decref(out);
    out = h;
    if (c->json)
        ctl_print_json(out);
    else
        print_tenants(out);
    rc = 0;
out:
    if (r != NULL)
        freeReplyObject(r);
    json_decref(dead);
    json_decref(out);
    return rc;
}

/*---- tenant show ----*/

/* The cancel marker of (suite, corp) into key. */
static int
gone_key(struct ctl *c, const char *suite, const char *corp, char *key,
         size_t len)
{
    const char *parts[3] = {"gone", suite, corp};
    char h[65];

    keyring_index_hmac_parts(c->kr, parts, 3, h);
    return keys_gone(key, len, c->cfg->key_prefix, corp, h) != BRK_OK;
}

/* The purged tenant's marker as JSON (new reference), or NULL. */
static json_t *
gone_json(struct ctl *c, const char *suite, const char *corp)
{
    char key[KEYS_MAX];
    json_t *g, *report, *out = NULL;
    json_error_t jerr;

    if (gone_key(c, suite, corp, key, sizeof(key)))
        return NULL;
    g = ctl_hgetall(c, key);
    if (g != NULL && json_object_size(g) > 0) {
        report = json_loads(ctl_str_of(g, "report", "{}"), 0, &jerr);
        out = json_pack("{s:s, s:s, s:s, s:I, s:I, s:o}", "suite_id", suite,
                        "corpid", corp, "status", "cancelled",
                        "cancelled_event_ts", (json_int_t)ctl_num_of(g, "ts"),
                        "purged_at", (json_int_t)ctl_num_of(g, "purged_at"),
                        "deletion_report", report ? report : json_object());
    }
    json_decref(g);
    return out;
}

static void
print_report(json_t *report)
{
    const char *k;
    json_t *v;
    int first = 1;

    json_object_foreach(report, k, v)
    {
        printf("%s%s %lld", first ? "" : ", ", k,
               (long long)json_integer_value(v));
        first = 0;
    }
    printf("%s\n", first ? "(none)" : "");
}

static int
show_gone(struct ctl *c, const char *corp)
{
    json_t *out = NULL;
    size_t i;

    if (c->kr == NULL && ctl_keyring(c) == NULL) {
        fprintf(stderr,
                "brokerctl: %s is no tenant; cancelled tenants are found "
                "through the index key\n",
                corp);
        return 1;
    }
    for (i = 0; i < c->cfg->nsuites && out == NULL; i++) {
        const char *s = c->cfg->suites[i].suite_id;

        if (c->suite == NULL || strcmp(c->suite, s) == 0)
            out = gone_json(c, s, corp);
    }
    if (out == NULL) {
        fprintf(stderr, "brokerctl: %s is not a tenant%s\n", corp,
                c->suite ? " of that suite" : "");
        return 1;
    }
    if (c->json) {
        ctl_print_json(out);
    } else {
        char w[64];

        ctl_when(json_integer_value(json_object_get(out, "purged_at")), w,
                 sizeof(w));
        printf("corpid:          %s\nsuite:           %s\n"
               "status:          cancelled (purged %s)\n"
               "keys removed:    ",
               corp, ctl_str_of(out, "suite_id", ""), w);
        print_report(json_object_get(out, "deletion_report"));
    }
    json_decref(out);
    return 0;
}

static int
tenant_show(struct ctl *c, const char *corp)
{
    const char *found[16];
    char key[KEYS_MAX], tok[KEYS_MAX];
    json_t *h, *t;
    redisReply *r;
    size_t n;
    long long valid = 0;

    n = ctl_suites_of(c, corp, found, nitems(found));
    if (n == 0)
        return show_gone(c, corp);
    if (n > 1)
        return ctl_usage("%s installed several suites; give --suite", corp);
    if (keys_tenant(key, sizeof(key), c->cfg->key_prefix, corp, found[0]) ||
        keys_tenant_sub(tok, sizeof(tok), c->cfg->key_prefix, corp, found[0],
                        "token"))
        return 1;
    h = ctl_hgetall(c, key);
    if (h == NULL)
        return 1;
    t = tenant_json(found[0], corp, h, 1);
    r = ctl_cmd(c, "HGET %s exp", tok);
    if (r != NULL && r->type == REDIS_REPLY_STRING)
        valid = strtoll(r->str, NULL, 10) / 1000;
    if (r != NULL)
        freeReplyObject(r);
    json_object_set_new(t, "token_valid_until",
                        valid ? json_integer(valid) : json_null());
    if (c->json) {
        ctl_print_json(t);
    } else {
        char a[64], u[64], tv[64], *priv, *vis;
        json_t *p;
        size_t i;

        ctl_when(json_integer_value(json_object_get(t, "authorized_at")), a,
                 sizeof(a));
        ctl_when(json_integer_value(json_object_get(t, "updated_at")), u,
                 sizeof(u));
        ctl_when(valid, tv, sizeof(tv));
        vis = json_dumps(json_object_get(t, "visible"), JSON_COMPACT);
        priv = json_dumps(json_object_get(t, "privilege"), JSON_COMPACT);
        printf("corpid:        %s\nname:          ", corp);
        ctl_sanitize(stdout, ctl_str_of(t, "corp_name", ""));
        printf("\nsuite:         %s\n"
               "status:        %s\nlevel:         %lld\n"
               "authorized:    %s\nupdated:       %s\n"
               "visible:       %s\nprivilege:     %s\n"
               "directory:     %lld users, %lld departments, %lld tags\n"
               "token valid:   %s\nsources:       third_party_app\n"
               "admins:        %zu\n"
               "permissions:\n",
               found[0], ctl_str_of(t, "status", ""),
               (long long)json_integer_value(json_object_get(t, "level")), a, u,
               vis ? vis : "", priv ? priv : "", ctl_num_of(h, "dir_users"),
               ctl_num_of(h, "dir_departments"), ctl_num_of(h, "dir_tags"),
               valid ? tv : "none cached",
               json_array_size(json_object_get(t, "admins")));
        json_array_foreach(json_object_get(t, "permissions"), i, p)
        {
            long long exp =
                json_integer_value(json_object_get(p, "expires_at"));
            char e[64];

            ctl_when(exp, e, sizeof(e));
            printf("  %-36s expires %s\n",
                   json_string_value(json_object_get(p, "name")),
                   exp ? e : "never");
        }
        free(vis); /* from jansson */
        free(priv);
    }
    json_decref(t);
    json_decref(h);
    return 0;
}

/*---- tenant purge ----*/

/* The deletion report's kinds, as the worker counts them (purge.h). */
enum { PK_DATA_KEY = 0, PK_TOKEN = 2, PK_COUNT = PURGE_KINDS };

/* SCAN + UNLINK of every key matching pattern, counted by kind. */
static int
unlink_matching(struct ctl *c, const char *pattern, long long *counts)
{
    char cursor[32] = "0";
    const char **argv = NULL;
    redisReply *r, *keys;
    size_t i;
    int rc = 1;

    do {
        r = ctl_cmd(c, "SCAN %s MATCH %s COUNT 1000", cursor, pattern);
        if (r == NULL)
            return 1;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "brokerctl: unexpected SCAN reply\n");
            goto out;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        keys = r->element[1];
        if (keys->elements > 0) {
            redisReply *u;

            argv = ctl_xmalloc((keys->elements + 1) * sizeof(*argv));
            argv[0] = "UNLINK";
            for (i = 0; i < keys->elements; i++) {
                argv[i + 1] = keys->element[i]->str;
                counts[purge_kind_of(keys->element[i]->str)]++;
            }
            u = ctl_cmd_argv(c, (int)keys->elements + 1, argv);
            brk_free(argv);
            argv = NULL;
            if (u == NULL)
                goto out;
            freeReplyObject(u);
        }
        freeReplyObject(r);
        r = NULL;
    } while (strcmp(cursor, "0") != 0);
    rc = 0;
out:
    if (r != NULL)
        freeReplyObject(r);
    return rc;
}

/* Where (suite, corp) still has something: a record, an index entry or a
 * data key (a purge interrupted half-way leaves the last two). */
static int
has_remains(struct ctl *c, const char *suite, const char *corp)
{
    char key[KEYS_MAX], idx[KEYS_MAX], dk[KEYS_MAX], member[200];
    redisReply *r;
    int yes = 0;

    if (keys_tenant(key, sizeof(key), c->cfg->key_prefix, corp, suite) ||
        keys_tenants(idx, sizeof(idx), c->cfg->key_prefix) ||
        keys_tenant_sub(dk, sizeof(dk), c->cfg->key_prefix, corp, suite, "dk"))
        return 0;
    snprintf(member, sizeof(member), "%s %s", suite, corp);
    /* the tenant's slot, then the index's */
    r = ctl_cmd(c, "EVAL %s 2 %s %s", scripts_text(SCRIPT_TENANT_EXISTS), key,
                dk);
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        yes = r->integer > 0;
    if (r != NULL)
        freeReplyObject(r);
    r = yes ? NULL : ctl_cmd(c, "SISMEMBER %s %s", idx, member);
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        yes = r->integer > 0;
    if (r != NULL)
        freeReplyObject(r);
    return yes;
}

static void
audit_purge(struct ctl *c, const char *suite, const char *corp, const char *now)
{
    char key[KEYS_MAX], maxlen[24];
    redisReply *r;

    snprintf(key, sizeof(key), "%saudit", c->cfg->key_prefix);
    snprintf(maxlen, sizeof(maxlen), "%lld", c->cfg->audit_max_len);
    r = ctl_cmd(c,
                "XADD %s MAXLEN ~ %s * type lifecycle event purged suite %s "
                "corpid %s at %s result purged source brokerctl",
                key, maxlen, suite, corp, now);
    if (r != NULL)
        freeReplyObject(r);
}

static void
print_purge(json_t *o)
{
    char w[64];

    ctl_utc(json_integer_value(json_object_get(o, "purged_at")), w, sizeof(w));
    printf("purged tenant %s of suite %s at %s\nkeys removed: ",
           ctl_str_of(o, "corpid", ""), ctl_str_of(o, "suite_id", ""), w);
    print_report(json_object_get(o, "deletion_report"));
    printf("AOF rewrite: %s\n"
           "Events WeCom sent before now are dropped; only a new "
           "create_auth installs the corp again.\n"
           "`brokerctl tenant show %s` shows the deletion report.\n",
           ctl_str_of(o, "aof_rewrite", ""), ctl_str_of(o, "corpid", ""));
}

/*
 * The one suite of corp with something left to purge into *suite: 0, or
 * the exit status after saying why (several: a usage error; none: 1).
 */
static int
purge_suite(struct ctl *c, const char *corp, const char **suite)
{
    json_t *gone = NULL;
    size_t i, n = 0;

    for (i = 0; i < c->cfg->nsuites; i++) {
        const char *s = c->cfg->suites[i].suite_id;

        if ((c->suite == NULL || strcmp(c->suite, s) == 0) &&
            has_remains(c, s, corp)) {
            *suite = s;
            n++;
        }
    }
    if (n > 1)
        return ctl_usage("%s installed several suites; give --suite", corp);
    if (n == 1)
        return 0;
    for (i = 0; i < c->cfg->nsuites && gone == NULL; i++)
        if (c->suite == NULL ||
            strcmp(c->suite, c->cfg->suites[i].suite_id) == 0)
            gone = gone_json(c, c->cfg->suites[i].suite_id, corp);
    fprintf(stderr, "brokerctl: %s is not a tenant%s%s\n", corp,
            c->suite ? " of that suite" : "",
            gone ? " (it was purged already; see tenant show)" : "");
    json_decref(gone);
    return 1;
}

/* An integer reply's value added to *count; the reply freed. 0, or 1 when
 * there was none (Redis failed, said by ctl_cmd). */
static int
add_count(redisReply *r, long long *count)
{
    if (r == NULL)
        return 1;
    if (r->type == REDIS_REPLY_INTEGER)
        *count += r->integer;
    freeReplyObject(r);
    return 0;
}

/*
 * Delete every key of (suite, corp) after marking it gone, counting them
 * by kind into counts, and ask for an AOF rewrite (its answer into aof).
 * 0, or 1 after saying why.
 */
static int
purge_delete(struct ctl *c, const char *suite, const char *corp,
             const char *gone, long long counts[PK_COUNT], char *aof,
             size_t aoflen)
{
    char tkey[KEYS_MAX], dk[KEYS_MAX], pat[KEYS_MAX], btoks[KEYS_MAX];
    char now[24], ts[24];
    long long t = (long long)time(NULL), ets = 0, dn;
    const char *prefix = c->cfg->key_prefix;
    redisReply *r;

    if (keys_tenant(tkey, sizeof(tkey), prefix, corp, suite) ||
        keys_tenant_sub(dk, sizeof(dk), prefix, corp, suite, "dk") ||
        keys_tenant_sub(btoks, sizeof(btoks), prefix, corp, suite, "btoks") ||
        keys_tenant_pattern(pat, sizeof(pat), prefix, corp, suite))
        return 1;
    /* cancelled as of now, or as of the event that installed it when
     * WeCom's clock runs ahead of ours */
    r = ctl_cmd(c, "HGET %s event_ts", tkey);
    if (r == NULL)
        return 1;
    if (r->type == REDIS_REPLY_STRING)
        ets = strtoll(r->str, NULL, 10);
    freeReplyObject(r);
    snprintf(now, sizeof(now), "%lld", t);
    snprintf(ts, sizeof(ts), "%lld", ets > t ? ets : t);
    r = ctl_cmd(c, "EVAL %s 2 %s %s %s %s %s",
                scripts_text(SCRIPT_PURGE_MARK_GONE), gone, tkey, ts, now,
                suite);
    if (r == NULL)
        return 1;
    if (r->type == REDIS_REPLY_INTEGER && r->integer == -3) {
        fprintf(stderr,
                "brokerctl: %s was installed again meanwhile; "
                "run the purge again\n",
                corp);
        freeReplyObject(r);
        return 1;
    }
    freeReplyObject(r);
    /* the data key first: once it is gone, copies of the sealed values
     * (backups, an AOF not yet rewritten) are unreadable */
    if (add_count(ctl_cmd(c, "UNLINK %s", dk), &counts[PK_DATA_KEY]) ||
        add_count(ctl_cmd(c, "EVAL %s 1 %s %s",
                          scripts_text(SCRIPT_PURGE_BROKER_TOKENS), btoks,
                          prefix),
                  &counts[PK_TOKEN]) ||
        unlink_matching(c, pat, counts) != 0)
        return 1;
    /* the corp's budget counters (counts only) */
    if (keys_budget_pattern(pat, sizeof(pat), prefix, corp) ||
        unlink_matching(c, pat, counts) != 0)
        return 1;
    /* its pending deliveries and dead letters, for every service */
    dn = ctl_deliveries_purge(c, suite, corp);
    if (dn < 0)
        return 1;
    counts[PK_COUNT - 1] += dn;
    /* "already in progress" is fine: that rewrite, or the next, drops the
     * values */
    r = redisCommand(c->rc, "BGREWRITEAOF");
    if (r == NULL) {
        fprintf(stderr, "brokerctl: Redis: %s\n", c->rc->errstr);
        return 1;
    }
    snprintf(aof, aoflen, "%s",
             r->type == REDIS_REPLY_ERROR ? r->str : "started");
    if (r->type == REDIS_REPLY_STATUS && strstr(r->str, "scheduled"))
        snprintf(aof, aoflen, "scheduled");
    freeReplyObject(r);
    return 0;
}

/* The tenant out of the index, the deletion report stored (it marks the
 * purge done) and every instance told. 0, or 1 (said by ctl_cmd). */
static int
purge_finish(struct ctl *c, const char *suite, const char *corp,
             const char *gone, const long long counts[PK_COUNT])
{
    char idx[KEYS_MAX], chan[KEYS_MAX], member[200], report[512];
    size_t i, o = 0;
    redisReply *r;

    if (keys_tenants(idx, sizeof(idx), c->cfg->key_prefix) ||
        ctl_inval_channel(c, chan, sizeof(chan)))
        return 1;
    report[o++] = '{';
    for (i = 0; i < PK_COUNT; i++)
        o += (size_t)snprintf(report + o, sizeof(report) - o, "%s\"%s\":%lld",
                              i ? "," : "", purge_kind_names[i], counts[i]);
    snprintf(report + o, sizeof(report) - o, "}");
    snprintf(member, sizeof(member), "%s %s", suite, corp);
    /* the index (its own slot) first; the report marks the purge done */
    r = ctl_cmd(c, "SREM %s %s", idx, member);
    if (r == NULL)
        return 1;
    freeReplyObject(r);
    r = ctl_cmd(c, "EVAL %s 1 %s %s", scripts_text(SCRIPT_PURGE_REPORT), gone,
                report);
    if (r == NULL)
        return 1;
    freeReplyObject(r);
    r = ctl_cmd(c, "PUBLISH %s %s", chan, member);
    if (r == NULL)
        return 1;
    freeReplyObject(r);
    return 0;
}

static int
tenant_purge(struct ctl *c, const char *corp)
{
    const char *suite = NULL;
    char gone[KEYS_MAX], aof[160], now[24];
    long long counts[PK_COUNT] = {0};
    json_t *out;
    int rc;

    if (ctl_keyring(c) == NULL)
        return 1;
    rc = purge_suite(c, corp, &suite);
    if (rc != 0)
        return rc;
    if (gone_key(c, suite, corp, gone, sizeof(gone)) ||
        purge_delete(c, suite, corp, gone, counts, aof, sizeof(aof)) ||
        purge_finish(c, suite, corp, gone, counts))
        return 1;
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    audit_purge(c, suite, corp, now);
    out = gone_json(c, suite, corp);
    if (out == NULL)
        return 1;
    json_object_set_new(out, "aof_rewrite", json_string(aof));
    if (c->json)
        ctl_print_json(out);
    else
        print_purge(out);
    json_decref(out);
    return 0;
}

/* tenant show CORPID | tenant purge CORPID --yes */
int
ctl_tenant(struct ctl *c, int argc, char **argv)
{
    int yes = 0, i, n = 0;
    char *args[2];

    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--yes") == 0)
            yes = 1;
        else if (n < 2)
            args[n++] = argv[i];
        else
            return ctl_usage("too many arguments");
    }
    if (n != 2 ||
        (strcmp(args[0], "show") != 0 && strcmp(args[0], "purge") != 0))
        return ctl_usage("tenant takes show CORPID or purge CORPID --yes");
    if (!keys_id_ok(args[1]))
        return ctl_usage("%s is not a corpid", args[1]);
    if (strcmp(args[0], "show") == 0) {
        if (yes)
            return ctl_usage("tenant show takes no --yes");
        return tenant_show(c, args[1]);
    }
    if (!yes)
        return ctl_usage("tenant purge deletes everything of %s; nothing "
                         "done without --yes",
                         args[1]);
    return tenant_purge(c, args[1]);
}

/*---- suite ----*/

static long long
count_of(struct ctl *c, const char *fmt, const char *key)
{
    redisReply *r = ctl_cmd(c, fmt, key);
    long long v = 0;

    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    if (r != NULL)
        freeReplyObject(r);
    return v;
}

/* suite: per configured suite, ticket, suite token, queue, dead letters,
 * lost authorizations. */
int
ctl_suite(struct ctl *c, int argc, char **argv)
{
    static const char *const heads[] = {
        "SUITE",  "TICKET", "SUITE TOKEN VALID UNTIL",
        "QUEUED", "DEAD",   "LOST AUTHORIZATIONS"};
    struct ctl_table *tb = NULL;
    json_t *arr = json_array(), *tk = NULL, *lost = NULL, *o;
    char key[KEYS_MAX], ev[KEYS_MAX], dead[KEYS_MAX], tok[KEYS_MAX];
    char rk[KEYS_MAX], lk[KEYS_MAX], age[64], valid[64], lostat[64], q[24],
        d[24];
    char la[128];
    const char *row[6];
    long long ts, queued, dl, exp, nlost;
    redisReply *r;
    size_t i;
    int rc = 1;

    (void)argv;
    if (argc != 0) {
        json_decref(arr);
        return ctl_usage("suite takes no arguments");
    }
    tb = ctl_table_new(6, heads);
    for (i = 0; i < c->cfg->nsuites; i++) {
        const char *id = c->cfg->suites[i].suite_id;

        if (c->suite != NULL && strcmp(c->suite, id) != 0)
            continue;
        if (keys_suite_ticket(key, sizeof(key), c->cfg->key_prefix, id) ||
            keys_suite_events(ev, sizeof(ev), c->cfg->key_prefix, id) ||
            keys_suite(dead, sizeof(dead), c->cfg->key_prefix, id, "dead") ||
            keys_suite(tok, sizeof(tok), c->cfg->key_prefix, id, "token") ||
            keys_suite(lk, sizeof(lk), c->cfg->key_prefix, id, "lost"))
            goto out;
        tk = ctl_hgetall(c, key);
        lost = ctl_hgetall(c, lk);
        if (tk == NULL || lost == NULL)
            goto out;
        ts = ctl_num_of(tk, "at");
        /* the suite stream, plus every tenant with a queue waiting */
        queued = count_of(c, "XLEN %s", ev);
        if (keys_suite(rk, sizeof(rk), c->cfg->key_prefix, id, "ready"))
            goto out;
        queued += count_of(c, "ZCARD %s", rk);
        dl = count_of(c, "XLEN %s", dead);
        nlost = ctl_num_of(lost, "count");
        r = ctl_cmd(c, "HGET %s exp", tok);
        exp = r && r->type == REDIS_REPLY_STRING
                  ? strtoll(r->str, NULL, 10) / 1000
                  : 0;
        if (r != NULL)
            freeReplyObject(r);
        o = json_pack("{s:s, s:o, s:o, s:I, s:I, s:I}", "suite_id", id,
                      "ticket_received_at", ts ? json_integer(ts) : json_null(),
                      "suite_token_valid_until",
                      exp ? json_integer(exp) : json_null(), "events_queued",
                      (json_int_t)queued, "dead_letters", (json_int_t)dl,
                      "lost_authorizations", (json_int_t)nlost);
        json_array_append_new(arr, o);
        ctl_when(ts, age, sizeof(age));
        ctl_when(exp, valid, sizeof(valid));
        ctl_when(ctl_num_of(lost, "last_at"), lostat, sizeof(lostat));
        snprintf(q, sizeof(q), "%lld", queued);
        snprintf(d, sizeof(d), "%lld", dl);
        snprintf(la, sizeof(la), "%lld%s%s", nlost, nlost ? ", last " : "",
                 nlost ? lostat : "");
        row[0] = id;
        row[1] = ts ? age : "none (expired or never)";
        row[2] = exp ? valid : "none";
        row[3] = q;
        row[4] = d;
        row[5] = la;
        ctl_table_add(tb, row);
        json_decref(tk);
        json_decref(lost);
        tk = lost = NULL;
    }
    if (c->json)
        ctl_print_json(arr);
    else
        ctl_table_print(tb, stdout);
    rc = 0;
out:
    json_decref(tk);
    json_decref(lost);
    json_decref(arr);
    ctl_table_free(tb);
    return rc;
}
