/*
 * brokerctl key list|rotate|rewrap|destroy: master key versions and the
 * data keys they wrap. Data keys live at <prefix>{SUITE}:dk (wrapped for
 * "suite:SUITE"), <prefix>{CORP}:SUITE:dk ("tenant:SUITE:CORP") and
 * <prefix>svc:{ID}:dk ("service:ID", sealing delivery keys); a
 * wrapped key reads "k<VERSION>.<base64>". Re-wrapping changes only the
 * wrapping: the data key, and every value sealed under it, stay.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyring.h"
#include "keys.h"
#include "scripts.h"

#include "ctl.h"

/* Called for each data key with its wrapped text; nonzero stops. */
typedef int dk_visit(struct ctl *c, const char *key, const char *wrapped,
                     void *arg);

/* "<prefix>*:dk" with the prefix's glob characters escaped. */
static int
dk_pattern(struct ctl *c, char *buf, size_t len)
{
    const char *p = c->cfg->key_prefix;
    size_t o = 0;

    for (; *p != '\0'; p++) {
        if (o + 2 >= len)
            return -1;
        if (strchr("*?[]\\", *p) != NULL)
            buf[o++] = '\\';
        buf[o++] = *p;
    }
    if (o + 5 >= len)
        return -1;
    memcpy(buf + o, "*:dk", 5);
    return 0;
}

/*
 * The wrapping context of a data key from its name, as broker/suites.c
 * and broker/worker.c wrap them: "{SUITE}:dk" -> "suite:SUITE",
 * "{CORP}:SUITE:dk" -> "tenant:SUITE:CORP". -1 for any other key.
 */
static int
dk_context(struct ctl *c, const char *key, char *ctx, size_t len)
{
    size_t plen = strlen(c->cfg->key_prefix);
    const char *p = key + plen, *close, *colon;
    char owner[80], suite[80];
    size_t n;

    if (strncmp(key, c->cfg->key_prefix, plen) != 0)
        return -1;
    if (strncmp(p, "svc:{", 5) == 0) {
        /* a service's: "svc:{ID}:dk" -> "service:ID" (delivery_def.h) */
        close = strchr(p + 5, '}');
        if (close == NULL || strcmp(close, "}:dk") != 0 ||
            (n = (size_t)(close - p - 5)) == 0 || n >= sizeof(owner))
            return -1;
        memcpy(owner, p + 5, n);
        owner[n] = '\0';
        if (!keys_id_ok(owner))
            return -1;
        return snprintf(ctx, len, "service:%s", owner) >= (int)len ? -1 : 0;
    }
    if (*p != '{')
        return -1;
    close = strchr(p, '}');
    if (close == NULL || (n = (size_t)(close - p - 1)) == 0 ||
        n >= sizeof(owner))
        return -1;
    memcpy(owner, p + 1, n);
    owner[n] = '\0';
    if (!keys_id_ok(owner))
        return -1;
    if (strcmp(close, "}:dk") == 0)
        return snprintf(ctx, len, "suite:%s", owner) >= (int)len ? -1 : 0;
    if (close[1] != ':')
        return -1;
    colon = strchr(close + 2, ':');
    if (colon == NULL || strcmp(colon, ":dk") != 0 ||
        (n = (size_t)(colon - close - 2)) == 0 || n >= sizeof(suite))
        return -1;
    memcpy(suite, close + 2, n);
    suite[n] = '\0';
    if (!keys_id_ok(suite))
        return -1;
    return snprintf(ctx, len, "tenant:%s:%s", suite, owner) >= (int)len ? -1
                                                                        : 0;
}

/* SCAN every data key and call visit with its value. 0, or 1 after
 * printing why. */
