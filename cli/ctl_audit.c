/*
 * brokerctl audit: read the audit stream (<prefix>audit). The broker
 * writes one entry per service request (type request: req, at, service,
 * corpid, endpoint, errcode, stripped, dropped) and per lifecycle event
 * (type lifecycle: event, suite, corpid, at, and a few names). Entries
 * hold names and counts, never a field value, and are printed as they
 * are.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keys.h"
#include "service.h"

#include "ctl.h"

struct audit_opts {
    const char *corp, *service;
    long long since; /* seconds back, 0: the whole trail */
    int follow;
};

static volatile sig_atomic_t interrupted;

static void
on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* "10m", "2h", "1d", "30s" -> seconds; -1 when malformed. */
static long long
parse_since(const char *s)
{
    char *end;
    long long v, mul;

    if (s[0] < '0' || s[0] > '9')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || v <= 0 || end[0] == '\0' || end[1] != '\0')
        return -1;
    switch (end[0]) {
    case 's':
        mul = 1;
        break;
    case 'm':
        mul = 60;
        break;
    case 'h':
        mul = 3600;
        break;
    case 'd':
        mul = 86400;
        break;
    default:
        return -1;
    }
    /* more than ~100 years back is a typo */
    if (v > 3650000LL * 86400 / mul)
        return -1;
    return v * mul;
}

/* An entry's [f, v, ...] as a JSON object of strings (new reference). */
static json_t *
entry_json(const redisReply *e)
{
    static const char *const numeric[] = {"at", "errcode", "stripped",
                                          "dropped"};
    const redisReply *f = e->element[1];
    json_t *o = json_object();
    char *end;
    long long n;
    size_t i, k;

    json_object_set_new(o, "id", json_string(e->element[0]->str));
    for (i = 0; i + 1 < f->elements; i += 2) {
        const char *name = f->element[i]->str, *v = f->element[i + 1]->str;

        if (f->element[i]->type != REDIS_REPLY_STRING ||
            f->element[i + 1]->type != REDIS_REPLY_STRING)
            continue;
        for (k = 0; k < nitems(numeric); k++)
            if (strcmp(name, numeric[k]) == 0)
                break;
        errno = 0;
        n = strtoll(v, &end, 10);
        if (k < nitems(numeric) && v[0] != '\0' && *end == '\0' && errno == 0)
            json_object_set_new(o, name, json_integer(n));
        else
            json_object_set_new(o, name, json_string(v));
    }
    return o;
}

static int
wanted(const struct audit_opts *a, const json_t *o)
{
    if (a->corp != NULL && strcmp(ctl_str_of(o, "corpid", ""), a->corp) != 0)
        return 0;
    if (a->service != NULL &&
        strcmp(ctl_str_of(o, "service", ""), a->service) != 0)
        return 0;
    return 1;
}

#define W_TIME    20
#define W_TYPE    9
#define W_SERVICE 16
#define W_CORP    20
#define W_WHAT    40
#define W_CODE    7
#define W_COUNTS  17

static void
print_head(void)
{
    ctl_pad(stdout, "TIME", W_TIME + 2);
    ctl_pad(stdout, "TYPE", W_TYPE + 2);
    ctl_pad(stdout, "SERVICE", W_SERVICE + 2);
    ctl_pad(stdout, "CORP", W_CORP + 2);
    ctl_pad(stdout, "ENDPOINT/EVENT", W_WHAT + 2);
    ctl_pad(stdout, "ERRCODE", W_CODE + 2);
    ctl_pad(stdout, "STRIPPED/DROPPED", W_COUNTS + 2);
    printf("DETAIL\n");
}

