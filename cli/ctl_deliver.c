/*
 * brokerctl service deliver and deliveries: where a service receives the
 * events it is allowed (SPEC §6b), and its queues. The callback token and
 * EncodingAESKey are generated here, printed once and stored sealed under
 * the service's own data key (<prefix>svc:{ID}:dk, wrapped by the master
 * key for "service:ID"), each bound to its field of the setting.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "delivery_def.h"
#include "keyring.h"
#include "keys.h"
#include "record.h"
#include "scripts.h"

#include "ctl.h"

/* The service's data key into dk, made (SET NX) when it has none. 0, or 1
 * after printing why. */
static int
service_dk(struct ctl *c, const struct delivery_keys *k, const char *id,
           unsigned char dk[KEYRING_KEY_LEN])
{
    struct keyring *kr = ctl_keyring(c);
    char ctx[80], *wrapped = NULL;
    redisReply *r;
    int tries, rc = 1;

    if (kr == NULL || delivery_dk_context(ctx, sizeof(ctx), id) != BRK_OK)
        return 1;
    for (tries = 0; tries < 2; tries++) {
        r = ctl_cmd(c, "GET %s", k->dk);
        if (r == NULL)
            return 1;
        if (r->type == REDIS_REPLY_STRING) {
            rc = keyring_unwrap(kr, r->str, ctx, dk, NULL) != BRK_OK;
            if (rc)
                fprintf(stderr, "brokerctl: the service's data key does not "
                                "open with these master keys\n");
            freeReplyObject(r);
            return rc;
        }
        freeReplyObject(r);
        if (keyring_dk_generate(dk) != BRK_OK ||
            keyring_wrap(kr, dk, ctx, &wrapped) != BRK_OK) {
            fprintf(stderr, "brokerctl: cannot make a data key\n");
            return 1;
        }
        r = ctl_cmd(c, "SET %s %s NX", k->dk, wrapped);
        brk_free(wrapped);
        wrapped = NULL;
        if (r == NULL)
            return 1;
        rc = r->type != REDIS_REPLY_STATUS;
        freeReplyObject(r);
        if (!rc)
            return 0;
        /* another brokerctl made one meanwhile: use it */
    }
    brk_wipe(dk, KEYRING_KEY_LEN);
    fprintf(stderr, "brokerctl: cannot store the service's data key\n");
    return 1;
}

/* The service's record, decoded as the broker reads it; NULL after
 * printing why. */
static struct record_service *
service_record(struct ctl *c, const char *id)
{
    struct record_service *s = NULL;
    char key[KEYS_MAX];
    redisReply *r;
    enum brk_err err;

    if (keys_service(key, sizeof(key), c->cfg->key_prefix, id, NULL))
        return NULL;
    r = ctl_cmd(c, "HGETALL %s", key);
    if (r == NULL)
        return NULL;
    err = record_service_decode(id, r, &s);
    freeReplyObject(r);
    if (err) {
        fprintf(stderr, "brokerctl: the service's record %s\n",
                err == BRK_ERR_NOTFOUND ? "is gone" : "does not decode");
        return NULL;
    }
    return s;
}

static int
deliver_usage(const char *msg)
{
    return ctl_usage("%s", msg);
}

/* What `service deliver` was asked to do. */
struct deliver_args {
    const char *name, *url, *events;
    int off, rotate;
};

/*
 * Parse and check the arguments into a; 0, or the exit status of a usage
 * error (printed). Nothing is read from Redis here.
 */