static int
dk_scan(struct ctl *c, dk_visit *visit, void *arg)
{
    char cursor[32] = "0", pattern[KEYS_MAX];
    redisReply *r = NULL, *v;
    size_t i;
    int rc = 1;

    if (dk_pattern(c, pattern, sizeof(pattern)) != 0)
        return 1;
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
        for (i = 0; i < r->element[1]->elements; i++) {
            const char *key = r->element[1]->element[i]->str;

            v = redisCommand(c->rc, "GET %s", key);
            if (v == NULL) {
                fprintf(stderr, "brokerctl: Redis: %s\n", c->rc->errstr);
                goto out;
            }
            /* deleted meanwhile (nil) or not a string: not a data key */
            if (v->type == REDIS_REPLY_STRING && visit(c, key, v->str, arg)) {
                freeReplyObject(v);
                goto out;
            }
            freeReplyObject(v);
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

/*---- list ----*/

struct usage_count {
    json_t *by_version; /* "V" -> count */
    long long unreadable;
};

static int
count_version(struct ctl *c, const char *key, const char *wrapped, void *arg)
{
    struct usage_count *u = arg;
    unsigned v;
    char k[16];
    json_t *n;

    (void)c;
    if (keyring_wrapped_version(wrapped, &v) != BRK_OK) {
        fprintf(stderr, "brokerctl: %s does not hold a wrapped key\n", key);
        u->unreadable++;
        return 0;
    }
    snprintf(k, sizeof(k), "%u", v);
    n = json_object_get(u->by_version, k);
    json_object_set_new(u->by_version, k,
                        json_integer(n ? json_integer_value(n) + 1 : 1));
    return 0;
}

/* Data keys per version (JSON object, new reference), or NULL. */
static json_t *
usage_by_version(struct ctl *c)
{
    struct usage_count u = {json_object(), 0};

    if (dk_scan(c, count_version, &u) != 0) {
        json_decref(u.by_version);
        return NULL;
    }
    return u.by_version;
}

static int
key_list(struct ctl *c, struct keyring *kr)
{
    static const char *const heads[] = {"VERSION", "CURRENT", "DATA KEYS",
                                        "NOTE"};
    struct ctl_table *t;
    json_t *used = usage_by_version(c), *arr, *n;
    const char *k, *row[4];
    char ver[16], cnt[24];
    unsigned cur = keyring_current_version(kr), v;
    size_t i;

    if (used == NULL)
        return 1;
    arr = json_array();
    for (i = 0; i < keyring_version_count(kr); i++) {
        v = keyring_version_at(kr, i);
        snprintf(ver, sizeof(ver), "%u", v);
        n = json_object_get(used, ver);
        json_array_append_new(
            arr, json_pack("{s:I, s:b, s:b, s:I}", "version", (json_int_t)v,
                           "in_file", 1, "current", v == cur, "data_keys",
                           (json_int_t)(n ? json_integer_value(n) : 0)));
    }
    /* versions that data keys name but the file lacks: those are lost */
    json_object_foreach(used, k, n)
    {
        v = (unsigned)strtoul(k, NULL, 10);
        if (!keyring_has_version(kr, v))
            json_array_append_new(
                arr, json_pack("{s:I, s:b, s:b, s:I}", "version", (json_int_t)v,
                               "in_file", 0, "current", 0, "data_keys",
                               (json_int_t)json_integer_value(n)));
    }
    if (c->json) {
        json_t *o =
            json_pack("{s:s, s:I, s:O}", "file", c->cfg->master_key_file,
                      "current", (json_int_t)cur, "versions", arr);

        ctl_print_json(o);
        json_decref(o);
    } else {
        printf("master key file: %s\n\n", c->cfg->master_key_file);
        t = ctl_table_new(4, heads);
        json_array_foreach(arr, i, n)
        {
            snprintf(
                ver, sizeof(ver), "%lld",
                (long long)json_integer_value(json_object_get(n, "version")));
            snprintf(
                cnt, sizeof(cnt), "%lld",
                (long long)json_integer_value(json_object_get(n, "data_keys")));
            row[0] = ver;
            row[1] = json_is_true(json_object_get(n, "current")) ? "yes" : "";
            row[2] = cnt;
            if (!json_is_true(json_object_get(n, "in_file")))
                row[3] = "not in the file: these data keys cannot be "
                         "opened";
            else if (json_is_true(json_object_get(n, "current")))
                row[3] = "wraps new data keys";
            else if (json_integer_value(json_object_get(n, "data_keys")))
                row[3] = "in use: `key rewrap` before destroying it";
            else
                row[3] = "unused: can be destroyed";
            ctl_table_add(t, row);
        }
        ctl_table_print(t, stdout);
        ctl_table_free(t);
    }
    json_decref(arr);
    json_decref(used);
    return 0;
}

/*---- rewrap ----*/

struct rewrap {
    const struct keyring *kr;
    long long rewrapped, current, skipped, failed;
};

/* What holds key now (owned, brk_free), or NULL when it is gone; *err
 * set when Redis failed. */
static char *
value_of(struct ctl *c, const char *key, int *err)
{
    redisReply *r = ctl_cmd(c, "GET %s", key);
    char *v = NULL;

    *err = r == NULL;
    if (r != NULL && r->type == REDIS_REPLY_STRING)
        v = ctl_xstrdup(r->str);
    if (r != NULL)
        freeReplyObject(r);
    return v;
}

/*
 * Re-wrap one data key under the current version, replacing it only if it
 * did not change meanwhile (another rotation, a purge); a changed key is
 * read again, a deleted one left alone. Nonzero stops the scan (Redis
 * failed).
 */
static int
rewrap_one(struct ctl *c, const char *key, const char *wrapped, void *arg)
{
    struct rewrap *w = arg;
    char ctx[KEYS_MAX], *fresh = NULL, *cur = ctl_xstrdup(wrapped);
    redisReply *r;
    unsigned v;
    int tries, err = 0, done = 0;

    for (tries = 0; !done && cur != NULL; tries++) {
        if (keyring_wrapped_version(cur, &v) == BRK_OK &&
            v == keyring_current_version(w->kr)) {
            w->current++;
            break;
        }
        if (dk_context(c, key, ctx, sizeof(ctx)) != 0) {
            fprintf(stderr,
                    "brokerctl: %s: not a suite's or a tenant's "
                    "data key; left as it is\n",
                    key);
            w->skipped++;
            break;
        }
        if (tries == 3 || keyring_rewrap(w->kr, cur, ctx, &fresh) != BRK_OK) {
            fprintf(stderr, "brokerctl: %s: %s\n", key,
                    tries == 3 ? "keeps changing; run the command again"
                               : "does not unwrap with the key file (its "
                                 "version is missing or was replaced)");
            w->failed++;
            break;
        }
        r = ctl_cmd(c, "EVAL %s 1 %s %s %s", scripts_text(SCRIPT_KEY_SWAP), key,
                    cur, fresh);
        brk_free(fresh);
        fresh = NULL;
        if (r == NULL) {
            err = 1;
            break;
        }
        if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
            w->rewrapped++;
            done = 1;
        }
        freeReplyObject(r);
        if (!done) {
            brk_free(cur);
            cur = value_of(c, key, &err);
            if (err)
                break;
        }
    }
    brk_free(cur);
    return err;
}

/* Re-wrap every data key under kr's current version; counts into w. */
static int
rewrap_all(struct ctl *c, struct rewrap *w)
{
    return dk_scan(c, rewrap_one, w);
}

static json_t *
rewrap_json(const struct rewrap *w)
{
    return json_pack("{s:I, s:I, s:I, s:I}", "rewrapped",
                     (json_int_t)w->rewrapped, "already_current",
                     (json_int_t)w->current, "skipped", (json_int_t)w->skipped,
                     "failed", (json_int_t)w->failed);
}

static void
print_rewrap(const struct rewrap *w, unsigned version)
{
    printf("%lld data key%s re-wrapped under version %u (%lld already "
           "were%s%s)\n",
           w->rewrapped, w->rewrapped == 1 ? "" : "s", version, w->current,
           w->skipped ? ", some skipped" : "",
           w->failed ? ", some FAILED: see above" : "");
}

static void
print_sighup(struct ctl *c)
{
    printf("Deploy %s to every broker instance and send each SIGHUP\n"
           "(kill -HUP PID): an instance reads the key file only at start "
           "and on SIGHUP.\n",
           c->cfg->master_key_file);
}

/* key rotate [--add-only] */
static int
key_rotate(struct ctl *c, int add_only)
{
    struct brk_errinfo info = {"", 0, -1};
    struct rewrap w;
    struct keyring *kr = NULL;
    unsigned v = 0;
    json_t *o;
    int rc = 1;

    memset(&w, 0, sizeof(w));
    if (ctl_keyring(c) == NULL)
        return 1;
    if (keyring_file_add_version(c->cfg->master_key_file, &v, &info) !=
        BRK_OK) {
        fprintf(stderr, "brokerctl: %s\n", info.msg);
        return 1;
    }
    if (keyring_load(c->cfg->master_key_file, c->cfg->index_key_file, 0, &kr,
                     NULL, NULL, &info) != BRK_OK) {
        fprintf(stderr,
                "brokerctl: version %u added, but the file does not "
                "load again: %s\n",
                v, info.msg);
        return 1;
    }
    w.kr = kr;
    if (!add_only && rewrap_all(c, &w) != 0)
        goto out;
    if (c->json) {
        o = add_only ? json_object() : rewrap_json(&w);
        json_object_set_new(o, "version", json_integer(v));
        json_object_set_new(o, "file", json_string(c->cfg->master_key_file));
        ctl_print_json(o);
        json_decref(o);
    } else {
        printf("master key version %u added to %s\n", v,
               c->cfg->master_key_file);
        if (add_only)
            printf("No data key re-wrapped yet: once every instance knows "
                   "version %u, run `brokerctl key rewrap`.\n",
                   v);
        else
            print_rewrap(&w, v);
        print_sighup(c);
    }
    rc = w.failed ? 1 : 0;
out:
    keyring_free(kr);
    return rc;
}

/* key rewrap */
static int
key_rewrap(struct ctl *c)
{
    struct rewrap w;
    json_t *o;

    memset(&w, 0, sizeof(w));
    w.kr = ctl_keyring(c);
    if (w.kr == NULL || rewrap_all(c, &w) != 0)
        return 1;
    if (c->json) {
        o = rewrap_json(&w);
        json_object_set_new(o, "version",
                            json_integer(keyring_current_version(w.kr)));
        ctl_print_json(o);
        json_decref(o);
    } else {
        print_rewrap(&w, keyring_current_version(w.kr));
    }
    return w.failed ? 1 : 0;
}

/*---- destroy ----*/

struct in_use {
    unsigned version;
    long long n;
    char example[KEYS_MAX];
};

static int
find_use(struct ctl *c, const char *key, const char *wrapped, void *arg)
{
    struct in_use *u = arg;
    unsigned v;

    (void)c;
    if (keyring_wrapped_version(wrapped, &v) == BRK_OK && v == u->version) {
        if (u->n++ == 0)
            snprintf(u->example, sizeof(u->example), "%s", key);
    }
    return 0;
}

/* A decimal version 1..KEYRING_VERSION_MAX, or 0. */
static unsigned
parse_version_arg(const char *s)
{
    char *end;
    unsigned long v;

    if (s[0] < '1' || s[0] > '9')
        return 0;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > KEYRING_VERSION_MAX)
        return 0;
    return (unsigned)v;
}

