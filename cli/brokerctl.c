/*
 * brokerctl: the operator's view of the broker's Redis. Each command
 * prints an aligned table for people, or JSON with --json for scripts.
 * Exit status: 0 ok, 1 failure, 2 usage error.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "config.h"
#include "keyring.h"
#include "keys.h"
#include "scope_map.h"

#include "ctl.h"

struct command {
    const char *name;
    const char *args;
    const char *help;
    int (*run)(struct ctl *c, int argc, char **argv);
    /* 1: main neither loads the config nor connects to Redis; the command
     * loads what it needs itself (load_config) */
    int offline;
};

static const struct command commands[];

static void
usage(FILE *f)
{
    size_t i;

    fprintf(f,
            "usage: brokerctl [-c FILE | --redis URL] [--json] [--suite ID] "
            "COMMAND [ARGS]\n"
            "\n"
            "Inspect the broker's store.\n"
            "\n"
            "  -c FILE       broker configuration (default ./broker.conf):\n"
            "                Redis address, key prefix, suites, key files\n"
            "  --redis URL   Redis to use instead of the configured one\n"
            "  --json        print JSON for scripts\n"
            "  --suite ID    the suite, where a corp installed several\n"
            "\n"
            "Commands:\n");
    for (i = 0; commands[i].name != NULL; i++)
        fprintf(f, "  %-8s %-10s %s\n", commands[i].name, commands[i].args,
                commands[i].help);
    fprintf(f, "\nExit status: 0 ok, 1 failure, 2 usage error.\n");
}

/* Load the configuration (-c, default ./broker.conf); 0 or 1. */
static int
load_config(struct ctl *c)
{
    struct brk_errinfo info = {"", 0, -1};
    char msg[512];

    if (c->cfg != NULL)
        return 0;
    if (config_load(c->conf_path, &c->cfg, &info) != BRK_OK) {
        config_format_error(c->conf_path, &info, msg, sizeof(msg));
        fprintf(stderr, "brokerctl: %s\n", msg);
        return 1;
    }
    return 0;
}

/*---- Redis helpers ----*/

static int
connect_redis(struct ctl *c)
{
    struct config_redis u;
    struct timeval tv = {3, 0};
    char url[600];
    redisReply *r;
    int rc = -1;

    if (c->redis_url != NULL)
        snprintf(url, sizeof(url), "%s", c->redis_url);
    else if (c->cfg->redis[0] != '\0')
        snprintf(url, sizeof(url), "%s", c->cfg->redis);
    else
        snprintf(url, sizeof(url), "unix://%s/redis.sock",
                 c->cfg->state_dir);
    if (config_redis_parse(url, &u) != BRK_OK) {
        fprintf(stderr, "brokerctl: bad Redis URL\n");
        return -1;
    }
    c->rc = u.unix_path ? redisConnectUnixWithTimeout(u.unix_path, tv)
                        : redisConnectWithTimeout(u.host, u.port, tv);
    if (c->rc == NULL || c->rc->err) {
        fprintf(stderr, "brokerctl: cannot reach Redis (%s)%s\n",
                c->rc ? c->rc->errstr : "out of memory",
                c->cfg->redis[0] ? ""
                                 : "; with embedded Redis the broker must "
                                   "be running");
        goto out;
    }
    redisSetTimeout(c->rc, tv);
    if (u.password != NULL) {
        r = u.user ? redisCommand(c->rc, "AUTH %s %s", u.user, u.password)
                   : redisCommand(c->rc, "AUTH %s", u.password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "brokerctl: Redis AUTH failed\n");
            if (r)
                freeReplyObject(r);
            goto out;
        }
        freeReplyObject(r);
    }
    if (u.db != 0) {
        r = redisCommand(c->rc, "SELECT %ld", u.db);
        if (r != NULL)
            freeReplyObject(r);
    }
    rc = 0;
out:
    config_redis_clear(&u);
    return rc;
}