static int
deliver_parse(struct ctl *c, int argc, char **argv, struct deliver_args *a)
{
    int i;

    memset(a, 0, sizeof(*a));
    if (argc < 1)
        return deliver_usage("service deliver needs a NAME");
    a->name = argv[0];
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--off") == 0) {
            a->off = 1;
        } else if (strcmp(argv[i], "--rotate-key") == 0) {
            a->rotate = 1;
        } else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc &&
                   a->url == NULL) {
            a->url = argv[++i];
        } else if (strcmp(argv[i], "--events") == 0 && i + 1 < argc &&
                   a->events == NULL) {
            a->events = argv[++i];
        } else {
            return deliver_usage("unknown, repeated or incomplete option");
        }
    }
    if (!service_name_ok(a->name))
        return deliver_usage("a NAME is 1..64 of [A-Za-z0-9_.-]");
    if (a->off &&
        (a->rotate || a->url != NULL || a->events != NULL || c->suite != NULL))
        return deliver_usage("--off takes no other option");
    if (!a->off && !a->rotate && a->url == NULL)
        return deliver_usage("service deliver needs --url URL, --off or "
                             "--rotate-key");
    if (a->url == NULL && (a->events != NULL || c->suite != NULL))
        return deliver_usage("--events and --suite go with --url");
    if (a->url != NULL && !delivery_url_ok(a->url))
        return deliver_usage("--url takes an http:// or https:// URL of at "
                             "most 2048 printable characters, with a host, "
                             "no user or password and no #fragment");
    if (a->events != NULL && delivery_events_check(a->events) != BRK_OK)
        return deliver_usage("--events takes InfoType or InfoType/ChangeType "
                             "of known events (create_auth, change_auth, "
                             "cancel_auth, change_contact, "
                             "change_external_contact, change_external_chat, "
                             "change_external_tag), comma-separated, each "
                             "once");
    return 0;
}

/* A fresh token and key into token and aes, sealed under the service's
 * data key into *st and *sk (owned). 0, or 1 after saying why. */
static int
deliver_new_key(struct ctl *c, const struct delivery_keys *k, const char *id,
                char *token, char *aes, char **st, char **sk)
{
    unsigned char dk[KEYRING_KEY_LEN];
    char ctx[KEYS_MAX + 16];
    int rc = 1;

    if (delivery_random_alnum(token, DELIVERY_TOKEN_LEN) != BRK_OK ||
        delivery_aes_key_new(aes) != BRK_OK) {
        fprintf(stderr, "brokerctl: the random generator failed\n");
        return 1;
    }
    if (service_dk(c, k, id, dk))
        return 1;
    if (keys_seal_ctx(ctx, sizeof(ctx), k->dlv, "token") ||
        keyring_seal(dk, ctx, token, strlen(token), st, NULL) ||
        keys_seal_ctx(ctx, sizeof(ctx), k->dlv, "key") ||
        keyring_seal(dk, ctx, aes, strlen(aes), sk, NULL))
        fprintf(stderr, "brokerctl: cannot seal the key\n");
    else
        rc = 0;
    brk_wipe(dk, sizeof(dk));
    return rc;
}

/* The dlv_set script for op: its reply (owned), or NULL (said why). */
static redisReply *
deliver_set(struct ctl *c, const char *ksvc, const struct delivery_keys *k,
            const char *op, const struct deliver_args *a, const char *st,
            const char *sk)
{
    char now_ms[24], now_s[24];
    const char *argv[13];

    snprintf(now_ms, sizeof(now_ms), "%lld", brk_wall_ms());
    snprintf(now_s, sizeof(now_s), "%lld", (long long)time(NULL));
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_DLV_SET);
    argv[2] = "2";
    argv[3] = ksvc;
    argv[4] = k->dlv;
    argv[5] = op;
    argv[6] = a->url ? a->url : "";
    argv[7] = a->events ? a->events : "";
    argv[8] = c->suite ? c->suite : "";
    argv[9] = st ? st : "";
    argv[10] = sk ? sk : "";
    argv[11] = now_ms;
    argv[12] = now_s;
    return ctl_cmd_argv(c, 13, argv);
}

/* What was done, for people or as JSON. stored: 2 when the new token and
 * key were stored, 1 when the service's key was kept. */