/* One entry on one line, columns padded by display width. */
static void
print_line(json_t *o)
{
    static const char *const shown[] = {
        "id",       "type",  "at",      "service",  "corpid",
        "endpoint", "event", "errcode", "stripped", "dropped"};
    char when[32], code[24] = "-", counts[48] = "-", buf[64], what[96];
    const char *type = ctl_str_of(o, "type", "?"), *k;
    int delivery = strcmp(type, "delivery") == 0;
    long long at = json_integer_value(json_object_get(o, "at"));
    json_t *v;
    size_t i;
    int first = 1;

    if (at == 0)
        at = strtoll(ctl_str_of(o, "id", "0"), NULL, 10) / 1000;
    ctl_utc(at, when, sizeof(when));
    if (json_object_get(o, "errcode") != NULL)
        snprintf(code, sizeof(code), "%lld",
                 (long long)json_integer_value(json_object_get(o, "errcode")));
    if (json_object_get(o, "stripped") != NULL)
        snprintf(counts, sizeof(counts), "%lld/%lld",
                 (long long)json_integer_value(json_object_get(o, "stripped")),
                 (long long)json_integer_value(json_object_get(o, "dropped")));
    ctl_pad(stdout, when, W_TIME + 2);
    ctl_pad(stdout, type, W_TYPE + 2);
    ctl_pad(stdout,
            ctl_str_of(o, "service", "-")[0] ? ctl_str_of(o, "service", "-")
                                             : "-",
            W_SERVICE + 2);
    ctl_pad(stdout,
            ctl_str_of(o, "corpid", "-")[0] ? ctl_str_of(o, "corpid", "-")
                                            : "-",
            W_CORP + 2);
    /* a delivery names its event as explain does: event:INFO[/CHANGE] */
    if (delivery)
        snprintf(what, sizeof(what), "event:%s%s%s",
                 ctl_str_of(o, "info_type", ""),
                 ctl_str_of(o, "change_type", "")[0] ? "/" : "",
                 ctl_str_of(o, "change_type", ""));
    else
        snprintf(what, sizeof(what), "%s",
                 ctl_str_of(o, "endpoint", ctl_str_of(o, "event", "-")));
    ctl_pad(stdout, what, W_WHAT + 2);
    ctl_pad(stdout, code, W_CODE + 2);
    ctl_pad(stdout, counts, W_COUNTS + 2);
    /* whatever else the entry names: the request id, the suite, ... */
    json_object_foreach(o, k, v)
    {
        for (i = 0; i < nitems(shown); i++)
            if (strcmp(k, shown[i]) == 0)
                break;
        if (i < nitems(shown))
            continue;
        if (delivery &&
            (strcmp(k, "info_type") == 0 || strcmp(k, "change_type") == 0))
            continue; /* in the ENDPOINT/EVENT column */
        if (json_is_string(v)) {
            printf("%s%s=", first ? "" : " ", k);
            ctl_sanitize(stdout, json_string_value(v));
        } else {
            snprintf(buf, sizeof(buf), "%lld",
                     (long long)json_integer_value(v));
            printf("%s%s=%s", first ? "" : " ", k, buf);
        }
        first = 0;
    }
    printf("\n");
}

/* Print the wanted entries of an array of stream entries; the id of the
 * last one into last. */
static void
print_entries(struct ctl *c, const struct audit_opts *a, const redisReply *r,
              char *last, size_t len)
{
    const redisReply *e;
    json_t *o;
    size_t i;

    for (i = 0; i < r->elements; i++) {
        e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        snprintf(last, len, "%s", e->element[0]->str);
        if (e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        o = entry_json(e);
        if (wanted(a, o)) {
            if (c->json)
                ctl_print_json(o);
            else
                print_line(o);
        }
        json_decref(o);
    }
    fflush(stdout);
}

/* The stream id after id, for paging with XRANGE on servers without
 * exclusive ranges. */
static void
after(const char *id, char *out, size_t len)
{
    unsigned long long ms, seq;

    if (sscanf(id, "%llu-%llu", &ms, &seq) != 2)
        snprintf(out, len, "+");
    else if (seq == ~0ULL)
        snprintf(out, len, "%llu-0", ms + 1);
    else
        snprintf(out, len, "%llu-%llu", ms, seq + 1);
}

static int
follow(struct ctl *c, const struct audit_opts *a, const char *key, char *last,
       size_t len)
{
    struct sigaction sa;
    redisReply *r;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    /* no SA_RESTART: the blocking read returns within a second anyway */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!interrupted) {
        r = ctl_cmd(c, "XREAD COUNT 1000 BLOCK 1000 STREAMS %s %s", key, last);
        if (r == NULL)
            return interrupted ? 0 : 1;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
            r->element[0]->type == REDIS_REPLY_ARRAY &&
            r->element[0]->elements == 2 &&
            r->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
            print_entries(c, a, r->element[0]->element[1], last, len);
        freeReplyObject(r);
    }
    return 0;
}

