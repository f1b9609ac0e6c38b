/*
 * Integration tests' side of WeCom for tenant work (see tenantclient.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "broker.h"
#include "simclient.h"
#include "tenantclient.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

static struct harness *H;
static struct wecom_crypto *C;
static int MockPort, Target;

void
tc_init(struct harness *h, int mock_port)
{
    H = h;
    MockPort = mock_port;
    Target = 0;
    if (C == NULL)
        assert_int_equal(wecom_crypto_new(H_TOKEN, H_AESKEY, &C), BRK_OK);
}

void
tc_done(void)
{
    wecom_crypto_free(C);
    C = NULL;
}

void
tc_target(int cb_port)
{
    Target = cb_port;
}

static void post_sealed(const char *suite, const char *route,
                        const char *receiveid, const char *const *kv,
                        size_t npairs);

void
tc_post_event(const char *suite, const char *const *kv, size_t npairs)
{
    post_sealed(suite, "callback", suite, kv, npairs);
}

void
tc_post_data(const char *suite, const char *corp, const char *const *kv,
             size_t npairs)
{
    post_sealed(suite, "data", corp, kv, npairs);
}

/* Encrypt for receiveid and POST to /wecom/suite/SUITE/ROUTE. */
static void
post_sealed(const char *suite, const char *route, const char *receiveid,
            const char *const *kv, size_t npairs)
{
    const char *k[24], *v[24], *ek[] = {"ToUserName", "Encrypt"}, *evv[2];
    char *xml, *enc, *env, *body = NULL, sig[WECOM_CRYPTO_SIG_SIZE];
    char q[512], url[600], ts[24], nonce[24];
    static unsigned seq;
    size_t len, i;

    assert_true(npairs <= 24);
    for (i = 0; i < npairs; i++) {
        k[i] = kv[2 * i];
        v[i] = kv[2 * i + 1];
    }
    assert_int_equal(wecom_xml_build(k, v, npairs, &xml, &len), BRK_OK);
    assert_int_equal(wecom_crypto_encrypt(C, xml, len, receiveid, &enc),
                     BRK_OK);
    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    snprintf(nonce, sizeof(nonce), "tc%u", ++seq);
    assert_int_equal(wecom_crypto_sign(C, ts, nonce, enc, sig), BRK_OK);
    evv[0] = receiveid;
    evv[1] = enc;
    assert_int_equal(wecom_xml_build(ek, evv, 2, &env, &len), BRK_OK);
    snprintf(q, sizeof(q),
             "/wecom/suite/%s/%s?msg_signature=%s&timestamp=%s"
             "&nonce=%s",
             suite, route, sig, ts, nonce);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s",
             Target ? Target : H->cb_port, q);
    assert_int_equal(h_http("POST", url, env, len, &body), 200);
    assert_string_equal(body, "success");
    free(body);
    brk_free(env);
    brk_free(enc);
    brk_free(xml);
}

const char *
tc_push_ticket(const char *suite)
{
    static char ticket[200];
    char path[128], ts[24];
    json_t *t;
    const char *kv[8];

    snprintf(path, sizeof(path), "/__mock/suite_ticket?suite_id=%s", suite);
    t = h_sim_json(MockPort, "GET", path, NULL);
    snprintf(ts, sizeof(ts), "%ld", h_next_ts());
    kv[0] = "SuiteId";
    kv[1] = suite;
    kv[2] = "InfoType";
    kv[3] = "suite_ticket";
    kv[4] = "TimeStamp";
    kv[5] = ts;
    kv[6] = "SuiteTicket";
    snprintf(ticket, sizeof(ticket), "%s",
             json_string_value(json_object_get(t, "suite_ticket")));
    json_decref(t);
    kv[7] = ticket;
    tc_post_event(suite, kv, 4);
    return ticket;
}