static void
deliver_print(struct ctl *c, const struct deliver_args *a, const char *suite_id,
              long long stored, const char *token, const char *aes)
{
    json_t *out = NULL;

    if (a->off) {
        if (c->json)
            out = json_pack("{s:s, s:s}", "name", a->name, "delivery", "off");
        else
            printf("delivery to service %s is off; what was queued for it "
                   "is dropped\n",
                   a->name);
    } else if (stored == 2) {
        if (c->json)
            out = json_pack("{s:s, s:s, s:s}", "suite_id", suite_id, "token",
                            token, "encoding_aes_key", aes);
        else
            printf("service %s receives events%s%s\n"
                   "callback token and EncodingAESKey, shown only now — "
                   "configure the receiver with them:\n"
                   "  suite_id:         %s\n  token:            %s\n"
                   "  encoding_aes_key: %s\n",
                   a->name, a->url ? " at " : "", a->url ? a->url : "",
                   suite_id[0] ? suite_id
                               : "(each event carries its own suite's id)",
                   token, aes);
    } else {
        if (c->json)
            out = json_pack("{s:s, s:s, s:b}", "suite_id", suite_id, "url",
                            a->url ? a->url : "", "key_kept", 1);
        else
            printf("service %s receives events at %s; its token and key are "
                   "unchanged\n",
                   a->name, a->url ? a->url : "");
    }
    if (out != NULL) {
        ctl_print_json(out);
        json_decref(out);
    }
}

/* service deliver NAME --url URL [--events A,B] [--suite ID] [--rotate-key]
 * | --off | --rotate-key */
int
ctl_service_deliver(struct ctl *c, int argc, char **argv)
{
    char id[SERVICE_ID_LEN + 1], token[DELIVERY_TOKEN_LEN + 1] = "";
    char aes[DELIVERY_AES_KEY_LEN + 1] = "", ksvc[KEYS_MAX];
    char *st = NULL, *sk = NULL;
    struct deliver_args a;
    struct delivery_keys k;
    struct record_service *s = NULL;
    redisReply *r = NULL;
    long long v;
    int rc;

    rc = deliver_parse(c, argc, argv, &a);
    if (rc != 0)
        return rc;
    rc = 1;
    if (ctl_service_id(c, a.name, id))
        return 1;
    s = service_record(c, id);
    if (s == NULL)
        return 1;
    if (s->revoked) {
        fprintf(stderr, "brokerctl: service %s is revoked\n", a.name);
        goto out;
    }
    if (c->suite != NULL && s->suite[0] != '\0' &&
        strcmp(c->suite, s->suite) != 0) {
        record_service_unref(s);
        return deliver_usage("--suite differs from the service's own suite");
    }
    if (delivery_keys(&k, c->cfg->key_prefix, id, NULL, NULL) != BRK_OK ||
        keys_service(ksvc, sizeof(ksvc), c->cfg->key_prefix, id, NULL))
        goto out;
    /* offered; stored only when the service has none yet, or to rotate */
    if (!a.off && deliver_new_key(c, &k, id, token, aes, &st, &sk))
        goto out;
    r = deliver_set(c, ksvc, &k,
                    a.off           ? "off"
                    : a.url != NULL ? "set"
                                    : "rotate",
                    &a, st, sk);
    if (r == NULL)
        goto out;
    v = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    if (v < 1) {
        fprintf(stderr, "brokerctl: service %s %s\n", a.name,
                v == -1   ? "has no record"
                : v == -2 ? "is revoked"
                : v == -3 ? "has no delivery set (use --url)"
                          : "could not be set");
        goto out;
    }
    if (a.rotate && a.url != NULL && v == 1) {
        /* set kept the stored key: rotate it too */
        struct deliver_args rot = {a.name, NULL, NULL, 0, 1};

        freeReplyObject(r);
        r = deliver_set(c, ksvc, &k, "rotate", &rot, st, sk);
        if (r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer != 2) {
            fprintf(stderr, "brokerctl: the key of %s was not rotated\n",
                    a.name);
            goto out;
        }
        v = 2;
    }
    deliver_print(c, &a, c->suite ? c->suite : s->suite, v, token, aes);
    rc = 0;
out:
    brk_wipe(token, sizeof(token));
    brk_wipe(aes, sizeof(aes));
    brk_free_secret_str(st);
    brk_free_secret_str(sk);
    if (r != NULL)
        freeReplyObject(r);
    record_service_unref(s);
    return rc;
}