/* key destroy VERSION --yes */
static int
key_destroy(struct ctl *c, unsigned version)
{
    struct brk_errinfo info = {"", 0, -1};
    struct in_use u;
    struct keyring *kr = ctl_keyring(c);
    json_t *o;

    if (kr == NULL)
        return 1;
    if (!keyring_has_version(kr, version)) {
        fprintf(stderr, "brokerctl: %s has no version %u\n",
                c->cfg->master_key_file, version);
        return 1;
    }
    if (version == keyring_current_version(kr)) {
        fprintf(stderr,
                "brokerctl: version %u is the current master key version%s; "
                "`brokerctl key rotate` first\n",
                version,
                keyring_version_count(kr) == 1 ? " and the only one" : "");
        return 1;
    }
    memset(&u, 0, sizeof(u));
    u.version = version;
    if (dk_scan(c, find_use, &u) != 0)
        return 1;
    if (u.n > 0) {
        fprintf(stderr,
                "brokerctl: %lld data key%s still wrapped with version %u "
                "(%s%s); run `brokerctl key rewrap` first\n",
                u.n, u.n == 1 ? " is" : "s are", version, u.example,
                u.n > 1 ? ", ..." : "");
        return 1;
    }
    if (keyring_file_remove_version(c->cfg->master_key_file, version, &info) !=
        BRK_OK) {
        fprintf(stderr, "brokerctl: %s\n", info.msg);
        return 1;
    }
    if (c->json) {
        o = json_pack("{s:I, s:s, s:I}", "destroyed", (json_int_t)version,
                      "file", c->cfg->master_key_file, "current",
                      (json_int_t)keyring_current_version(kr));
        ctl_print_json(o);
        json_decref(o);
    } else {
        printf("master key version %u removed from %s; backups whose data "
               "keys it wrapped can no longer be read.\n",
               version, c->cfg->master_key_file);
        print_sighup(c);
    }
    return 0;
}