void
tc_install(const char *suite, const char *corp, long ts)
{
    char body[256], tsb[24];
    json_t *r;
    const char *kv[10];

    snprintf(body, sizeof(body), "{\"suite_id\":\"%s\",\"corpid\":\"%s\"}",
             suite, corp);
    r = h_sim_json(MockPort, "POST", "/__mock/install", body);
    snprintf(tsb, sizeof(tsb), "%ld", ts);
    kv[0] = "SuiteId";
    kv[1] = suite;
    kv[2] = "AuthCode";
    kv[3] = json_string_value(json_object_get(r, "auth_code"));
    kv[4] = "InfoType";
    kv[5] = "create_auth";
    kv[6] = "TimeStamp";
    kv[7] = tsb;
    kv[8] = "State";
    kv[9] = "";
    tc_post_event(suite, kv, 5);
    json_decref(r);
}

void
tc_corp_event(const char *suite, const char *type, const char *corp, long ts,
              const char *k1, const char *v1)
{
    char tsb[24];
    const char *kv[12];
    size_t n = 0;

    snprintf(tsb, sizeof(tsb), "%ld", ts);
    kv[n++] = "SuiteId";
    kv[n++] = suite;
    kv[n++] = "InfoType";
    kv[n++] = type;
    kv[n++] = "TimeStamp";
    kv[n++] = tsb;
    kv[n++] = "AuthCorpId";
    kv[n++] = corp;
    if (k1 != NULL) {
        kv[n++] = k1;
        kv[n++] = v1;
    }
    tc_post_event(suite, kv, n / 2);
}

json_t *
tc_ctl_json(const char *a1, const char *a2, const char *a3, const char *suite)
{
    const char *argv[12];
    char *out = NULL;
    json_error_t e;
    json_t *v = NULL;
    size_t n = 0;

    argv[n++] = "bin/brokerctl";
    argv[n++] = "-c";
    argv[n++] = H->conf;
    argv[n++] = "--json";
    if (suite != NULL) {
        argv[n++] = "--suite";
        argv[n++] = suite;
    }
    argv[n++] = a1;
    if (a2 != NULL)
        argv[n++] = a2;
    if (a3 != NULL)
        argv[n++] = a3;
    argv[n] = NULL;
    if (h_run(argv, &out) == 0)
        v = json_loads(out, 0, &e);
    free(out);
    return v;
}

json_t *
tc_ctl(int *rc, ...)
{
    const char *argv[24], *a;
    char *out = NULL;
    json_error_t e;
    json_t *v;
    size_t n = 0;
    va_list ap;

    argv[n++] = "bin/brokerctl";
    argv[n++] = "-c";
    argv[n++] = H->conf;
    argv[n++] = "--json";
    va_start(ap, rc);
    while ((a = va_arg(ap, const char *)) != NULL && n < 23)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    *rc = h_run(argv, &out);
    v = json_loads(out ? out : "", JSON_DISABLE_EOF_CHECK, &e);
    if (*rc != 0 && n > 4 && strcmp(argv[4], "tenant") != 0)
        fprintf(stderr, "# brokerctl %s %s: exit %d: %.600s\n", argv[4],
                n > 5 ? argv[5] : "", *rc, out ? out : "");
    free(out);
    return v;
}

char *
tc_svc_add(const char *name, const char *scopes, const char *opt,
           const char *val)
{
    int rc;
    json_t *v = tc_ctl(&rc, "service", "add", name, "--scopes", scopes, opt,
                       val, (const char *)NULL);
    char *s;

    assert_int_equal(rc, 0);
    assert_string_equal(h_str(v, "name"), name);
    s = strdup(h_str(v, "secret"));
    assert_non_null(s);
    assert_non_null(strchr(s, '.'));
    json_decref(v);
    return s;
}

char *
tc_token_for(int port, const char *secret, const char *corp)
{
    char url[512], *body = NULL, *t;
    json_error_t e;
    json_t *v;
    long st;

    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
             port ? port : H->int_port, corp, secret);
    st = h_http("GET", url, NULL, 0, &body);
    v = json_loads(body ? body : "", 0, &e);
    if (st != 200 || json_integer_value(json_object_get(v, "errcode")) != 0 ||
        !json_is_integer(json_object_get(v, "errcode")))
        fprintf(stderr, "# gettoken %s: %ld: %.300s\n", corp, st,
                body ? body : "(no body)");
    assert_int_equal(st, 200);
    assert_true(json_is_integer(json_object_get(v, "errcode")));
    assert_int_equal(json_integer_value(json_object_get(v, "errcode")), 0);
    t = strdup(h_str(v, "access_token"));
    assert_non_null(t);
    assert_true(t[0] != '\0');
    json_decref(v);
    free(body);
    return t;
}