/* A command's reply, or NULL after printing why. */
redisReply *
ctl_cmd(struct ctl *c, const char *fmt, ...)
{
    va_list ap;
    redisReply *r;

    va_start(ap, fmt);
    r = redisvCommand(c->rc, fmt, ap);
    va_end(ap);
    if (r == NULL) {
        fprintf(stderr, "brokerctl: Redis: %s\n", c->rc->errstr);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "brokerctl: Redis: %s\n", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* HGETALL as a JSON object of strings (new reference) or NULL. */
json_t *
ctl_hgetall(struct ctl *c, const char *key)
{
    redisReply *r = ctl_cmd(c, "HGETALL %s", key);
    json_t *o;
    size_t i;

    if (r == NULL)
        return NULL;
    o = json_object();
    for (i = 0; i + 1 < r->elements; i += 2)
        json_object_set_new(o, r->element[i]->str,
                            json_stringn(r->element[i + 1]->str,
                                         r->element[i + 1]->len));
    freeReplyObject(r);
    return o;
}

const char *
ctl_str_of(const json_t *o, const char *k, const char *dflt)
{
    const char *v = json_string_value(json_object_get(o, k));

    return v ? v : dflt;
}

long long
ctl_num_of(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));

    return v ? strtoll(v, NULL, 10) : 0;
}

/* "3m ago (2026-11-29 05:00:00Z)" for people. */
void
ctl_when(long long t, char *buf, size_t len)
{
    struct tm tm;
    time_t tt = (time_t)t;
    long long ago = (long long)time(NULL) - t;
    char abs[32];

    if (t <= 0) {
        snprintf(buf, len, "-");
        return;
    }
    gmtime_r(&tt, &tm);
    strftime(abs, sizeof(abs), "%Y-%m-%d %H:%M:%SZ", &tm);
    long long d = ago < 0 ? -ago : ago;
    const char *pre = ago < 0 ? "in " : "", *post = ago < 0 ? "" : " ago";

    if (d < 120)
        snprintf(buf, len, "%s%llds%s (%s)", pre, d, post, abs);
    else if (d < 7200)
        snprintf(buf, len, "%s%lldm%s (%s)", pre, d / 60, post, abs);
    else if (d < 172800)
        snprintf(buf, len, "%s%lldh%s (%s)", pre, d / 3600, post, abs);
    else
        snprintf(buf, len, "%s%lldd%s (%s)", pre, d / 86400, post, abs);
}

void
ctl_print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT);

    printf("%s\n", s ? s : "null");
    free(s);
}