/* The delivery part of `service show` (new reference): null when none is
 * set; never the token or key. */
json_t *
ctl_delivery_json(struct ctl *c, const char *id)
{
    struct delivery_keys k;
    struct record_delivery d;
    enum brk_err err;
    redisReply *r;
    json_t *o;

    if (delivery_keys(&k, c->cfg->key_prefix, id, NULL, NULL) != BRK_OK)
        return json_null();
    r = ctl_cmd(c, "HGETALL %s", k.dlv);
    if (r == NULL)
        return json_null();
    err = record_delivery_decode(r, &d);
    freeReplyObject(r);
    if (err == BRK_ERR_NOTFOUND)
        return json_null();
    if (err)
        return json_pack("{s:s}", "status", "unusable");
    o = json_pack("{s:s, s:s, s:s, s:s, s:I}", "url", d.url, "events",
                  d.events[0] ? d.events : "all", "suite", d.suite, "status",
                  d.on ? "on" : "off", "key_generation", (json_int_t)d.gen);
    return o;
}

/*---- deliveries ----*/

/* The age in s of the first entry of stream key (0 when none), by its
 * rcv field. */
static long long
oldest_age(struct ctl *c, const char *key)
{
    redisReply *r = ctl_cmd(c, "XRANGE %s - + COUNT 1", key);
    long long age = 0, rcv = 0;
    const redisReply *f;
    size_t i;

    if (r == NULL)
        return 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements == 2 &&
        r->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
        f = r->element[0]->element[1];
        for (i = 0; i + 1 < f->elements; i += 2)
            if (f->element[i]->type == REDIS_REPLY_STRING &&
                strcmp(f->element[i]->str, "rcv") == 0 &&
                f->element[i + 1]->type == REDIS_REPLY_STRING)
                rcv = strtoll(f->element[i + 1]->str, NULL, 10);
        if (rcv > 0)
            age = (brk_wall_ms() - rcv) / 1000;
    }
    freeReplyObject(r);
    return age < 0 ? 0 : age;
}

static long long
xlen(struct ctl *c, const char *key)
{
    redisReply *r = ctl_cmd(c, "XLEN %s", key);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;

    if (r != NULL)
        freeReplyObject(r);
    return n;
}