long
tc_user_get_errcode(const char *secret, const char *corp, const char *userid)
{
    char *tok = tc_token_for(0, secret, corp), path[600], *url, *body = NULL;
    json_error_t e;
    json_t *v;
    long code;

    snprintf(path, sizeof(path), "/cgi-bin/user/get?access_token=%s&userid=%s",
             tok, userid);
    free(tok);
    url = h_int_url(H, path);
    assert_int_equal(h_http("GET", url, NULL, 0, &body), 200);
    free(url);
    v = json_loads(body ? body : "", 0, &e);
    free(body);
    code = (long)json_integer_value(json_object_get(v, "errcode"));
    json_decref(v);
    return code;
}

long
tc_suite_field(const char *suite, const char *field)
{
    int rc;
    json_t *arr = tc_ctl(&rc, "suite", (const char *)NULL), *s;
    size_t i;
    long v = -1;

    json_array_foreach(arr, i, s)
    {
        if (strcmp(h_str(s, "suite_id"), suite) == 0)
            v = (long)json_integer_value(json_object_get(s, field));
    }
    json_decref(arr);
    return v;
}

size_t
tc_mock_count(const char *path, const char *corp)
{
    char p[256];
    json_t *v, *e;
    size_t n = 0, i;

    snprintf(p, sizeof(p), "/__mock/requests?path=%s", path);
    v = h_sim_json(MockPort, "GET", p, NULL);
    json_array_foreach(v, i, e)
    {
        const char *c = json_string_value(
            json_object_get(json_object_get(e, "body"), "auth_corpid"));

        if (corp == NULL || (c != NULL && strcmp(c, corp) == 0))
            n++;
    }
    json_decref(v);
    return n;
}

int
tc_clear_faults(void **state)
{
    char *out = NULL;

    (void)state;
    h_sim(MockPort, "DELETE", "/__mock/faults", NULL, &out);
    free(out);
    return 0;
}

int
tc_sim_leaky(void **state)
{
    (void)state;
    h_sim_ok(MockPort, "POST", "/__mock/leaky", "{\"leaky\":true}");
    return 0;
}

int
tc_sim_strict(void **state)
{
    (void)state;
    h_sim_ok(MockPort, "POST", "/__mock/leaky", "{\"leaky\":false}");
    return 0;
}

long
tc_metric(const char *series)
{
    char *url = h_int_url(H, "/metrics"), *body = NULL, *p;
    long v = 0;

    if (h_http("GET", url, NULL, 0, &body) == 200 &&
        (p = strstr(body, series)) != NULL)
        v = strtol(p + strlen(series) + 1, NULL, 10);
    free(url);
    free(body);
    return v;
}

struct text {
    char *s;
    size_t len, cap;
};

static void
text_add(struct text *t, const char *s, size_t n)
{
    while (t->len + n + 2 > t->cap) {
        t->cap = t->cap ? t->cap * 2 : 1 << 20;
        t->s = realloc(t->s, t->cap);
        assert_non_null(t->s);
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len++] = '\n';
    t->s[t->len] = '\0';
}

/* The strings of one reply: its own, its elements', and a stream entry's
 * fields and values. */
static void
text_add_reply(struct text *t, const redisReply *v)
{
    size_t k, m;

    if (v->type == REDIS_REPLY_STRING)
        text_add(t, v->str, v->len);
    for (k = 0; v->type == REDIS_REPLY_ARRAY && k < v->elements; k++) {
        const redisReply *e = v->element[k];

        if (e->type == REDIS_REPLY_STRING)
            text_add(t, e->str, e->len);
        else if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
                 e->element[1]->type == REDIS_REPLY_ARRAY)
            for (m = 0; m < e->element[1]->elements; m++)
                text_add(t, e->element[1]->element[m]->str,
                         e->element[1]->element[m]->len);
    }
}