static int
service_exists(struct ctl *c, const char *name)
{
    char key[KEYS_MAX];
    redisReply *r;
    int yes = 0;

    if (!service_name_ok(name) ||
        keys_service_name(key, sizeof(key), c->cfg->key_prefix, name))
        return 0;
    r = ctl_cmd(c, "EXISTS %s", key);
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        yes = r->integer == 1;
    if (r != NULL)
        freeReplyObject(r);
    return yes;
}

/*
 * Redis keeps only the recent trail (audit_max_age, audit_max_len): when
 * entries were trimmed away and the oldest left is younger than the window
 * asked for, say so on stderr; audit_file holds the rest.
 */
static void
say_if_trimmed(struct ctl *c, const char *key, long long since)
{
    redisReply *r = ctl_cmd(c, "XINFO STREAM %s", key);
    long long len = -1, added = -1, first = -1, now = (long long)time(NULL);
    size_t i;

    if (r == NULL)
        return;
    for (i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];

        if (k->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(k->str, "length") == 0 && v->type == REDIS_REPLY_INTEGER)
            len = v->integer;
        else if (strcmp(k->str, "entries-added") == 0 &&
                 v->type == REDIS_REPLY_INTEGER)
            added = v->integer;
        else if (strcmp(k->str, "first-entry") == 0 &&
                 v->type == REDIS_REPLY_ARRAY && v->elements == 2 &&
                 v->element[0]->type == REDIS_REPLY_STRING)
            first = strtoll(v->element[0]->str, NULL, 10) / 1000;
    }
    freeReplyObject(r);
    if (len < 0 || added <= len)
        return; /* nothing was ever trimmed (or an older Redis) */
    if (first < 0 || first > now - since)
        fprintf(stderr,
                "brokerctl: the Redis trail was trimmed and starts %s; "
                "older entries are only in audit_file\n",
                first < 0 ? "empty" : "after --since");
}

/* audit [--corp C] [--service S] [--since 10m] [--follow] */
int
ctl_audit(struct ctl *c, int argc, char **argv)
{
    struct audit_opts a;
    char key[KEYS_MAX], start[64], last[64];
    redisReply *r;
    int i;

    memset(&a, 0, sizeof(a));
    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--follow") == 0) {
            a.follow = 1;
        } else if (i + 1 < argc && strcmp(argv[i], "--corp") == 0) {
            a.corp = argv[++i];
            if (!keys_id_ok(a.corp))
                return ctl_usage("%s is not a corpid", a.corp);
        } else if (i + 1 < argc && strcmp(argv[i], "--service") == 0) {
            a.service = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--since") == 0) {
            a.since = parse_since(argv[++i]);
            if (a.since < 0)
                return ctl_usage("--since takes a number and s, m, h or d "
                                 "(10m, 2h, 1d), not %s",
                                 argv[i]);
        } else {
            return ctl_usage("unexpected argument %s", argv[i]);
        }
    }
    if (a.service != NULL && !service_exists(c, a.service)) {
        fprintf(stderr, "brokerctl: no service called %s\n", a.service);
        return 1;
    }
    snprintf(key, sizeof(key), "%saudit", c->cfg->key_prefix);
    if (a.since > 0)
        snprintf(start, sizeof(start), "%lld-0",
                 ((long long)time(NULL) - a.since) * 1000);
    else
        snprintf(start, sizeof(start), "-");
    snprintf(last, sizeof(last), "%s", a.since > 0 ? start : "0-0");
    if (a.since > 0)
        say_if_trimmed(c, key, a.since);
    if (!c->json)
        print_head();
    for (;;) {
        r = ctl_cmd(c, "XRANGE %s %s + COUNT 1000", key, start);
        if (r == NULL)
            return 1;
        if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
            freeReplyObject(r);
            break;
        }
        print_entries(c, &a, r, last, sizeof(last));
        freeReplyObject(r);
        after(last, start, sizeof(start));
    }
    return a.follow ? follow(c, &a, key, last, sizeof(last)) : 0;
}