/* deliveries NAME [--retry] */
int
ctl_deliveries(struct ctl *c, int argc, char **argv)
{
    char id[SERVICE_ID_LEN + 1], now[24], w[32];
    struct delivery_keys k, t;
    long long backlog = 0, dead = 0, retried = 0, n, m, age;
    json_t *tenants, *out, *row;
    redisReply *r;
    int retry = 0, i;
    size_t e;

    if (argc < 1)
        return ctl_usage("deliveries needs a service NAME");
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--retry") == 0)
            retry = 1;
        else
            return ctl_usage("deliveries takes NAME [--retry]");
    }
    if (ctl_service_id(c, argv[0], id))
        return 1;
    if (delivery_keys(&k, c->cfg->key_prefix, id, NULL, NULL) != BRK_OK)
        return 1;
    r = ctl_cmd(c, "SMEMBERS %s", k.tenants);
    if (r == NULL)
        return 1;
    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return 1;
    }
    snprintf(now, sizeof(now), "%lld", brk_wall_ms());
    tenants = json_array();
    for (e = 0; e < r->elements; e++) {
        const char *member = r->element[e]->str, *colon;

        if (r->element[e]->type != REDIS_REPLY_STRING ||
            delivery_keys_member(&t, c->cfg->key_prefix, id, member) != BRK_OK)
            continue;
        if (retry) {
            const char *argv2[10] = {"EVAL", scripts_text(SCRIPT_DLV_RETRY),
                                     "5",    t.dead,
                                     t.q,    t.ready,
                                     t.seq,  t.tenants,
                                     member, now};
            redisReply *x = ctl_cmd_argv(c, 10, argv2);

            if (x == NULL) {
                freeReplyObject(r);
                json_decref(tenants);
                return 1;
            }
            if (x->type == REDIS_REPLY_INTEGER)
                retried += x->integer;
            freeReplyObject(x);
        }
        n = xlen(c, t.q);
        m = xlen(c, t.dead);
        if (n == 0 && m == 0)
            continue;
        age = n > 0 ? oldest_age(c, t.q) : oldest_age(c, t.dead);
        colon = strchr(member, ':');
        row = json_pack("{s:s, s:s%, s:I, s:I, s:I}", "corpid", colon + 1,
                        "suite", member, (int)(colon - member), "backlog",
                        (json_int_t)n, "dead", (json_int_t)m, "oldest_age_s",
                        (json_int_t)age);
        json_array_append_new(tenants, row);
        backlog += n;
        dead += m;
    }
    freeReplyObject(r);
    out = json_pack("{s:s, s:I, s:I, s:o}", "service", argv[0], "backlog",
                    (json_int_t)backlog, "dead", (json_int_t)dead, "tenants",
                    tenants);
    if (retry)
        json_object_set_new(out, "retried", json_integer(retried));
    if (c->json) {
        ctl_print_json(out);
    } else {
        static const char *const heads[] = {"CORPID", "SUITE", "BACKLOG",
                                            "DEAD", "OLDEST"};
        struct ctl_table *tb = ctl_table_new(5, heads);
        const char *cells[5];
        char b[24], d[24];
        json_t *v;

        if (retry)
            printf("%lld dead letter(s) queued again\n", retried);
        printf("service %s: %lld queued, %lld dead\n", argv[0], backlog, dead);
        json_array_foreach(tenants, e, v)
        {
            snprintf(
                b, sizeof(b), "%lld",
                (long long)json_integer_value(json_object_get(v, "backlog")));
            snprintf(d, sizeof(d), "%lld",
                     (long long)json_integer_value(json_object_get(v, "dead")));
            snprintf(w, sizeof(w), "%llds",
                     (long long)json_integer_value(
                         json_object_get(v, "oldest_age_s")));
            cells[0] = ctl_str_of(v, "corpid", "");
            cells[1] = ctl_str_of(v, "suite", "");
            cells[2] = b;
            cells[3] = d;
            cells[4] = w;
            ctl_table_add(tb, cells);
        }
        ctl_table_print(tb, stdout);
        ctl_table_free(tb);
    }
    json_decref(out);
    return 0;
}

/* Remove the tenant's pending deliveries and dead letters for every
 * service, as the broker's purge does: the entries removed, or -1 after
 * printing why. */
long long
ctl_deliveries_purge(struct ctl *c, const char *suite, const char *corp)
{
    char key[KEYS_MAX], member[DELIVERY_MEMBER_MAX + 1];
    struct delivery_keys t;
    long long n = 0;
    redisReply *r, *x;
    size_t e;

    if (keys_services(key, sizeof(key), c->cfg->key_prefix))
        return -1;
    snprintf(member, sizeof(member), "%s:%s", suite, corp);
    r = ctl_cmd(c, "SMEMBERS %s", key);
    if (r == NULL)
        return -1;
    for (e = 0; r->type == REDIS_REPLY_ARRAY && e < r->elements; e++) {
        if (r->element[e]->type != REDIS_REPLY_STRING ||
            delivery_keys_member(&t, c->cfg->key_prefix, r->element[e]->str,
                                 member) != BRK_OK)
            continue;
        {
            const char *argv2[11] = {"EVAL",  scripts_text(SCRIPT_DLV_PURGE),
                                     "7",     t.q,
                                     t.qa,    t.dead,
                                     t.ready, t.lease,
                                     t.seq,   t.tenants,
                                     member};

            x = ctl_cmd_argv(c, 11, argv2);
        }
        if (x == NULL) {
            freeReplyObject(r);
            return -1;
        }
        if (x->type == REDIS_REPLY_INTEGER)
            n += x->integer;
        freeReplyObject(x);
    }
    freeReplyObject(r);
    return n;
}