char *
tc_redis_text(void)
{
    static const char *const by_type[][2] = {
        {"string", "GET %b"},       {"hash", "HGETALL %b"},
        {"set", "SMEMBERS %b"},     {"zset", "ZRANGE %b 0 -1 WITHSCORES"},
        {"list", "LRANGE %b 0 -1"}, {"stream", "XRANGE %b - +"},
    };
    redisContext *c = h_redis(H);
    redisReply *keys, *ty, *v;
    struct text t = {NULL, 0, 0};
    size_t i, k;

    assert_non_null(c);
    text_add(&t, "", 0);
    keys = redisCommand(c, "KEYS *");
    assert_non_null(keys);
    for (i = 0; i < keys->elements; i++) {
        const char *key = keys->element[i]->str;
        size_t kl = keys->element[i]->len;

        text_add(&t, key, kl);
        ty = redisCommand(c, "TYPE %b", key, kl);
        assert_non_null(ty);
        v = NULL;
        for (k = 0; k < sizeof(by_type) / sizeof(by_type[0]); k++)
            if (strcmp(ty->str, by_type[k][0]) == 0)
                v = redisCommand(c, by_type[k][1], key, kl);
        if (v == NULL && strcmp(ty->str, "none") != 0) {
            fprintf(stderr, "# unexpected Redis type %s of %s\n", ty->str, key);
            fail();
        }
        if (v != NULL) {
            text_add_reply(&t, v);
            freeReplyObject(v);
        }
        freeReplyObject(ty);
    }
    freeReplyObject(keys);
    redisFree(c);
    return t.s;
}

char *
tc_status(const char *suite, const char *corp)
{
    json_t *t = tc_ctl_json("tenant", "show", corp, suite);
    const char *s = json_string_value(json_object_get(t, "status"));
    char *out = strdup(s ? s : "");

    json_decref(t);
    assert_non_null(out);
    return out;
}

struct want {
    const char *suite, *corp, *status;
};

static int
has_status(void *arg)
{
    struct want *w = arg;
    char *s = tc_status(w->suite, w->corp);
    int ok = strcmp(s, w->status) == 0;

    free(s);
    return ok;
}

void
tc_wait_status(const char *suite, const char *corp, const char *status, long ms)
{
    struct want w = {suite, corp, status};
    char *s;

    if (h_wait(has_status, &w, ms))
        return;
    s = tc_status(suite, corp);
    fprintf(stderr, "# %s/%s never became %s (is \"%s\")\n", suite, corp,
            status, s);
    free(s);
    fail();
}