/* key list | rotate [--add-only] | rewrap | destroy VERSION --yes */
int
ctl_key(struct ctl *c, int argc, char **argv)
{
    struct keyring *kr;
    unsigned v;
    int i, yes = 0, add_only = 0, n = 0;
    char *args[2];

    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--yes") == 0)
            yes = 1;
        else if (strcmp(argv[i], "--add-only") == 0)
            add_only = 1;
        else if (n < 2)
            args[n++] = argv[i];
        else
            return ctl_usage("too many arguments");
    }
    if (n == 0)
        return ctl_usage("key takes list, rotate, rewrap or destroy");
    if (strcmp(args[0], "destroy") == 0) {
        if (n != 2 || add_only)
            return ctl_usage("key destroy takes VERSION --yes");
        v = parse_version_arg(args[1]);
        if (v == 0)
            return ctl_usage("%s is not a key version (1..%u)", args[1],
                             KEYRING_VERSION_MAX);
        if (!yes)
            return ctl_usage("key destroy makes data wrapped with version "
                             "%u unreadable; nothing done without --yes",
                             v);
        return key_destroy(c, v);
    }
    if (n != 1 || yes || (add_only && strcmp(args[0], "rotate") != 0))
        return ctl_usage("unexpected arguments to key %s", args[0]);
    if (strcmp(args[0], "rotate") == 0)
        return key_rotate(c, add_only);
    if (strcmp(args[0], "rewrap") == 0)
        return key_rewrap(c);
    if (strcmp(args[0], "list") == 0) {
        kr = ctl_keyring(c);
        return kr == NULL ? 1 : key_list(c, kr);
    }
    return ctl_usage("key takes list, rotate, rewrap or destroy");
}