/* The visible range of a stored privilege JSON, as SPEC's "visible". */
static json_t *
visible_of(const json_t *priv)
{
    json_t *users = json_array(), *parties = json_array(),
           *tags = json_array();
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
    json_t *o, *names = json_array(), *v;
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

/*---- tenants ----*/

static int
cmd_tenants(struct ctl *c, int argc, char **argv)
{
    char idx[KEYS_MAX], key[KEYS_MAX], vis[64], a[64], u[64];
    redisReply *r;
    json_t *out = json_array(), *h, *t, *scopes;
    size_t i;

    (void)argv;
    if (argc != 0)
        return 2;
    if (keys_tenants(idx, sizeof(idx), c->cfg->key_prefix))
        return 1;
    r = ctl_cmd(c, "SMEMBERS %s", idx);
    if (r == NULL)
        return 1;
    for (i = 0; i < r->elements; i++) {
        char suite[80], corp[80];

        if (sscanf(r->element[i]->str, "%79s %79s", suite, corp) != 2)
            continue;
        if (c->suite != NULL && strcmp(c->suite, suite) != 0)
            continue;
        if (keys_tenant(key, sizeof(key), c->cfg->key_prefix, corp, suite))
            continue;
        h = ctl_hgetall(c, key);
        if (h == NULL)
            break;
        json_array_append_new(out, tenant_json(suite, corp, h, 0));
        json_decref(h);
    }
    freeReplyObject(r);
    if (c->json) {
        ctl_print_json(out);
    } else {
        printf("%-20s %-20s %-20s %-18s %-5s %-40s %-28s %-28s %s\n",
               "CORPID", "NAME", "SUITE", "STATUS", "LEVEL", "SCOPES",
               "VISIBLE", "AUTHORIZED", "UPDATED");
        json_array_foreach(out, i, t)
        {
            char sc[41] = "";
            size_t k, o = 0;
            json_t *s;

            scopes = json_object_get(t, "scopes");
            json_array_foreach(scopes, k, s)
                o += (size_t)snprintf(sc + o, o < sizeof(sc) ? sizeof(sc) - o
                                                             : 0,
                                      "%s%s", k ? "," : "",
                                      json_string_value(s));
            visible_summary(t, vis, sizeof(vis));
            ctl_when(json_integer_value(json_object_get(t, "authorized_at")), a,
                 sizeof(a));
            ctl_when(json_integer_value(json_object_get(t, "updated_at")), u,
                 sizeof(u));
            printf("%-20s %-20s %-20s %-18s %-5lld %-40s %-28s %-28s %s\n",
                   ctl_str_of(t, "corpid", ""), ctl_str_of(t, "corp_name", ""),
                   ctl_str_of(t, "suite_id", ""), ctl_str_of(t, "status", ""),
                   (long long)json_integer_value(json_object_get(t, "level")),
                   sc, vis, a, u);
        }
    }
    json_decref(out);
    return 0;
}

/*---- tenant show ----*/

/* The suites in which corp is a tenant. */
static size_t
suites_of(struct ctl *c, const char *corp, const char **found, size_t max)
{
    char key[KEYS_MAX];
    size_t i, n = 0;
    redisReply *r;

    for (i = 0; i < c->cfg->nsuites && n < max; i++) {
        const char *s = c->cfg->suites[i].suite_id;

        if (c->suite != NULL && strcmp(c->suite, s) != 0)
            continue;
        if (keys_tenant(key, sizeof(key), c->cfg->key_prefix, corp, s))
            continue;
        r = ctl_cmd(c, "EXISTS %s", key);
        if (r != NULL && r->integer == 1)
            found[n++] = s;
        if (r != NULL)
            freeReplyObject(r);
    }
    return n;
}

static int
show_gone(struct ctl *c, const char *corp)
{
    struct keyring *kr = NULL;
    struct brk_errinfo info;
    char h[65], key[KEYS_MAX];
    json_t *g = NULL, *report, *out;
    json_error_t jerr;
    size_t i;
    int rc = 1;

    if (keyring_load(c->cfg->master_key_file, c->cfg->index_key_file, 0, &kr,
                     NULL, NULL, &info) != BRK_OK) {
        fprintf(stderr,
                "brokerctl: %s is no tenant; cancelled tenants are found "
                "through the index key, which could not be read: %s\n",
                corp, info.msg);
        return 1;
    }
    for (i = 0; i < c->cfg->nsuites; i++) {
        const char *s = c->cfg->suites[i].suite_id;
        const char *parts[3] = {"gone", s, corp};

        if (c->suite != NULL && strcmp(c->suite, s) != 0)
            continue;
        keyring_index_hmac_parts(kr, parts, 3, h);
        if (keys_gone(key, sizeof(key), c->cfg->key_prefix, h))
            continue;
        g = ctl_hgetall(c, key);
        if (g != NULL && json_object_size(g) > 0) {
            report = json_loads(ctl_str_of(g, "report", "{}"), 0, &jerr);
            out = json_pack("{s:s, s:s, s:s, s:I, s:I, s:o}", "suite_id", s,
                            "corpid", corp, "status", "cancelled",
                            "cancelled_event_ts", (json_int_t)ctl_num_of(g, "ts"),
                            "purged_at", (json_int_t)ctl_num_of(g, "purged_at"),
                            "deletion_report",
                            report ? report : json_object());
            if (c->json) {
                ctl_print_json(out);
            } else {
                char w[64];

                ctl_when(ctl_num_of(g, "purged_at"), w, sizeof(w));
                printf("corpid:          %s\nsuite:           %s\n"
                       "status:          cancelled (purged %s)\n"
                       "keys removed:    %s\n",
                       corp, s, w, ctl_str_of(g, "report", "{}"));
            }
            json_decref(out);
            rc = 0;
        }
        json_decref(g);
        g = NULL;
        if (rc == 0)
            break;
    }
    if (rc != 0)
        fprintf(stderr, "brokerctl: %s is not a tenant%s\n", corp,
                c->suite ? " of that suite" : "");
    keyring_free(kr);
    return rc;
}

static int
cmd_tenant(struct ctl *c, int argc, char **argv)
{
    const char *found[16];
    char key[KEYS_MAX], tok[KEYS_MAX];
    json_t *h, *t;
    redisReply *r;
    size_t n;
    long long valid = 0;

    if (argc != 2 || strcmp(argv[0], "show") != 0)
        return 2;
    if (!keys_id_ok(argv[1])) {
        fprintf(stderr, "brokerctl: %s is not a corpid\n", argv[1]);
        return 2;
    }
    n = suites_of(c, argv[1], found, nitems(found));
    if (n == 0)
        return show_gone(c, argv[1]);
    if (n > 1) {
        fprintf(stderr,
                "brokerctl: %s installed several suites; give --suite\n",
                argv[1]);
        return 2;
    }
    if (keys_tenant(key, sizeof(key), c->cfg->key_prefix, argv[1],
                    found[0]) ||
        keys_tenant_sub(tok, sizeof(tok), c->cfg->key_prefix, argv[1],
                        found[0], "token"))
        return 1;
    h = ctl_hgetall(c, key);
    if (h == NULL)
        return 1;
    t = tenant_json(found[0], argv[1], h, 1);
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
        printf("corpid:        %s\nname:          %s\nsuite:         %s\n"
               "status:        %s\nlevel:         %lld\n"
               "authorized:    %s\nupdated:       %s\n"
               "visible:       %s\nprivilege:     %s\n"
               "directory:     %lld users, %lld departments, %lld tags\n"
               "token valid:   %s\nsources:       third_party_app\n"
               "permissions:\n",
               argv[1], ctl_str_of(t, "corp_name", ""), found[0],
               ctl_str_of(t, "status", ""),
               (long long)json_integer_value(json_object_get(t, "level")), a,
               u, vis ? vis : "", priv ? priv : "",
               (long long)ctl_num_of(h, "dir_users"),
               (long long)ctl_num_of(h, "dir_departments"),
               (long long)ctl_num_of(h, "dir_tags"), valid ? tv : "none cached");
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
        free(vis);
        free(priv);
    }
    json_decref(t);
    json_decref(h);
    return 0;
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

static int
cmd_suite(struct ctl *c, int argc, char **argv)
{
    json_t *arr = json_array(), *tk, *lost, *o;
    char key[KEYS_MAX], ev[KEYS_MAX], dead[KEYS_MAX], tok[KEYS_MAX];
    char lk[KEYS_MAX], age[64], valid[64], lostat[64];
    long long ts, queued, dl, exp;
    size_t i;

    (void)argv;
    if (argc != 0)
        return 2;
    if (!c->json)
        printf("%-24s %-32s %-32s %-8s %-6s %s\n", "SUITE", "TICKET",
               "SUITE TOKEN VALID UNTIL", "QUEUED", "DEAD",
               "LOST AUTHORIZATIONS");
    for (i = 0; i < c->cfg->nsuites; i++) {
        const char *id = c->cfg->suites[i].suite_id;

        if (keys_suite_ticket(key, sizeof(key), c->cfg->key_prefix, id) ||
            keys_suite_events(ev, sizeof(ev), c->cfg->key_prefix, id) ||
            keys_suite(dead, sizeof(dead), c->cfg->key_prefix, id, "dead") ||
            keys_suite(tok, sizeof(tok), c->cfg->key_prefix, id, "token") ||
            keys_suite(lk, sizeof(lk), c->cfg->key_prefix, id, "lost"))
            return 1;
        tk = ctl_hgetall(c, key);
        lost = ctl_hgetall(c, lk);
        if (tk == NULL || lost == NULL) {
            json_decref(tk);
            json_decref(lost);
            return 1;
        }
        ts = ctl_num_of(tk, "at");
        queued = count_of(c, "XLEN %s", ev);
        dl = count_of(c, "XLEN %s", dead);
        {
            redisReply *r = ctl_cmd(c, "HGET %s exp", tok);

            exp = r && r->type == REDIS_REPLY_STRING
                      ? strtoll(r->str, NULL, 10) / 1000
                      : 0;
            if (r != NULL)
                freeReplyObject(r);
        }
        o = json_pack("{s:s, s:o, s:o, s:I, s:I, s:I}", "suite_id", id,
                      "ticket_received_at",
                      ts ? json_integer(ts) : json_null(),
                      "suite_token_valid_until",
                      exp ? json_integer(exp) : json_null(),
                      "events_queued", (json_int_t)queued, "dead_letters",
                      (json_int_t)dl, "lost_authorizations",
                      (json_int_t)ctl_num_of(lost, "count"));
        if (c->json) {
            json_array_append_new(arr, o);
        } else {
            ctl_when(ts, age, sizeof(age));
            ctl_when(exp, valid, sizeof(valid));
            ctl_when(ctl_num_of(lost, "last_at"), lostat, sizeof(lostat));
            printf("%-24s %-32s %-32s %-8lld %-6lld %lld%s%s\n", id,
                   ts ? age : "none (expired or never)",
                   exp ? valid : "none", queued, dl,
                   (long long)ctl_num_of(lost, "count"),
                   ctl_num_of(lost, "count") ? ", last " : "",
                   ctl_num_of(lost, "count") ? lostat : "");
            json_decref(o);
        }
        json_decref(tk);
        json_decref(lost);
    }
    if (c->json)
        ctl_print_json(arr);
    json_decref(arr);
    return 0;
}

/*---- scopes ----*/

/* Distinct files the endpoints came from. */
static size_t
count_files(const struct scope_map *m)
{
    size_t i, k, n = 0;

    for (i = 0; i < scope_map_count(m); i++) {
        for (k = 0; k < i; k++)
            if (strcmp(scope_map_at(m, k)->file, scope_map_at(m, i)->file) ==
                0)
                break;
        n += k == i;
    }
    return n;
}

/* A directory of scope files, or one file. */
static enum brk_err
load_scopes(const char *path, struct scope_map **m, struct brk_errinfo *info)
{
    struct stat st;

    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        return scope_map_load_file(path, m, info);
    return scope_map_load(path, m, info);
}

static int
scopes_lint(struct ctl *c, const char *path)
{
    struct brk_errinfo info = {"", 0, -1};
    struct scope_map *m = NULL;
    json_t *o;

    if (load_scopes(path, &m, &info) != BRK_OK) {
        if (c->json) {
            o = json_pack("{s:b, s:s, s:s}", "ok", 0, "path", path, "error",
                          info.msg);
            ctl_print_json(o);
            json_decref(o);
        } else {
            fprintf(stderr, "%s\n", info.msg);
        }
        return 1;
    }
    if (c->json) {
        o = json_pack("{s:b, s:s, s:I, s:I}", "ok", 1, "path", path,
                      "endpoints", (json_int_t)scope_map_count(m), "files",
                      (json_int_t)count_files(m));
        ctl_print_json(o);
        json_decref(o);
    } else {
        printf("scopes OK: %zu endpoint%s in %zu file%s (%s)\n",
               scope_map_count(m), scope_map_count(m) == 1 ? "" : "s",
               count_files(m), count_files(m) == 1 ? "" : "s", path);
    }
    scope_map_free(m);
    return 0;
}

/* "userid*(member), cursor": * marks a required parameter. */
static void
params_summary(const struct scope_endpoint *e, char *buf, size_t len)
{
    size_t i, o = 0;
    int w;

    buf[0] = '\0';
    for (i = 0; i < e->nparams && o < len; i++) {
        const struct scope_param *p = &e->params[i];

        w = snprintf(buf + o, len - o, "%s%s%s%s%s%s", i ? ", " : "",
                     p->name, p->required ? "*" : "",
                     p->kind != SCOPE_P_PLAIN ? "(" : "",
                     p->kind != SCOPE_P_PLAIN ? scope_param_kind_name(p->kind)
                                              : "",
                     p->kind != SCOPE_P_PLAIN ? ")" : "");
        if (w < 0)
            break;
        o += (size_t)w;
    }
}

static int
scopes_list(struct ctl *c)
{
    struct brk_errinfo info = {"", 0, -1};
    struct scope_map *m = NULL;
    json_t *arr, *o, *ps;
    char params[256];
    size_t i, k;

    if (load_config(c) != 0)
        return 1;
    if (scope_map_load(c->cfg->scopes_dir, &m, &info) != BRK_OK) {
        fprintf(stderr, "%s\n", info.msg);
        return 1;
    }
    arr = json_array();
    if (!c->json)
        printf("%-46s %-6s %-28s %s\n", "PATH", "METHOD", "SCOPE",
               "PARAMETERS (* required, (subject) range-checked)");
    for (i = 0; i < scope_map_count(m); i++) {
        const struct scope_endpoint *e = scope_map_at(m, i);

        if (!c->json) {
            params_summary(e, params, sizeof(params));
            printf("%-46s %-6s %-28s %s\n", e->path, e->method,
                   scope_perm_name(e->scope), params);
            continue;
        }
        ps = json_array();
        for (k = 0; k < e->nparams; k++)
            json_array_append_new(
                ps, json_pack("{s:s, s:s, s:s, s:b}", "name",
                              e->params[k].name, "type",
                              scope_type_name(e->params[k].type), "subject",
                              scope_param_kind_name(e->params[k].kind),
                              "required", e->params[k].required));
        o = json_pack("{s:s, s:s, s:s, s:s, s:o}", "path", e->path, "method",
                      e->method, "scope", scope_perm_name(e->scope), "file",
                      e->file, "params", ps);
        json_array_append_new(arr, o);
    }
    if (c->json)
        ctl_print_json(arr);
    json_decref(arr);
    scope_map_free(m);
    return 0;
}

/* scopes lint [DIR|FILE] | scopes list: never touches Redis. */
static int
cmd_scopes(struct ctl *c, int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "lint") == 0 && argc <= 2) {
        if (argc == 2)
            return scopes_lint(c, argv[1]);
        if (load_config(c) != 0)
            return 1;
        return scopes_lint(c, c->cfg->scopes_dir);
    }
    if (argc == 1 && strcmp(argv[0], "list") == 0)
        return scopes_list(c);
    return 2;
}