/* GET path on the simulator with the corp token; the reply or NULL. */
static json_t *
sim_get(const char *path, const char *token)
{
    char p[512], *out = NULL;
    json_error_t e;
    json_t *v = NULL;

    snprintf(p, sizeof(p), "%s%caccess_token=%s", path,
             strchr(path, '?') ? '&' : '?', token);
    if (h_sim(MockPort, "GET", p, NULL, &out) == 200)
        v = json_loads(out, 0, &e);
    free(out);
    if (v != NULL && json_integer_value(json_object_get(v, "errcode")) != 0) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

static void
add_longs(json_t *set, const json_t *arr)
{
    const json_t *v;
    size_t i;
    char k[24];

    json_array_foreach(arr, i, v)
    {
        snprintf(k, sizeof(k), "%lld", (long long)json_integer_value(v));
        json_object_set_new(set, k, json_true());
    }
}

long
tc_expected_members(const char *suite, const char *corp)
{
    char path[256];
    json_t *t = tc_ctl_json("tenant", "show", corp, suite), *tok = NULL;
    json_t *priv, *depts = NULL, *parties = json_object();
    json_t *members = json_object(), *named = json_object(), *r, *v, *row;
    const char *token, *key, *lists[2] = {"allow_tag", "extra_tag"};
    size_t i, k, before;
    long n = -1;

    priv = json_object_get(t, "privilege");
    snprintf(path, sizeof(path), "/__mock/corp_token?suite_id=%s&corpid=%s",
             suite, corp);
    tok = h_sim_json(MockPort, "GET", path, NULL);
    token = json_string_value(json_object_get(tok, "access_token"));
    if (priv == NULL || token == NULL)
        goto out;
    depts = sim_get("/cgi-bin/department/simplelist", token);
    if (depts == NULL)
        goto out;
    add_longs(parties, json_object_get(priv, "allow_party"));
    add_longs(parties, json_object_get(priv, "extra_party"));
    for (k = 0; k < 2; k++)
        json_array_foreach(json_object_get(priv, lists[k]), i, v)
        {
            snprintf(path, sizeof(path), "/cgi-bin/tag/get?tagid=%lld",
                     (long long)json_integer_value(v));
            r = sim_get(path, token);
            if (r == NULL)
                goto out;
            add_longs(parties, json_object_get(r, "partylist"));
            json_array_foreach(json_object_get(r, "userlist"), i, row)
                json_object_set_new(
                    named, json_string_value(json_object_get(row, "userid")),
                    json_true());
            json_decref(r);
        }
    /* the subtrees: add children until nothing changes */
    do {
        before = json_object_size(parties);
        json_array_foreach(json_object_get(depts, "department_id"), i, row)
        {
            char id[24], parent[24];

            snprintf(id, sizeof(id), "%lld",
                     (long long)json_integer_value(json_object_get(row, "id")));
            snprintf(parent, sizeof(parent), "%lld",
                     (long long)json_integer_value(
                         json_object_get(row, "parentid")));
            if (json_object_get(parties, parent) != NULL)
                json_object_set_new(parties, id, json_true());
        }
    } while (json_object_size(parties) != before);
    json_object_foreach(parties, key, v)
    {
        snprintf(path, sizeof(path),
                 "/cgi-bin/user/simplelist?department_id=%s", key);
        r = sim_get(path, token);
        if (r == NULL)
            continue; /* a department that is no longer there */
        json_array_foreach(json_object_get(r, "userlist"), i, row)
            json_object_set_new(
                members, json_string_value(json_object_get(row, "userid")),
                json_true());
        json_decref(r);
    }
    for (k = 0; k < 2; k++)
        json_array_foreach(
            json_object_get(priv, k ? "extra_user" : "allow_user"), i, v)
            json_object_set_new(named, json_string_value(v), json_true());
    /* a member named by the range or a tag and seen in no department of
     * it: a directory entry only with departments WeCom shows the app
     * (without any, the range alone makes it visible) */
    json_object_foreach(named, key, v)
    {
        if (json_object_get(members, key) != NULL)
            continue;
        snprintf(path, sizeof(path), "/cgi-bin/user/get?userid=%s", key);
        r = sim_get(path, token);
        if (r != NULL && json_array_size(json_object_get(r, "department")) > 0)
            json_object_set_new(members, key, json_true());
        json_decref(r);
    }
    n = (long)json_object_size(members);
out:
    json_decref(t);
    json_decref(tok);
    json_decref(depts);
    json_decref(parties);
    json_decref(members);
    json_decref(named);
    return n;
}

int
tc_world_start(struct harness *h, pid_t *mock, int *mock_port, char *secret,
               size_t len)
{
    const char *extra[] = {
        "--suite", H_SUITE ":" H_SECRET, "--corps", "10", "--members",
        "60",      "--departments",      "15",      NULL};

    return tc_world_start_with(h, extra,
                               "event_claim_idle = 3\n"
                               "event_max_attempts = 3\n",
                               mock, mock_port, secret, len);
}

int
tc_world_start_with(struct harness *h, const char *const *mock_args,
                    const char *conf, pid_t *mock, int *mock_port, char *secret,
                    size_t len)
{
    char broker[1024], *sec;
    int n;

    if (h_setup(h) != 0)
        return -1;
    *mock = h_mock_start(h->dir, mock_args, mock_port);
    if (*mock == 0)
        return -1;
    n = snprintf(broker, sizeof(broker),
                 "wecom_api_base = http://127.0.0.1:%d\n%s", *mock_port,
                 conf ? conf : "");
    if (n < 0 || (size_t)n >= sizeof(broker) ||
        h_write_conf(h, 0, broker) != 0 || h_broker_start(h) != 0)
        return -1;
    tc_init(h, *mock_port);
    tc_push_ticket(H_SUITE);
    sec = tc_svc_add("reader", "contacts.read", NULL, NULL);
    snprintf(secret, len, "%s", sec);
    free(sec);
    return 0;
}

void
tc_world_stop(struct harness *h, pid_t mock)
{
    tc_done();
    if (mock > 0)
        h_stop(mock, SIGTERM);
    h_teardown(h);
}