static const struct command commands[] = {
    {"tenants", "", "list tenants (cancelled ones are not listed)",
     cmd_tenants, 0},
    {"tenant", "show CORPID",
     "one tenant: grant, range, directory, token validity", cmd_tenant,
     0},
    {"suite", "", "per suite: ticket age, suite token, queue, dead letters",
     cmd_suite, 0},
    {"service", "add|list|show|revoke|rotate",
     "manage the internal services allowed to call the API", ctl_service,
     0},
    {"scopes", "lint|list",
     "lint [DIR]: validate scope files; list: endpoints and scopes",
     cmd_scopes, 1},
    {NULL, NULL, NULL, NULL, 0},
};

int
main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"redis", required_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'},
        {"suite", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct ctl c;
    const struct command *cm = NULL;
    char *rest[8];
    int ch, rc = 1, nrest = 0, i;

    memset(&c, 0, sizeof(c));
    c.conf_path = "broker.conf";
    while ((ch = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c': c.conf_path = optarg; break;
        case 'r': c.redis_url = optarg; break;
        case 'j': c.json = 1; break;
        case 's': c.suite = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[optind], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (i = 0; commands[i].name != NULL; i++)
        if (strcmp(argv[optind], commands[i].name) == 0)
            cm = &commands[i];
    if (cm == NULL) {
        fprintf(stderr, "brokerctl: unknown command %s\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    /* options may also follow the command */
    for (optind++; optind < argc; optind++) {
        if (strcmp(argv[optind], "--json") == 0) {
            c.json = 1;
        } else if (strcmp(argv[optind], "--suite") == 0 &&
                   optind + 1 < argc) {
            c.suite = argv[++optind];
        } else if (nrest < (int)nitems(rest)) {
            rest[nrest++] = argv[optind];
        } else {
            fprintf(stderr, "brokerctl: too many arguments\n");
            return 2;
        }
    }
    if (cm->offline) {
        rc = cm->run(&c, nrest, rest);
        if (rc == 2)
            fprintf(stderr, "usage: brokerctl %s %s\n", cm->name, cm->args);
        config_free(c.cfg);
        return rc;
    }
    if (load_config(&c) != 0)
        return 1;
    if (c.suite != NULL && config_find_suite(c.cfg, c.suite) == NULL) {
        fprintf(stderr, "brokerctl: no [suite %s] in %s\n", c.suite,
                c.conf_path);
        config_free(c.cfg);
        return 2;
    }
    if (connect_redis(&c) == 0) {
        rc = cm->run(&c, nrest, rest);
        if (rc == 2)
            fprintf(stderr, "usage: brokerctl %s %s\n", cm->name, cm->args);
    }
    if (c.rc != NULL)
        redisFree(c.rc);
    config_free(c.cfg);
    return rc;
}
