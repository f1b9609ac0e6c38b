/*
 * The service API end to end: real redis-server, the WeCom simulator and
 * two broker instances over loopback. Every row of SPEC §5's error table,
 * the field and range filter on every declared endpoint, changes seen by
 * a second instance, a corp-token storm across instances, and a plain
 * curl client.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"
#include "simclient.h"
#include "svcclient.h"
#include "tenantclient.h"
#include "service.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#define S1       H_SUITE
#define CORP1    "wwmockcorp0001" /* the main tenant */
#define CORP2    "wwmockcorp0002" /* cancelled later */
#define CORP3    "wwmockcorp0003" /* stuck installing */
#define CORP4    "wwmockcorp0004" /* reinstall_required */
#define CORP6    "wwmockcorp0006" /* never installed */
#define AGENTID  "1000002"
#define APP_NAME "\"name\":\"模拟应用\""

static struct harness H;
static pid_t Mock, Bpid, Cpid;
static int MockPort, Aport, Bport;
static char Bconf[400], Blog[400];

/* Service secrets and tokens for CORP1. */
static char *Reader_secret, *Reader_tok; /* contacts.read */
static char *Crm_secret, *Crm_tok;       /* contacts.read,external.customers */
static char *Sdk_secret;                 /* contacts.read,contact:edit:all */

/*---- Ground truth, computed from the simulator, not the broker ----*/

struct truth {
    json_t *members;  /* user/list of the whole corp, unfiltered */
    json_t *in_users; /* userid -> true */
    json_t *in_depts; /* "id" -> true */
    json_t *in_tags;  /* "id" -> true */
    json_t *depts;    /* department/simplelist of the whole corp */
};

static struct truth T;
static char Corp_token[128];
static char In_member[32];   /* in range, has many fields */
static char Out_member[32];  /* exists, out of range */
static char In_follower[32]; /* in range and follows customers */
static char Out_follower[32];
static char In_customer[80];
static char In_chat[80];
static char In_owner[32];
static long Out_dept, Out_tag;

/*---- HTTP ----*/

/*---- The simulator ----*/

static void
fault(const char *json)
{
    h_sim_ok(MockPort, "POST", "/__mock/faults", json);
}

/* A data API of the simulator with our own corp token: what WeCom has,
 * before any filter. */
static json_t *
direct(const char *method, const char *path, const char *query,
       const char *body)
{
    char pq[1024];
    json_t *v;

    snprintf(pq, sizeof(pq), "%s?access_token=%s%s%s", path, Corp_token,
             query ? "&" : "", query ? query : "");
    v = h_sim_json(MockPort, method, pq, body);
    if (json_integer_value(json_object_get(v, "errcode")) != 0) {
        char *s = json_dumps(v, 0);

        fprintf(stderr, "# direct %s %s: %s\n", path, query ? query : "", s);
        free(s);
        fail();
    }
    return v;
}

/*---- Callbacks, as WeCom sends them ----*/

/*---- brokerctl ----*/

static json_t *
tenant_show(const char *corp)
{
    int rc;

    return tc_ctl(&rc, "tenant", "show", corp, (const char *)NULL);
}

/*---- Ground truth ----*/

static int
set_has(const json_t *set, const char *k)
{
    return json_object_get(set, k) != NULL;
}

static void
set_add_long(json_t *set, long id)
{
    char k[24];

    snprintf(k, sizeof(k), "%ld", id);
    json_object_set_new(set, k, json_true());
}

static int
set_has_long(const json_t *set, long id)
{
    char k[24];

    snprintf(k, sizeof(k), "%ld", id);
    return set_has(set, k);
}

/* Mark id and every department under it. */
static void
mark_subtree(json_t *set, const json_t *depts, long id)
{
    int grew = 1;
    size_t i;
    const json_t *d;

    set_add_long(set, id);
    while (grew) {
        grew = 0;
        json_array_foreach(depts, i, d)
        {
            long did = (long)json_integer_value(json_object_get(d, "id"));
            long par = (long)json_integer_value(json_object_get(d, "parentid"));

            if (!set_has_long(set, did) && set_has_long(set, par) && par != 0 &&
                did != par) {
                set_add_long(set, did);
                grew = 1;
            }
        }
    }
}

static void
truth_free(void)
{
    json_decref(T.members);
    json_decref(T.in_users);
    json_decref(T.in_depts);
    json_decref(T.in_tags);
    json_decref(T.depts);
    memset(&T, 0, sizeof(T));
}

/* Visible range of privilege (WeCom's object) over the simulator's
 * directory, by wecom-protocol §3.3. */
static void
truth_compute(const json_t *priv)
{
    static const char *const plist[] = {"allow_party", "extra_party"};
    static const char *const ulist[] = {"allow_user", "extra_user"};
    static const char *const tlist[] = {"allow_tag", "extra_tag"};
    json_t *v, *e, *m, *d;
    size_t i, j, k;
    char q[64];

    truth_free();
    v = direct("GET", "/cgi-bin/department/simplelist", NULL, NULL);
    T.depts = json_incref(json_object_get(v, "department_id"));
    json_decref(v);
    assert_true(json_array_size(T.depts) >= 3);
    v = direct("GET", "/cgi-bin/user/list", "department_id=1&fetch_child=1",
               NULL);
    T.members = json_incref(json_object_get(v, "userlist"));
    json_decref(v);
    assert_true(json_array_size(T.members) >= 3);
    T.in_users = json_object();
    T.in_depts = json_object();
    T.in_tags = json_object();
    for (k = 0; k < 2; k++) {
        json_array_foreach(json_object_get(priv, plist[k]), i, e)
            mark_subtree(T.in_depts, T.depts, (long)json_integer_value(e));
        json_array_foreach(json_object_get(priv, ulist[k]), i, e)
            json_object_set_new(T.in_users, json_string_value(e), json_true());
        json_array_foreach(json_object_get(priv, tlist[k]), i, e)
        {
            long tag = (long)json_integer_value(e);

            set_add_long(T.in_tags, tag);
            snprintf(q, sizeof(q), "tagid=%ld", tag);
            v = direct("GET", "/cgi-bin/tag/get", q, NULL);
            json_array_foreach(json_object_get(v, "userlist"), j, m)
                json_object_set_new(T.in_users, h_str(m, "userid"),
                                    json_true());
            json_array_foreach(json_object_get(v, "partylist"), j, d)
                mark_subtree(T.in_depts, T.depts, (long)json_integer_value(d));
            json_decref(v);
        }
    }
    json_array_foreach(T.members, i, m)
    {
        json_array_foreach(json_object_get(m, "department"), j, d)
        {
            if (set_has_long(T.in_depts, (long)json_integer_value(d)))
                json_object_set_new(T.in_users, h_str(m, "userid"),
                                    json_true());
        }
    }
}

/* Our own corp token for CORP1, minted at the simulator as the broker
 * would (the permanent code is visible in the simulator's request log). */
static void
direct_token(const char *ticket)
{
    json_t *reqs, *e, *st, *ct;
    const char *pcode = NULL;
    char body[600], path[300];
    size_t i;

    reqs = h_sim_json(MockPort, "GET",
                      "/__mock/requests?path=/cgi-bin/service/get_auth_info",
                      NULL);
    json_array_foreach(reqs, i, e)
    {
        const json_t *b = json_object_get(e, "body");

        if (strcmp(h_str(b, "auth_corpid"), CORP1) == 0)
            pcode = h_str(b, "permanent_code");
    }
    assert_non_null(pcode);
    snprintf(body, sizeof(body),
             "{\"suite_id\":\"%s\",\"suite_secret\":\"%s\","
             "\"suite_ticket\":\"%s\"}",
             S1, H_SECRET, ticket);
    st = h_sim_json(MockPort, "POST", "/cgi-bin/service/get_suite_token", body);
    snprintf(path, sizeof(path),
             "/cgi-bin/service/get_corp_token?suite_access_token=%s",
             h_str(st, "suite_access_token"));
    snprintf(body, sizeof(body),
             "{\"auth_corpid\":\"%s\",\"permanent_code\":\"%s\"}", CORP1,
             pcode);
    ct = h_sim_json(MockPort, "POST", path, body);
    snprintf(Corp_token, sizeof(Corp_token), "%s", h_str(ct, "access_token"));
    assert_true(strlen(Corp_token) > 16);
    json_decref(ct);
    json_decref(st);
    json_decref(reqs);
}

/* Pick the subjects the tests use, from the truth. */
static void
pick_subjects(void)
{
    json_t *v, *e, *m;
    size_t i, j;
    long id;

    In_member[0] = Out_member[0] = '\0';
    json_array_foreach(T.members, i, m)
    {
        const char *u = h_str(m, "userid");

        if (set_has(T.in_users, u) && In_member[0] == '\0' &&
            json_object_get(m, "mobile") != NULL)
            snprintf(In_member, sizeof(In_member), "%s", u);
        if (!set_has(T.in_users, u) && Out_member[0] == '\0')
            snprintf(Out_member, sizeof(Out_member), "%s", u);
    }
    assert_true(In_member[0] != '\0');
    assert_true(Out_member[0] != '\0');
    Out_dept = 0;
    json_array_foreach(T.depts, i, e)
    {
        id = (long)json_integer_value(json_object_get(e, "id"));
        if (!set_has_long(T.in_depts, id) && Out_dept == 0)
            Out_dept = id;
    }
    assert_true(Out_dept > 0);
    v = direct("GET", "/cgi-bin/tag/list", NULL, NULL);
    Out_tag = 0;
    json_array_foreach(json_object_get(v, "taglist"), i, e)
    {
        id = (long)json_integer_value(json_object_get(e, "tagid"));
        if (!set_has_long(T.in_tags, id) && Out_tag == 0)
            Out_tag = id;
    }
    json_decref(v);
    assert_true(Out_tag > 0);
    /* a follow user in range with a customer, and one out of range */
    In_follower[0] = Out_follower[0] = In_customer[0] = '\0';
    v = direct("GET", "/cgi-bin/externalcontact/get_follow_user_list", NULL,
               NULL);
    json_array_foreach(json_object_get(v, "follow_user"), i, e)
    {
        const char *u = json_string_value(e);

        if (set_has(T.in_users, u) && In_follower[0] == '\0')
            snprintf(In_follower, sizeof(In_follower), "%s", u);
        if (!set_has(T.in_users, u) && Out_follower[0] == '\0')
            snprintf(Out_follower, sizeof(Out_follower), "%s", u);
    }
    json_decref(v);
    assert_true(In_follower[0] != '\0');
    assert_true(Out_follower[0] != '\0');
    {
        char q[64];

        snprintf(q, sizeof(q), "userid=%s", In_follower);
        v = direct("GET", "/cgi-bin/externalcontact/list", q, NULL);
        snprintf(In_customer, sizeof(In_customer), "%s",
                 json_string_value(
                     json_array_get(json_object_get(v, "external_userid"), 0)));
        json_decref(v);
    }
    assert_true(In_customer[0] != '\0');
    /* a chat whose owner is in range */
    In_chat[0] = '\0';
    v = direct("POST", "/cgi-bin/externalcontact/groupchat/list", NULL,
               "{\"limit\":1000}");
    json_array_foreach(json_object_get(v, "group_chat_list"), i, e)
    {
        char body[200];
        json_t *g;

        snprintf(body, sizeof(body), "{\"chat_id\":\"%s\"}",
                 h_str(e, "chat_id"));
        g = direct("POST", "/cgi-bin/externalcontact/groupchat/get", NULL,
                   body);
        m = json_object_get(g, "group_chat");
        if (In_chat[0] == '\0' && set_has(T.in_users, h_str(m, "owner"))) {
            snprintf(In_chat, sizeof(In_chat), "%s", h_str(e, "chat_id"));
            snprintf(In_owner, sizeof(In_owner), "%s", h_str(m, "owner"));
        }
        json_decref(g);
    }
    json_decref(v);
    assert_true(In_chat[0] != '\0');
    (void)j;
}

/*---- Fixtures ----*/

static int
broker_ready_at(int port)
{
    char url[64], *body = NULL;
    long st;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", port);
    st = h_http("GET", url, NULL, 0, &body);
    free(body);
    return st == 200;
}

static int
b_ready(void *arg)
{
    (void)arg;
    return broker_ready_at(Bport);
}

static const char *
broker_extra(int api_port)
{
    static char extra[512];

    snprintf(extra, sizeof(extra),
             "wecom_api_base = http://127.0.0.1:%d\n"
             "event_claim_idle = 3\n"
             "event_max_attempts = 4\n"
             /* above the simulator's SYN retry (1 s) when 200 requests
              * overflow its accept queue of 128 */
             "upstream_timeout_ms = 3000\n"
             "upstream_max_body = 4194304\n"
             "upstream_rate_per_corp = 1000\n",
             api_port);
    return extra;
}

/* A loopback port nobody listens on: bound, then closed. */
static int
closed_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Write conf for another instance on fresh ports, keeping H's own. */
static int
other_conf(const char *conf, int api_port, int *int_port)
{
    int cb = H.cb_port, ip = H.int_port, rc;

    rc = h_write_conf_to(&H, conf, 0, broker_extra(api_port));
    *int_port = H.int_port;
    H.cb_port = cb;
    H.int_port = ip;
    return rc;
}

static int
setup(void **state)
{
    /* an upstream that sends too much (every record, every field): what
     * this suite checks is the broker's own filtering, its defence when
     * WeCom returns more than the grant allows */
    const char *extra[] = {"--suite", S1 ":" H_SECRET, "--corps", "6",
                           "--quiet", "--leaky",       NULL};
    const char *ticket;
    json_t *t;

    (void)state;
    if (h_setup(&H) != 0)
        return -1;
    if (getenv("KEEP_TEST_DIR") != NULL)
        fprintf(stderr, "# test directory: %s\n", H.dir);
    Mock = h_mock_start(H.dir, extra, &MockPort);
    if (Mock == 0)
        return -1;
    /* CORP1 also grants contact:edit:all, which user/list_id needs */
    h_sim_ok(MockPort, "POST", "/__mock/permissions",
             "{\"corpid\":\"" CORP1 "\",\"app_permissions\":["
             "\"contact:base:base\",\"externalcontact:base:base\","
             "\"contact:edit:all\"]}");
    if (h_write_conf(&H, 0, broker_extra(MockPort)) != 0 ||
        h_broker_start(&H) != 0)
        return -1;
    Aport = H.int_port;
    snprintf(Bconf, sizeof(Bconf), "%s/broker-b.conf", H.dir);
    snprintf(Blog, sizeof(Blog), "%s/broker-b.log", H.dir);
    if (other_conf(Bconf, MockPort, &Bport) != 0)
        return -1;
    Bpid = h_spawn_broker(Bconf, Blog);
    if (Bpid == 0 || !h_wait(b_ready, NULL, 20000))
        return -1;
    tc_init(&H, MockPort);
    ticket = tc_push_ticket(S1);
    tc_install(S1, CORP1, h_next_ts());
    tc_install(S1, CORP2, h_next_ts());
    tc_wait_status(S1, CORP1, "active", 30000);
    tc_wait_status(S1, CORP2, "active", 30000);
    direct_token(ticket);
    t = tenant_show(CORP1);
    truth_compute(json_object_get(t, "privilege"));
    json_decref(t);
    pick_subjects();
    Reader_secret = tc_svc_add("reader", "contacts.read", NULL, NULL);
    Crm_secret =
        tc_svc_add("crm", "contacts.read,external.customers", NULL, NULL);
    Sdk_secret =
        tc_svc_add("sdk", "contacts.read,contact:edit:all", NULL, NULL);
    Reader_tok = tc_token_for(Aport, Reader_secret, CORP1);
    Crm_tok = tc_token_for(Aport, Crm_secret, CORP1);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    tc_done();
    if (Cpid > 0)
        h_stop(Cpid, SIGKILL);
    if (Bpid > 0)
        h_stop(Bpid, SIGKILL);
    if (Mock > 0)
        h_stop(Mock, SIGTERM);
    truth_free();
    free(Reader_secret);
    free(Reader_tok);
    free(Crm_secret);
    free(Crm_tok);
    free(Sdk_secret);
    h_teardown(&H);
    return 0;
}

/*---- gettoken ----*/

static void
test_gettoken_issues_and_reuses(void **state)
{
    struct sc_resp r;
    char *again;

    (void)state;
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            CORP1, Reader_secret);
    SC_EXPECT(&r, 200, 0);
    assert_string_equal(h_str(r.json, "errmsg"), "ok");
    assert_true(json_integer_value(json_object_get(r.json, "expires_in")) >
                7000);
    assert_true(json_integer_value(json_object_get(r.json, "expires_in")) <=
                7200);
    /* like WeCom: the current token while more than 5 minutes remain, on
     * either instance */
    assert_string_equal(h_str(r.json, "access_token"), Reader_tok);
    sc_resp_free(&r);
    again = tc_token_for(Bport, Reader_secret, CORP1);
    assert_string_equal(again, Reader_tok);
    free(again);
    /* the corp token itself is never handed out */
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            CORP1, Reader_secret);
    assert_null(strstr(r.body, Corp_token));
    sc_resp_free(&r);
}

/*---- The error table, row by row ----*/

static void
test_41001_no_access_token(void **state)
{
    struct sc_resp r;

    (void)state;
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/user/get?userid=%s", In_member);
    SC_EXPECT(&r, 200, 41001);
    sc_resp_free(&r);
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/department/list");
    SC_EXPECT(&r, 200, 41001);
    sc_resp_free(&r);
    sc_call(&r, Aport, "POST", "{\"limit\":10}", "/cgi-bin/user/list_id");
    SC_EXPECT(&r, 200, 41001);
    sc_resp_free(&r);
    /* an empty one is none, as at WeCom */
    sc_call(&r, Bport, "GET", NULL, "/cgi-bin/tag/list?access_token=");
    SC_EXPECT(&r, 200, 41001);
    sc_resp_free(&r);
}

static void
test_40014_unknown_token(void **state)
{
    char fake[SERVICE_TOKEN_LEN + 1];
    struct sc_resp r;

    (void)state;
    memset(fake, 'A', SERVICE_TOKEN_LEN);
    fake[SERVICE_TOKEN_LEN] = '\0';
    sc_call(&r, Aport, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", fake, In_member);
    SC_EXPECT(&r, 200, 40014);
    sc_resp_free(&r);
    /* a token one character off */
    memcpy(fake, Reader_tok, sizeof(fake));
    fake[10] = fake[10] == 'x' ? 'y' : 'x';
    sc_call(&r, Bport, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", fake, In_member);
    SC_EXPECT(&r, 200, 40014);
    sc_resp_free(&r);
    sc_call(&r, Aport, "GET", NULL,
            "/cgi-bin/user/get?access_token=short&userid=%s", In_member);
    SC_EXPECT(&r, 200, 40014);
    sc_resp_free(&r);
    /* WeCom's own corp token is no broker token */
    sc_call(&r, Aport, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", Corp_token,
            In_member);
    SC_EXPECT(&r, 200, 40014);
    sc_resp_free(&r);
    /* the real one works */
    sc_call(&r, Aport, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", Reader_tok,
            In_member);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
}

static int refused_on(int port, const char *tok, long want);

static void
test_40014_revoked_service_token(void **state)
{
    char *sec = tc_svc_add("gone-soon", "contacts.read", NULL, NULL), *tok;
    struct sc_resp r;
    json_t *v;
    long t0;
    int rc;

    (void)state;
    tok = tc_token_for(Aport, sec, CORP1);
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/tag/list?access_token=%s", tok);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    v = tc_ctl(&rc, "service", "revoke", "gone-soon", (const char *)NULL);
    assert_int_equal(rc, 0);
    json_decref(v);
    /* SPEC: revoke takes effect on every instance within 1 s */
    t0 = h_now_ms();
    while (!refused_on(Aport, tok, 40014) && h_now_ms() - t0 < 1000)
        usleep(5000);
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/tag/list?access_token=%s", tok);
    SC_EXPECT(&r, 200, 40014);
    sc_resp_free(&r);
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            CORP1, sec);
    SC_EXPECT(&r, 200, 40001);
    sc_resp_free(&r);
    free(tok);
    free(sec);
}

/* The btok key of a token: wb:btok:{sha256 hex}. */
static void
btok_key(const char *tok, char *key, size_t len)
{
    char h[65];

    service_token_hash(tok, strlen(tok), h);
    snprintf(key, len, "wb:btok:{%s}", h);
}

static void
test_42001_expired_token(void **state)
{
    char *sec = tc_svc_add("short-lived", "contacts.read", NULL, NULL), *tok;
    char key[128];
    redisContext *c = h_redis(&H);
    redisReply *x;
    long long exp, ttl, shift, now = (long long)time(NULL);
    struct sc_resp r;

    (void)state;
    assert_non_null(c);
    tok = tc_token_for(Aport, sec, CORP1);
    btok_key(tok, key, sizeof(key));
    x = redisCommand(c, "HGET %s exp", key);
    assert_int_equal(x->type, REDIS_REPLY_STRING);
    exp = strtoll(x->str, NULL, 10);
    freeReplyObject(x);
    x = redisCommand(c, "TTL %s", key);
    ttl = x->integer;
    freeReplyObject(x);
    assert_true(exp > now + 7000);
    /* move the clock past the token's end: the stored expiry and the key's
     * own lifetime shift together, as they would if 7200 s had passed */
    shift = exp - now + 2;
    x = redisCommand(c, "HSET %s exp %lld", key, exp - shift);
    freeReplyObject(x);
    if (ttl - shift > 0)
        x = redisCommand(c, "EXPIRE %s %lld", key, ttl - shift);
    else
        x = redisCommand(c, "DEL %s", key);
    freeReplyObject(x);
    /* never used before on either instance, so nothing is cached */
    sc_call(&r, Aport, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", tok, In_member);
    SC_EXPECT(&r, 200, 42001);
    sc_resp_free(&r);
    sc_call(&r, Bport, "GET", NULL, "/cgi-bin/tag/list?access_token=%s", tok);
    SC_EXPECT(&r, 200, 42001);
    sc_resp_free(&r);
    redisFree(c);
    free(tok);
    free(sec);
}

static void
test_40001_gettoken_bad_credentials(void **state)
{
    static const char *const bad[] = {
        "0123456789abcdef.nope", /* unknown id */
        "nodot",
        "",
        ".",
    };
    char wrong[256], *dot;
    struct sc_resp r;
    size_t i;

    (void)state;
    /* the right id with a wrong SECRET, on both instances */
    snprintf(wrong, sizeof(wrong), "%s", Reader_secret);
    dot = strchr(wrong, '.');
    dot[1] = dot[1] == 'x' ? 'y' : 'x';
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            CORP1, wrong);
    SC_EXPECT(&r, 200, 40001);
    assert_null(json_object_get(r.json, "access_token"));
    sc_resp_free(&r);
    sc_call(&r, Bport, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            CORP1, wrong);
    SC_EXPECT(&r, 200, 40001);
    sc_resp_free(&r);
    /* a secret of another service's id */
    snprintf(wrong, sizeof(wrong), "%.*s%s",
             (int)(strchr(Crm_secret, '.') - Crm_secret), Crm_secret,
             strchr(Reader_secret, '.'));
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            CORP1, wrong);
    SC_EXPECT(&r, 200, 40001);
    sc_resp_free(&r);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sc_call(&r, Aport, "GET", NULL,
                "/cgi-bin/gettoken?corpid=%s&corpsecret=%s", CORP1, bad[i]);
        SC_EXPECT(&r, 200, 40001);
        sc_resp_free(&r);
    }
}

static void
test_40013_gettoken_not_a_tenant(void **state)
{
    struct sc_resp r;

    (void)state;
    /* a corp the simulator knows but that never installed the app */
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            CORP6, Reader_secret);
    SC_EXPECT(&r, 200, 40013);
    sc_resp_free(&r);
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            "wwnosuchcorp", Reader_secret);
    SC_EXPECT(&r, 200, 40013);
    sc_resp_free(&r);
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            "bad%20corp%2F..", Reader_secret);
    SC_EXPECT(&r, 200, 40013);
    sc_resp_free(&r);
}

static void
test_48004_outside_service_corps(void **state)
{
    char *sec = tc_svc_add("corp2-only", "contacts.read", "--corps", CORP2);
    char *tok;
    struct sc_resp r;

    (void)state;
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            CORP1, sec);
    SC_EXPECT(&r, 200, 48004);
    assert_null(json_object_get(r.json, "access_token"));
    sc_resp_free(&r);
    tok = tc_token_for(Bport, sec, CORP2);
    sc_call(&r, Bport, "GET", NULL, "/cgi-bin/tag/list?access_token=%s", tok);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    free(tok);
    free(sec);
}

static void
test_48004_installing_tenant(void **state)
{
    struct sc_resp r;

    (void)state;
    /* get_auth_info keeps failing: the tenant stays "installing" */
    fault("{\"path\":\"/cgi-bin/service/get_auth_info\",\"count\":1000,"
          "\"errcode\":-1}");
    tc_install(S1, CORP3, h_next_ts());
    tc_wait_status(S1, CORP3, "installing", 30000);
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            CORP3, Reader_secret);
    SC_EXPECT(&r, 200, 48004);
    sc_resp_free(&r);
}

static int
lost_recorded(void *arg)
{
    int rc;
    json_t *arr = tc_ctl(&rc, "suite", (const char *)NULL), *s;
    size_t i;
    long v = 0;

    (void)arg;
    json_array_foreach(arr, i, s)
    {
        v +=
            (long)json_integer_value(json_object_get(s, "lost_authorizations"));
    }
    json_decref(arr);
    return v >= 1;
}

static void
test_48004_reinstall_required(void **state)
{
    struct sc_resp r;

    (void)state;
    fault("{\"path\":\"/cgi-bin/service/get_permanent_code\",\"count\":1,"
          "\"drop_reply\":true}");
    tc_install(S1, CORP4, h_next_ts());
    assert_true(h_wait(lost_recorded, NULL, 30000));
    tc_corp_event(S1, "change_contact", CORP4, h_next_ts(), "ChangeType",
                  "delete_user");
    tc_wait_status(S1, CORP4, "reinstall_required", 30000);
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            CORP4, Reader_secret);
    SC_EXPECT(&r, 200, 48004);
    sc_resp_free(&r);
    sc_call(&r, Bport, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            CORP4, Reader_secret);
    SC_EXPECT(&r, 200, 48004);
    sc_resp_free(&r);
}

/* Each request refused with code, and the simulator never asked. */
struct refusal {
    const char *method;
    const char *path; /* with its query, without access_token */
    const char *body; /* POST */
};

/* No tenant queue is being worked on or waiting. */
static int
workers_idle(void *arg)
{
    (void)arg;
    return h_redis_int(&H, "HLEN wb:{%s}:lease", S1) == 0 &&
           h_redis_int(&H, "ZCARD wb:{%s}:ready", S1) == 0;
}

static void
expect_refused(const char *tok, const struct refusal *t, size_t n, long code)
{
    size_t i, before, bad = 0;
    struct sc_resp r;

    for (i = 0; i < n; i++) {
        char p[128];
        const char *q = strchr(t[i].path, '?');

        snprintf(p, sizeof(p), "%.*s",
                 (int)(q ? (size_t)(q - t[i].path) : strlen(t[i].path)),
                 t[i].path);
        /* no tenant's events in flight: a directory sync would call the
         * same paths */
        assert_true(h_wait(workers_idle, NULL, 30000));
        before = tc_mock_count(p, NULL);
        sc_call(&r, i % 2 ? Bport : Aport, t[i].method, t[i].body,
                "%s%caccess_token=%s", t[i].path, q ? '&' : '?', tok);
        /* refused, and before WeCom is called */
        if (r.status != 200 || sc_ecode(&r) != code ||
            tc_mock_count(p, NULL) != before) {
            fprintf(stderr, "# %s %s %s: want %ld, got %ld %.200s%s\n",
                    t[i].method, t[i].path, t[i].body ? t[i].body : "", code,
                    r.status, r.body ? r.body : "",
                    tc_mock_count(p, NULL) != before ? " (WeCom was called)"
                                                     : "");
            bad++;
        }
        sc_resp_free(&r);
    }
    assert_int_equal(bad, 0);
}

static void
test_40035_bad_parameters_get(void **state)
{
    char p[24][160];
    struct refusal t[24];
    size_t n = 0, i;

    (void)state;
#define ADD(...)                                                               \
    do {                                                                       \
        snprintf(p[n], sizeof(p[n]), __VA_ARGS__);                             \
        t[n].method = "GET";                                                   \
        t[n].path = p[n];                                                      \
        t[n].body = NULL;                                                      \
        n++;                                                                   \
    } while (0)
    ADD("/cgi-bin/user/get?userid=%s&foo=1", In_member);   /* undeclared */
    ADD("/cgi-bin/user/get?userid=%s&debug=1", In_member); /* undeclared */
    ADD("/cgi-bin/user/get?userid=%s&userid=%s", In_member, In_member);
    ADD("/cgi-bin/user/get?userid=%%zz");               /* malformed */
    ADD("/cgi-bin/user/get?userid=%s%%00x", In_member); /* NUL */
    ADD("/cgi-bin/user/get");                           /* missing */
    ADD("/cgi-bin/user/simplelist?department_id=abc");  /* type */
    ADD("/cgi-bin/user/simplelist?department_id=");     /* empty */
    ADD("/cgi-bin/user/simplelist?department_id=2.0");
    ADD("/cgi-bin/user/list?department_id=2&fetch_child=yes");
    ADD("/cgi-bin/department/get?id=2&id=2");
    ADD("/cgi-bin/tag/get?tagid=1&tagid=2");
    ADD("/cgi-bin/agent/get"); /* missing */
    ADD("/cgi-bin/agent/get?agentid=%s&agentid=%s", AGENTID, AGENTID);
    ADD("/cgi-bin/tag/list?x"); /* undeclared */
#undef ADD
    expect_refused(Reader_tok, t, n, 40035);
    /* access_token itself repeated */
    {
        struct sc_resp r;

        sc_call(&r, Aport, "GET", NULL,
                "/cgi-bin/tag/list?access_token=%s&access_token=%s", Reader_tok,
                Reader_tok);
        SC_EXPECT(&r, 200, 40035);
        sc_resp_free(&r);
    }
    (void)i;
}

static void
test_40035_bad_parameters_post(void **state)
{
    char p[20][300], bodies[20][300];
    struct refusal t[20];
    size_t n = 0;

    (void)state;
#define ADD(pth, ...)                                                          \
    do {                                                                       \
        snprintf(p[n], sizeof(p[n]), "%s", pth);                               \
        snprintf(bodies[n], sizeof(bodies[n]), __VA_ARGS__);                   \
        t[n].method = "POST";                                                  \
        t[n].path = p[n];                                                      \
        t[n].body = bodies[n];                                                 \
        n++;                                                                   \
    } while (0)
#define BATCH "/cgi-bin/externalcontact/batch/get_by_user"
#define GLIST "/cgi-bin/externalcontact/groupchat/list"
    ADD(BATCH, "{\"userid_list\":[\"%s\"]", In_follower); /* not JSON */
    ADD(BATCH, "[\"%s\"]", In_follower);                  /* not an object */
    ADD(BATCH, "{\"userid_list\":[\"%s\"],\"foo\":1}", In_follower);
    ADD(BATCH, "{\"userid_list\":[\"%s\"],\"userid_list\":[\"%s\"]}",
        In_follower, Out_follower);                      /* repeated */
    ADD(BATCH, "{\"userid_list\":\"%s\"}", In_follower); /* type */
    ADD(BATCH, "{\"userid_list\":[\"%s\"],\"limit\":\"10\"}", In_follower);
    ADD(BATCH, "{\"userid_list\":[\"%s\"],\"limit\":1.5}", In_follower);
    ADD(BATCH, "{\"userid_list\":[\"%s\",7]}", In_follower);
    ADD(BATCH, "{\"limit\":10}"); /* missing */
    ADD(BATCH, "{}");
    ADD(BATCH "?debug=1", "{\"userid_list\":[\"%s\"]}", In_follower);
    ADD(GLIST, "{\"limit\":100}"); /* the owner filter is required */
    ADD(GLIST, "{\"owner_filter\":{\"userid_list\":[]},\"limit\":100}");
    ADD(GLIST, "{\"owner_filter\":{},\"limit\":100}");
    ADD(GLIST, "{\"owner_filter\":{\"userid_list\":[\"%s\"]}}", In_owner);
    ADD(GLIST,
        "{\"owner_filter\":{\"userid_list\":[\"%s\"],\"x\":1},\"limit\":10}",
        In_owner);
    ADD(GLIST, "{\"owner_filter\":[\"%s\"],\"limit\":10}", In_owner);
    ADD("/cgi-bin/externalcontact/groupchat/get", "{\"chat_id\":7}");
#undef ADD
#undef BATCH
#undef GLIST
    expect_refused(Crm_tok, t, n, 40035);
}

static void
test_48002_undeclared_write_or_ungranted(void **state)
{
    static const struct refusal writes[] = {
        {"POST", "/cgi-bin/user/create", "{\"userid\":\"x\",\"name\":\"x\"}"},
        {"POST", "/cgi-bin/user/update", "{\"userid\":\"u00001\"}"},
        {"GET", "/cgi-bin/user/delete?userid=u00001", NULL},
        {"POST", "/cgi-bin/message/send", "{\"touser\":\"@all\"}"},
        {"POST", "/cgi-bin/externalcontact/remark", "{}"},
        {"POST", "/cgi-bin/service/get_corp_token", "{}"},
        {"GET", "/cgi-bin/service/get_permanent_code", NULL},
        {"POST", "/cgi-bin/user/get?userid=u00003", "{}"}, /* wrong method */
        {"GET", "/cgi-bin/user/list_id", NULL},
        {"PUT", "/cgi-bin/tag/list", NULL},
        {"DELETE", "/cgi-bin/tag/list", NULL},
        {"GET", "/cgi-bin/tag/list/", NULL},
        {"GET", "/cgi-bin/tag/listx", NULL},
        {"GET", "/cgi-bin/", NULL},
        {"GET", "/etc/passwd", NULL},
    };
    static const struct refusal crm_lacks[] = {
        {"POST", "/cgi-bin/user/list_id", "{\"limit\":10}"},
    };
    struct refusal reader_lacks[4];
    char p[4][128], b[4][128];
    char *sens_sec =
        tc_svc_add("sensitive-only", "member.sensitive", NULL, NULL);
    char *sens_tok = tc_token_for(Aport, sens_sec, CORP1);
    char *sdk2 = tc_token_for(Aport, Sdk_secret, CORP2);
    struct refusal sens[2] = {{"GET", p[3], NULL},
                              {"GET", "/cgi-bin/tag/list", NULL}};

    (void)state;
    expect_refused(Reader_tok, writes, sizeof(writes) / sizeof(writes[0]),
                   48002);
    /* the service's scopes lack the endpoint's */
    snprintf(p[0], sizeof(p[0]), "/cgi-bin/externalcontact/list?userid=%s",
             In_follower);
    snprintf(p[1], sizeof(p[1]), "/cgi-bin/user/list_id");
    snprintf(b[1], sizeof(b[1]), "{\"limit\":10}");
    snprintf(p[2], sizeof(p[2]), "/cgi-bin/externalcontact/groupchat/get");
    snprintf(b[2], sizeof(b[2]), "{\"chat_id\":\"%s\"}", In_chat);
    snprintf(p[3], sizeof(p[3]), "/cgi-bin/user/get?userid=%s", In_member);
    reader_lacks[0] = (struct refusal){"GET", p[0], NULL};
    reader_lacks[1] = (struct refusal){"POST", p[1], b[1]};
    reader_lacks[2] = (struct refusal){"POST", p[2], b[2]};
    expect_refused(Reader_tok, reader_lacks, 3, 48002);
    expect_refused(Crm_tok, crm_lacks, 1, 48002);
    expect_refused(sens_tok, sens, 2, 48002);
    /* the tenant lacks it: CORP2 never granted contact:edit:all */
    expect_refused(sdk2, crm_lacks, 1, 48002);
    free(sens_tok);
    free(sens_sec);
    free(sdk2);
}

static void
test_60011_subject_out_of_range(void **state)
{
    char p[16][200], b[16][200];
    struct refusal t[16];
    size_t n = 0;

    (void)state;
#define ADD(mth, bdy, ...)                                                     \
    do {                                                                       \
        snprintf(p[n], sizeof(p[n]), __VA_ARGS__);                             \
        snprintf(b[n], sizeof(b[n]), "%s", bdy ? bdy : "");                    \
        t[n].method = mth;                                                     \
        t[n].path = p[n];                                                      \
        t[n].body = bdy ? b[n] : NULL;                                         \
        n++;                                                                   \
    } while (0)
    ADD("GET", NULL, "/cgi-bin/user/get?userid=%s", Out_member);
    ADD("GET", NULL, "/cgi-bin/user/get?userid=nosuchuser");
    ADD("GET", NULL, "/cgi-bin/user/simplelist?department_id=%ld", Out_dept);
    ADD("GET", NULL, "/cgi-bin/user/list?department_id=1&fetch_child=1");
    ADD("GET", NULL, "/cgi-bin/user/list?department_id=%ld", Out_dept);
    ADD("GET", NULL, "/cgi-bin/department/get?id=%ld", Out_dept);
    ADD("GET", NULL, "/cgi-bin/department/list?id=1");
    ADD("GET", NULL, "/cgi-bin/department/simplelist?id=%ld", Out_dept);
    ADD("GET", NULL, "/cgi-bin/tag/get?tagid=%ld", Out_tag);
    ADD("GET", NULL, "/cgi-bin/tag/get?tagid=999");
#undef ADD
    expect_refused(Reader_tok, t, n, 60011);
    n = 0;
    snprintf(p[n], sizeof(p[n]), "/cgi-bin/externalcontact/list?userid=%s",
             Out_follower);
    t[n++] = (struct refusal){"GET", p[0], NULL};
    snprintf(p[n], sizeof(p[n]), "/cgi-bin/externalcontact/batch/get_by_user");
    snprintf(b[n], sizeof(b[n]), "{\"userid_list\":[\"%s\",\"%s\"]}",
             In_follower, Out_follower);
    t[n] = (struct refusal){"POST", p[n], b[n]};
    n++;
    snprintf(p[n], sizeof(p[n]), "/cgi-bin/externalcontact/groupchat/list");
    snprintf(b[n], sizeof(b[n]),
             "{\"owner_filter\":{\"userid_list\":[\"%s\"]},\"limit\":100}",
             Out_member);
    t[n] = (struct refusal){"POST", p[n], b[n]};
    n++;
    expect_refused(Crm_tok, t, n, 60011);
}

/*---- WeCom's failures ----*/

static void
expect_upstream_error(const char *fault_json, const char *path, long status,
                      const char *const *absent)
{
    struct sc_resp r;
    size_t i;

    tc_clear_faults(NULL);
    fault(fault_json);
    sc_call(&r, Aport, "GET", NULL, "%s%saccess_token=%s", path,
            strchr(path, '?') ? "&" : "?", Reader_tok);
    if (r.status != status)
        fprintf(stderr, "# fault %s: got %ld %.200s\n", fault_json, r.status,
                r.body);
    SC_EXPECT(&r, status, -1);
    assert_true(r.len < 400);
    for (i = 0; absent != NULL && absent[i] != NULL; i++)
        if (strstr(r.body, absent[i]) != NULL) {
            fprintf(stderr, "# upstream bytes passed: %s in %s\n", absent[i],
                    r.body);
            fail();
        }
    sc_resp_free(&r);
    tc_clear_faults(NULL);
}

static void
test_504_upstream_timeout(void **state)
{
    long t0 = h_now_ms();

    (void)state;
    expect_upstream_error("{\"path\":\"/cgi-bin/tag/list\",\"count\":1,"
                          "\"delay_ms\":6000}",
                          "/cgi-bin/tag/list", 504, NULL);
    /* upstream_timeout_ms is 3000 */
    assert_true(h_now_ms() - t0 >= 2900);
    assert_true(h_now_ms() - t0 < 5000);
}

static void
test_502_upstream_unreachable(void **state)
{
    char conf[400], log[400];
    int port, cport;
    struct sc_resp r;
    long t0;

    (void)state;
    /* the connection closed without a reply */
    /* more than once: a client may retry on another connection when a
     * reused one dies before any reply, and the pool may hold several */
    expect_upstream_error("{\"path\":\"/cgi-bin/tag/list\",\"count\":5,"
                          "\"drop_reply\":true}",
                          "/cgi-bin/tag/list", 502, NULL);
    /* a third instance whose wecom_api_base has nobody listening */
    snprintf(conf, sizeof(conf), "%s/broker-c.conf", H.dir);
    snprintf(log, sizeof(log), "%s/broker-c.log", H.dir);
    assert_int_equal(other_conf(conf, closed_port(), &cport), 0);
    Cpid = h_spawn_broker(conf, log);
    assert_true(Cpid > 0);
    port = cport;
    t0 = h_now_ms();
    while (!broker_ready_at(port) && h_now_ms() - t0 < 20000)
        usleep(20000);
    sc_call(&r, port, "GET", NULL, "/cgi-bin/tag/list?access_token=%s",
            Reader_tok);
    SC_EXPECT(&r, 502, -1);
    assert_null(strstr(r.body, "tagname"));
    sc_resp_free(&r);
    sc_call(&r, port, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", Reader_tok,
            In_member);
    SC_EXPECT(&r, 502, -1);
    sc_resp_free(&r);
    assert_int_equal(h_stop(Cpid, SIGTERM), 0);
    Cpid = 0;
}

static void
test_502_upstream_garbage_never_passed(void **state)
{
    static const char *const malformed_absent[] = {"userlist", "u00001", NULL};
    static const char *const nonjson_absent[] = {"html", "Bad Gateway", NULL};
    static const char *const huge_absent[] = {"huge reply", "xxxxxxxx",
                                              "userlist", NULL};

    (void)state;
    expect_upstream_error("{\"path\":\"/cgi-bin/user/simplelist\","
                          "\"count\":1,\"body\":\"malformed\"}",
                          "/cgi-bin/user/simplelist?department_id=2", 502,
                          malformed_absent);
    expect_upstream_error("{\"path\":\"/cgi-bin/tag/list\",\"count\":1,"
                          "\"body\":\"nonjson\"}",
                          "/cgi-bin/tag/list", 502, nonjson_absent);
    expect_upstream_error("{\"path\":\"/cgi-bin/tag/list\",\"count\":1,"
                          "\"status\":502,\"body\":\"nonjson\"}",
                          "/cgi-bin/tag/list", 502, nonjson_absent);
    expect_upstream_error("{\"path\":\"/cgi-bin/tag/list\",\"count\":1,"
                          "\"body\":\"empty\"}",
                          "/cgi-bin/tag/list", 502, NULL);
    expect_upstream_error("{\"path\":\"/cgi-bin/user/list\",\"count\":1,"
                          "\"body\":\"huge\"}",
                          "/cgi-bin/user/list?department_id=2", 502,
                          huge_absent);
}

static void
test_wecom_errcode_passed_through(void **state)
{
    struct sc_resp r;
    char *tok2;

    (void)state;
    fault("{\"path\":\"/cgi-bin/user/get\",\"count\":1,\"errcode\":60111}");
    sc_call(&r, Aport, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", Reader_tok,
            In_member);
    SC_EXPECT(&r, 200, 60111);
    assert_true(strlen(h_str(r.json, "errmsg")) > 0);
    sc_resp_free(&r);
    /* a 45009 pauses that tenant's API on every instance for WeCom's
     * 60 s (SPEC §5): a tenant and an API no later test calls */
    tok2 = tc_token_for(Bport, Reader_secret, CORP2);
    fault("{\"path\":\"/cgi-bin/department/list\",\"count\":1,"
          "\"errcode\":45009}");
    sc_call(&r, Bport, "GET", NULL, "/cgi-bin/department/list?access_token=%s",
            tok2);
    SC_EXPECT(&r, 200, 45009);
    sc_resp_free(&r);
    free(tok2);
    /* and the next call of another API is normal */
    sc_call(&r, Aport, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", Reader_tok,
            In_member);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
}

/*---- The field filter over every declared endpoint ----*/

static json_t *
load_endpoints(void)
{
    json_t *all = json_array(), *f, *e;
    json_error_t err;
    struct dirent *d;
    DIR *dir = opendir("scopes");
    char path[512];
    size_t i;

    assert_non_null(dir);
    while ((d = readdir(dir)) != NULL) {
        size_t l = strlen(d->d_name);

        if (l < 6 || strcmp(d->d_name + l - 5, ".json") != 0 ||
            d->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "scopes/%s", d->d_name);
        f = json_load_file(path, 0, &err);
        assert_non_null(f);
        json_array_foreach(json_object_get(f, "endpoints"), i, e)
            json_array_append(all, e);
        json_decref(f);
    }
    closedir(dir);
    assert_true(json_array_size(all) >= 16);
    return all;
}

/* A value for a declared parameter that names something in range. */
static int
param_value(const char *name, char *out, size_t len)
{
    static const struct {
        const char *name, *value;
    } fixed[] = {
        {"department_id", "2"}, {"fetch_child", "1"},   {"id", "2"},
        {"tagid", "1"},         {"agentid", AGENTID},   {"limit", "100"},
        {"need_name", "1"},     {"status_filter", "0"},
    };
    size_t i;

    for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (strcmp(name, fixed[i].name) == 0) {
            snprintf(out, len, "%s", fixed[i].value);
            return 1;
        }
    if (strcmp(name, "userid") == 0)
        snprintf(out, len, "%s", In_follower);
    else if (strcmp(name, "external_userid") == 0)
        snprintf(out, len, "%s", In_customer);
    else if (strcmp(name, "chat_id") == 0)
        snprintf(out, len, "%s", In_chat);
    else if (strcmp(name, "userid_list") == 0 ||
             strcmp(name, "owner_filter.userid_list") == 0)
        snprintf(out, len, "%s",
                 strcmp(name, "userid_list") == 0 ? In_follower : In_owner);
    else
        return 0; /* cursor: leave it out */
    return 1;
}

/* Call endpoint e through port with tok, every parameter we can fill. */
static void
call_endpoint(struct sc_resp *r, int port, const char *tok, const json_t *e)
{
    const char *path = h_str(e, "path"), *k;
    int post = strcmp(h_str(e, "method"), "POST") == 0;
    char q[1024] = "", val[128];
    json_t *body = json_object(), *p;
    char *bs;
    size_t o = 0;

    json_object_foreach(json_object_get(e, "params"), k, p)
    {
        const char *type = h_str(p, "type");

        if (!param_value(k, val, sizeof(val)))
            continue;
        if (!post) {
            o += (size_t)snprintf(q + o, sizeof(q) - o, "&%s=%s", k, val);
        } else if (strchr(k, '.') != NULL) {
            json_t *inner = json_object();

            json_object_set_new(inner, strchr(k, '.') + 1,
                                json_pack("[s]", val));
            json_object_set_new(body, "owner_filter", inner);
        } else if (strcmp(type, "array") == 0) {
            json_object_set_new(body, k, json_pack("[s]", val));
        } else if (strcmp(type, "integer") == 0) {
            json_object_set_new(body, k, json_integer(strtol(val, NULL, 10)));
        } else {
            json_object_set_new(body, k, json_string(val));
        }
    }
    bs = json_dumps(body, JSON_COMPACT);
    sc_call(r, port, post ? "POST" : "GET", post ? bs : NULL,
            "%s?access_token=%s%s", path, tok, q);
    free(bs);
    json_decref(body);
}

static int
scope_in(const char *scope, const char *const *allowed)
{
    size_t i;

    for (i = 0; allowed[i] != NULL; i++)
        if (strcmp(scope, allowed[i]) == 0)
            return 1;
    return 0;
}

/* Occurrences of needle in hay. */
static size_t
count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    const char *p = hay;

    while ((p = strstr(p, needle)) != NULL) {
        n++;
        p += strlen(needle);
    }
    return n;
}

static void
assert_absent(const char *path, const char *body, const char *needle)
{
    if (strstr(body, needle) != NULL) {
        fprintf(stderr, "# %s: \"%s\" leaked in %.400s\n", path, needle, body);
        fail();
    }
}

/* Values of the members' sensitive fields, as WeCom holds them. */
static void
assert_no_member_secrets(const char *path, const char *body)
{
    /* values unique enough to search for as bytes */
    static const char *const keys[] = {"mobile",       "email",     "avatar",
                                       "thumb_avatar", "telephone", "biz_mail",
                                       "qr_code"};
    const json_t *m;
    size_t i, k;

    json_array_foreach(T.members, i, m)
    {
        for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            const char *v = json_string_value(json_object_get(m, keys[k]));

            if (v != NULL && strlen(v) >= 4)
                assert_absent(path, body, v);
        }
    }
}

static void
test_contacts_read_never_sees_sensitive_fields(void **state)
{
    static const char *const allowed[] = {"always", "contact:base:base", NULL};
    static const char *const keys[] = {
        "mock_internal_note",  "\"mobile\"",  "\"email\"", "avatar\"",
        "\"telephone\"",       "\"address\"", "\"alias\"", "\"biz_mail\"",
        "\"position\"",        "\"extattr\"", "qr_code",   "@mockcorp",
        "wework.qpic.cn/wwpic"};
    json_t *eps = load_endpoints(), *e;
    size_t i, k, served = 0, refused = 0;
    struct sc_resp r;

    (void)state;
    json_array_foreach(eps, i, e)
    {
        const char *path = h_str(e, "path");

        call_endpoint(&r, i % 2 ? Bport : Aport, Reader_tok, e);
        /* a write (media/upload's scope is "always") needs a capability
         * the reader lacks */
        if (!scope_in(h_str(e, "scope"), allowed) ||
            json_is_true(json_object_get(e, "write"))) {
            SC_EXPECT(&r, 200, 48002);
            refused++;
            sc_resp_free(&r);
            continue;
        }
        if (r.status != 200 || sc_ecode(&r) != 0)
            fprintf(stderr, "# %s: %ld %.300s\n", path, r.status, r.body);
        SC_EXPECT(&r, 200, 0);
        for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
            assert_absent(path, r.body, keys[k]);
        /* a member's name never; agent/get's own name is the app's */
        if (count_of(r.body, "\"name\"") != count_of(r.body, APP_NAME)) {
            fprintf(stderr, "# %s: a name leaked: %.400s\n", path, r.body);
            fail();
        }
        assert_no_member_secrets(path, r.body);
        /* every simulator reply carries at least mock_internal_note */
        if (r.stripped <= 0)
            fprintf(stderr, "# %s: X-Broker-Stripped %ld\n", path, r.stripped);
        assert_true(r.stripped > 0);
        assert_true(r.dropped >= 0);
        served++;
        sc_resp_free(&r);
    }
    fprintf(stderr, "# contacts.read: %zu endpoints served, %zu refused\n",
            served, refused);
    assert_true(served >= 9);
    assert_true(refused >= 7);
    json_decref(eps);
}

static void
test_customers_service_sees_no_undeclared_or_never_fields(void **state)
{
    static const char *const allowed[] = {"always", "contact:base:base",
                                          "externalcontact:base:base", NULL};
    static const char *const keys[] = {
        "mock_internal_note", "\"mobile\"",
        "\"remark_mobiles\"", "\"email\"",
        "avatar\"",           "\"unionid\"",
        "\"gender\"",         "wework.qpic.cn/wwpic",
        "p.qlogo.cn/mmhead",  "@mockcorp"};
    json_t *eps = load_endpoints(), *e;
    size_t i, k, served = 0;
    struct sc_resp r;

    (void)state;
    json_array_foreach(eps, i, e)
    {
        const char *path = h_str(e, "path");

        /* writes are served as declared writes (test_writes.c) */
        if (!scope_in(h_str(e, "scope"), allowed) ||
            json_is_true(json_object_get(e, "write")))
            continue;
        call_endpoint(&r, i % 2 ? Aport : Bport, Crm_tok, e);
        if (r.status != 200 || sc_ecode(&r) != 0)
            fprintf(stderr, "# %s: %ld %.300s\n", path, r.status, r.body);
        SC_EXPECT(&r, 200, 0);
        for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
            assert_absent(path, r.body, keys[k]);
        assert_no_member_secrets(path, r.body);
        assert_true(r.stripped > 0);
        served++;
        sc_resp_free(&r);
    }
    assert_true(served >= 15);
    json_decref(eps);
}

/*---- The visible range on the replies ----*/

/* The ids at key (array of objects with idkey, or of scalars) as a set. */
static json_t *
ids_of(const json_t *arr, const char *idkey)
{
    json_t *set = json_object(), *e;
    size_t i;
    char buf[32];

    json_array_foreach(arr, i, e)
    {
        const json_t *v = idkey ? json_object_get(e, idkey) : e;

        if (json_is_string(v)) {
            json_object_set_new(set, json_string_value(v), json_true());
        } else if (json_is_integer(v)) {
            snprintf(buf, sizeof(buf), "%lld",
                     (long long)json_integer_value(v));
            json_object_set_new(set, buf, json_true());
        }
    }
    return set;
}

/* Reply ids == upstream ids ∩ range, and X-Broker-Dropped the rest. */
static void
expect_ids(const char *what, const struct sc_resp *r, json_t *reply_ids,
           json_t *upstream_ids, const json_t *range)
{
    const char *k;
    json_t *v;
    long out = 0;

    json_object_foreach(reply_ids, k, v)
    {
        if (!set_has(range, k)) {
            fprintf(stderr, "# %s: out-of-range %s in the reply\n", what, k);
            fail();
        }
    }
    json_object_foreach(upstream_ids, k, v)
    {
        if (set_has(range, k) && !set_has(reply_ids, k)) {
            fprintf(stderr, "# %s: in-range %s missing\n", what, k);
            fail();
        }
        if (!set_has(range, k))
            out++;
    }
    if (r->dropped != out)
        fprintf(stderr, "# %s: X-Broker-Dropped %ld, want %ld\n", what,
                r->dropped, out);
    assert_int_equal(r->dropped, out);
}

static void
test_user_lists_only_in_range(void **state)
{
    static const char *const paths[] = {"/cgi-bin/user/list",
                                        "/cgi-bin/user/simplelist"};
    const char *k;
    json_t *v, *up, *upids, *ids;
    struct sc_resp r;
    size_t i;
    char q[64];

    (void)state;
    json_object_foreach(T.in_depts, k, v)
    {
        for (i = 0; i < 4; i++) {
            snprintf(q, sizeof(q), "department_id=%s%s", k,
                     i / 2 ? "&fetch_child=1" : "");
            up = direct("GET", paths[i % 2], q, NULL);
            upids = ids_of(json_object_get(up, "userlist"), "userid");
            sc_call(&r, i % 2 ? Aport : Bport, "GET", NULL,
                    "%s?access_token=%s&%s", paths[i % 2], Reader_tok, q);
            SC_EXPECT(&r, 200, 0);
            ids = ids_of(json_object_get(r.json, "userlist"), "userid");
            expect_ids(paths[i % 2], &r, ids, upids, T.in_users);
            json_decref(ids);
            json_decref(upids);
            json_decref(up);
            sc_resp_free(&r);
        }
    }
}

static void
test_departments_tags_only_in_range(void **state)
{
    json_t *up, *upids, *ids;
    struct sc_resp r;
    char q[64];
    const char *k;
    json_t *v;

    (void)state;
    /* the whole tree: WeCom lists every department */
    up = direct("GET", "/cgi-bin/department/simplelist", NULL, NULL);
    upids = ids_of(json_object_get(up, "department_id"), "id");
    sc_call(&r, Aport, "GET", NULL,
            "/cgi-bin/department/simplelist?access_token=%s", Reader_tok);
    SC_EXPECT(&r, 200, 0);
    ids = ids_of(json_object_get(r.json, "department_id"), "id");
    expect_ids("department/simplelist", &r, ids, upids, T.in_depts);
    assert_true(r.dropped > 0);
    json_decref(ids);
    json_decref(upids);
    json_decref(up);
    sc_resp_free(&r);
    up = direct("GET", "/cgi-bin/department/list", NULL, NULL);
    upids = ids_of(json_object_get(up, "department"), "id");
    sc_call(&r, Bport, "GET", NULL, "/cgi-bin/department/list?access_token=%s",
            Reader_tok);
    SC_EXPECT(&r, 200, 0);
    ids = ids_of(json_object_get(r.json, "department"), "id");
    expect_ids("department/list", &r, ids, upids, T.in_depts);
    json_decref(ids);
    json_decref(upids);
    json_decref(up);
    sc_resp_free(&r);
    /* tags */
    up = direct("GET", "/cgi-bin/tag/list", NULL, NULL);
    upids = ids_of(json_object_get(up, "taglist"), "tagid");
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/tag/list?access_token=%s",
            Reader_tok);
    SC_EXPECT(&r, 200, 0);
    ids = ids_of(json_object_get(r.json, "taglist"), "tagid");
    expect_ids("tag/list", &r, ids, upids, T.in_tags);
    assert_true(r.dropped > 0);
    json_decref(ids);
    json_decref(upids);
    json_decref(up);
    sc_resp_free(&r);
    /* tag members */
    json_object_foreach(T.in_tags, k, v)
    {
        snprintf(q, sizeof(q), "tagid=%s", k);
        up = direct("GET", "/cgi-bin/tag/get", q, NULL);
        upids = ids_of(json_object_get(up, "userlist"), "userid");
        sc_call(&r, Bport, "GET", NULL, "/cgi-bin/tag/get?access_token=%s&%s",
                Reader_tok, q);
        SC_EXPECT(&r, 200, 0);
        ids = ids_of(json_object_get(r.json, "userlist"), "userid");
        {
            /* tag parties are department records: they count too */
            json_t *pids = ids_of(json_object_get(r.json, "partylist"), NULL);
            json_t *uppids = ids_of(json_object_get(up, "partylist"), NULL);
            const char *pk;
            json_t *pv;
            long pout = 0;

            json_object_foreach(pids, pk, pv)
                assert_true(set_has(T.in_depts, pk));
            json_object_foreach(uppids, pk, pv)
            {
                assert_true(!set_has(T.in_depts, pk) || set_has(pids, pk));
                pout += !set_has(T.in_depts, pk);
            }
            r.dropped -= pout;
            json_decref(pids);
            json_decref(uppids);
        }
        expect_ids("tag/get", &r, ids, upids, T.in_users);
        json_decref(ids);
        json_decref(upids);
        json_decref(up);
        sc_resp_free(&r);
    }
}

static void
test_list_id_rows_only_in_range(void **state)
{
    char *tok = tc_token_for(Aport, Sdk_secret, CORP1);
    json_t *up, *upids, *ids;
    struct sc_resp r;

    (void)state;
    up = direct("POST", "/cgi-bin/user/list_id", NULL, "{\"limit\":10000}");
    upids = ids_of(json_object_get(up, "dept_user"), "open_userid");
    sc_call(&r, Bport, "POST", "{\"limit\":10000}",
            "/cgi-bin/user/list_id?access_token=%s", tok);
    SC_EXPECT(&r, 200, 0);
    ids = ids_of(json_object_get(r.json, "dept_user"), "open_userid");
    /* rows are (member, department) pairs: compare ids, count rows */
    {
        const char *k;
        json_t *v, *row;
        size_t i;
        long out = 0;

        json_object_foreach(ids, k, v)
        {
            assert_true(set_has(T.in_users, k));
        }
        json_object_foreach(upids, k, v)
        {
            assert_true(!set_has(T.in_users, k) || set_has(ids, k));
        }
        json_array_foreach(json_object_get(up, "dept_user"), i, row)
        {
            if (!set_has(T.in_users, h_str(row, "open_userid")))
                out++;
        }
        assert_int_equal(r.dropped, out);
        assert_true(out > 0);
    }
    json_decref(ids);
    json_decref(upids);
    json_decref(up);
    sc_resp_free(&r);
    free(tok);
}

static void
test_follow_users_and_customers_only_in_range(void **state)
{
    json_t *up, *upids, *ids, *e, *customers = json_object();
    struct sc_resp r;
    char q[128];
    const char *k, *id;
    json_t *v;
    size_t i;
    long hidden = 0, shown = 0;

    (void)state;
    up = direct("GET", "/cgi-bin/externalcontact/get_follow_user_list", NULL,
                NULL);
    upids = ids_of(json_object_get(up, "follow_user"), NULL);
    sc_call(&r, Aport, "GET", NULL,
            "/cgi-bin/externalcontact/get_follow_user_list?access_token=%s",
            Crm_tok);
    SC_EXPECT(&r, 200, 0);
    ids = ids_of(json_object_get(r.json, "follow_user"), NULL);
    expect_ids("get_follow_user_list", &r, ids, upids, T.in_users);
    assert_true(r.dropped > 0);
    json_decref(ids);
    sc_resp_free(&r);
    /* every customer of every follow user, as WeCom has them */
    json_object_foreach(upids, k, v)
    {
        json_t *l;

        snprintf(q, sizeof(q), "userid=%s", k);
        l = direct("GET", "/cgi-bin/externalcontact/list", q, NULL);
        json_array_foreach(json_object_get(l, "external_userid"), i, e)
            json_object_set_new(customers, json_string_value(e), json_true());
        json_decref(l);
    }
    json_decref(upids);
    json_decref(up);
    assert_true(json_object_size(customers) > 1);
    json_object_foreach(customers, id, v)
    {
        json_t *fu;
        int any_in = 0;

        snprintf(q, sizeof(q), "external_userid=%s", id);
        up = direct("GET", "/cgi-bin/externalcontact/get", q, NULL);
        upids = ids_of(json_object_get(up, "follow_user"), "userid");
        json_object_foreach(upids, k, fu)
        {
            any_in |= set_has(T.in_users, k);
        }
        sc_call(&r, (shown + hidden) % 2 ? Aport : Bport, "GET", NULL,
                "/cgi-bin/externalcontact/get?access_token=%s&%s", Crm_tok, q);
        if (any_in) {
            SC_EXPECT(&r, 200, 0);
            ids = ids_of(json_object_get(r.json, "follow_user"), "userid");
            expect_ids("externalcontact/get", &r, ids, upids, T.in_users);
            assert_non_null(json_object_get(r.json, "external_contact"));
            json_decref(ids);
            shown++;
        } else {
            /* a customer none of whose follow users is visible is out of
             * range: nothing of it may leave the broker */
            const char *name =
                h_str(json_object_get(up, "external_contact"), "name");

            SC_EXPECT(&r, 200, 60011);
            if (json_object_get(r.json, "external_contact") != NULL ||
                (name[0] != '\0' && strstr(r.body, name) != NULL)) {
                fprintf(stderr,
                        "# externalcontact/get: out-of-range customer %s "
                        "served: %.300s\n",
                        id, r.body);
                fail();
            }
            hidden++;
        }
        json_decref(upids);
        json_decref(up);
        sc_resp_free(&r);
    }
    fprintf(stderr, "# customers: %ld in range, %ld out of range\n", shown,
            hidden);
    assert_true(shown > 0);
    json_decref(customers);
}

static void
test_group_chats_only_in_range(void **state)
{
    json_t *list, *e, *g, *m, *a;
    struct sc_resp r;
    char body[200];
    size_t i, j;
    long kept = 0, gone = 0;

    (void)state;
    list = direct("POST", "/cgi-bin/externalcontact/groupchat/list", NULL,
                  "{\"limit\":1000}");
    json_array_foreach(json_object_get(list, "group_chat_list"), i, e)
    {
        json_t *up, *upc;
        long want = 0;

        snprintf(body, sizeof(body), "{\"chat_id\":\"%s\"}",
                 h_str(e, "chat_id"));
        up = direct("POST", "/cgi-bin/externalcontact/groupchat/get", NULL,
                    body);
        upc = json_object_get(up, "group_chat");
        sc_call(&r, i % 2 ? Aport : Bport, "POST", body,
                "/cgi-bin/externalcontact/groupchat/get?access_token=%s",
                Crm_tok);
        g = json_object_get(r.json, "group_chat");
        if (!set_has(T.in_users, h_str(upc, "owner"))) {
            /* a chat is in range when its owner is: chat_id is a subject
             * parameter, decided on the reply */
            SC_EXPECT(&r, 200, 60011);
            assert_null(g);
            assert_null(strstr(r.body, h_str(upc, "chat_id")));
            gone++;
        } else {
            SC_EXPECT(&r, 200, 0);
            assert_non_null(g);
            json_array_foreach(json_object_get(upc, "member_list"), j, m)
            {
                long type =
                    (long)json_integer_value(json_object_get(m, "type"));
                const char *inv =
                    h_str(json_object_get(m, "invitor"), "userid");

                if (type == 1 && !set_has(T.in_users, h_str(m, "userid")))
                    want++;
                else if (inv[0] != '\0' && !set_has(T.in_users, inv))
                    want++;
            }
            json_array_foreach(json_object_get(upc, "admin_list"), j, a)
            {
                if (!set_has(T.in_users, h_str(a, "userid")))
                    want++;
            }
            json_array_foreach(json_object_get(g, "member_list"), j, m)
            {
                const json_t *inv = json_object_get(m, "invitor");

                if (json_integer_value(json_object_get(m, "type")) != 2)
                    assert_true(set_has(T.in_users, h_str(m, "userid")));
                if (inv != NULL)
                    assert_true(set_has(T.in_users, h_str(inv, "userid")));
            }
            json_array_foreach(json_object_get(g, "admin_list"), j, a)
                assert_true(set_has(T.in_users, h_str(a, "userid")));
            if (r.dropped != want)
                fprintf(stderr, "# groupchat/get %s: dropped %ld, want %ld\n",
                        h_str(e, "chat_id"), r.dropped, want);
            assert_int_equal(r.dropped, want);
            kept++;
        }
        json_decref(up);
        sc_resp_free(&r);
    }
    fprintf(stderr, "# chats: %ld in range, %ld out of range\n", kept, gone);
    assert_true(kept > 0);
    json_decref(list);
}

/* A service with a range of its own sees only that part of the tenant's. */
static void
test_service_parties_narrow_the_range(void **state)
{
    json_t *sub = json_object(), *m, *d, *ids, *v;
    char *sec, *tok, parties[64], outside[32] = "";
    const char *u;
    struct sc_resp r;
    long dept;
    size_t i, j;

    (void)state;
    /* the tenant's own department: the service loses the tenant's
     * allow_user and tag members outside it */
    dept = 2;
    mark_subtree(sub, T.depts, dept);
    json_array_foreach(T.members, i, m)
    {
        int inside = 0;

        json_array_foreach(json_object_get(m, "department"), j, d)
        {
            inside |= set_has_long(sub, (long)json_integer_value(d));
        }
        if (!inside && outside[0] == '\0' &&
            set_has(T.in_users, h_str(m, "userid")))
            snprintf(outside, sizeof(outside), "%s", h_str(m, "userid"));
    }
    assert_true(outside[0] != '\0');
    snprintf(parties, sizeof(parties), "%s:%ld", CORP1, dept);
    sec = tc_svc_add("one-department", "contacts.read", "--parties", parties);
    tok = tc_token_for(Bport, sec, CORP1);
    /* visible to the tenant, not to this service */
    sc_call(&r, Aport, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", Reader_tok, outside);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    sc_call(&r, Aport, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", tok, outside);
    SC_EXPECT(&r, 200, 60011);
    sc_resp_free(&r);
    sc_call(
        &r, Aport, "GET", NULL,
        "/cgi-bin/user/list?access_token=%s&department_id=%ld&fetch_child=1",
        tok, dept);
    SC_EXPECT(&r, 200, 0);
    ids = ids_of(json_object_get(r.json, "userlist"), "userid");
    assert_true(json_object_size(ids) > 0);
    json_object_foreach(ids, u, v)
    {
        assert_true(set_has(T.in_users, u));
    }
    assert_false(set_has(ids, outside));
    json_decref(ids);
    sc_resp_free(&r);
    /* the department tree shows only the service's part */
    sc_call(&r, Bport, "GET", NULL,
            "/cgi-bin/department/simplelist?access_token=%s", tok);
    SC_EXPECT(&r, 200, 0);
    ids = ids_of(json_object_get(r.json, "department_id"), "id");
    json_object_foreach(ids, u, v)
    {
        assert_true(set_has(sub, u));
    }
    json_decref(ids);
    sc_resp_free(&r);
    json_decref(sub);
    free(tok);
    free(sec);
}

/* The broker's directory lags behind WeCom (a change_contact not yet
 * processed): a member WeCom lists that the broker does not know to be in
 * range is dropped, never passed. */
/* Until a GET of path on port answers errcode code with a body that does
 * not hold absent (NULL: anything): a cache invalidation has arrived. */
struct settled {
    int port;
    const char *path, *absent;
    long code;
};

static int
settled_now(void *arg)
{
    const struct settled *w = arg;
    struct sc_resp r;
    int ok;

    sc_call(&r, w->port, "GET", NULL, "%s", w->path);
    ok = r.status == 200 && sc_ecode(&r) == w->code &&
         (w->absent == NULL || strstr(r.body, w->absent) == NULL);
    sc_resp_free(&r);
    return ok;
}

static void
wait_settled(int port, const char *path, long code, const char *absent)
{
    struct settled w = {port, path, absent, code};

    if (!h_wait(settled_now, &w, 5000)) {
        fprintf(stderr, "# %d%s never settled on %ld without %s\n", port, path,
                code, absent ? absent : "-");
        fail();
    }
}

static void
test_directory_behind_wecom_fails_closed(void **state)
{
    redisContext *c = h_redis(&H);
    redisReply *x;
    const char *users_key = "wb:{" CORP1 "}:" S1 ":dir:users";
    const char *tags_key = "wb:{" CORP1 "}:" S1 ":dir:tags";
    char victim[32] = "", *old_dept = NULL, *old_tag = NULL, q[256];
    json_t *m, *tag, *users, *nu, *e;
    json_error_t err;
    struct sc_resp r;
    size_t i;

    (void)state;
    assert_non_null(c);
    /* a member of department 2's subtree who is not visible otherwise */
    x = redisCommand(c, "HGET %s 1", tags_key);
    assert_int_equal(x->type, REDIS_REPLY_STRING);
    old_tag = strdup(x->str);
    freeReplyObject(x);
    tag = json_loads(old_tag, 0, &err);
    assert_non_null(tag);
    json_array_foreach(T.members, i, m)
    {
        const char *u = h_str(m, "userid");
        json_t *d;
        size_t j;
        int in2 = 0, tagged = 0;

        json_array_foreach(json_object_get(m, "department"), j, d)
        {
            in2 |= json_integer_value(d) == 2;
        }
        json_array_foreach(json_object_get(tag, "users"), j, e)
        {
            tagged |= strcmp(json_string_value(e), u) == 0;
        }
        if (in2 && !tagged && victim[0] == '\0' &&
            json_array_size(json_object_get(m, "department")) == 1 &&
            strcmp(u, "u00003") != 0)
            snprintf(victim, sizeof(victim), "%s", u);
    }
    assert_true(victim[0] != '\0');
    x = redisCommand(c, "HGET %s %s", users_key, victim);
    assert_int_equal(x->type, REDIS_REPLY_STRING);
    old_dept = strdup(x->str);
    freeReplyObject(x);
    /* the broker believes victim is in an invisible department */
    x = redisCommand(c, "HSET %s %s %ld", users_key, victim, Out_dept);
    freeReplyObject(x);
    x = redisCommand(c, "PUBLISH wb:inval %s", S1 " " CORP1);
    freeReplyObject(x);
    snprintf(q, sizeof(q), "/cgi-bin/user/list?access_token=%s&department_id=2",
             Reader_tok);
    wait_settled(Aport, q, 0, victim);
    snprintf(q, sizeof(q),
             "/cgi-bin/user/simplelist?access_token=%s&department_id=2",
             Reader_tok);
    wait_settled(Bport, q, 0, victim);
    sc_call(&r, Aport, "GET", NULL,
            "/cgi-bin/user/list?access_token=%s&department_id=2", Reader_tok);
    SC_EXPECT(&r, 200, 0);
    assert_null(strstr(r.body, victim));
    assert_int_equal(r.dropped, 1);
    sc_resp_free(&r);
    sc_call(&r, Bport, "GET", NULL,
            "/cgi-bin/user/simplelist?access_token=%s&department_id=2",
            Reader_tok);
    SC_EXPECT(&r, 200, 0);
    assert_null(strstr(r.body, victim));
    assert_int_equal(r.dropped, 1);
    sc_resp_free(&r);
    sc_call(&r, Bport, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", Reader_tok, victim);
    SC_EXPECT(&r, 200, 60011);
    sc_resp_free(&r);
    /* and a tag member the broker does not know of yet */
    users = json_object_get(tag, "users");
    nu = json_array();
    json_array_foreach(users, i, e) if (i > 0) json_array_append(nu, e);
    {
        char gone[64], *s;
        int visible_anyway = 0;
        size_t j;

        snprintf(gone, sizeof(gone), "%s",
                 json_string_value(json_array_get(users, 0)));
        json_array_foreach(T.members, i, m)
        {
            json_t *d;

            if (strcmp(h_str(m, "userid"), gone) != 0)
                continue;
            json_array_foreach(json_object_get(m, "department"), j, d)
            {
                visible_anyway |=
                    set_has_long(T.in_depts, (long)json_integer_value(d));
            }
        }
        visible_anyway |= strcmp(gone, "u00003") == 0;
        json_object_set(tag, "users", nu);
        s = json_dumps(tag, JSON_COMPACT);
        x = redisCommand(c, "HSET %s 1 %s", tags_key, s);
        freeReplyObject(x);
        free(s);
        x = redisCommand(c, "PUBLISH wb:inval %s", S1 " " CORP1);
        freeReplyObject(x);
        if (!visible_anyway) {
            char path[256];

            snprintf(q, sizeof(q), "\"%s\"", gone);
            snprintf(path, sizeof(path),
                     "/cgi-bin/tag/get?access_token=%s&tagid=1", Reader_tok);
            wait_settled(Aport, path, 0, q);
        }
        sc_call(&r, Aport, "GET", NULL,
                "/cgi-bin/tag/get?access_token=%s&tagid=1", Reader_tok);
        SC_EXPECT(&r, 200, 0);
        if (!visible_anyway) {
            snprintf(q, sizeof(q), "\"%s\"", gone);
            assert_null(strstr(r.body, q));
            assert_true(r.dropped >= 1);
        }
        fprintf(stderr, "# directory lag: %s dropped from tag/get (%ld)\n",
                gone, r.dropped);
        sc_resp_free(&r);
    }
    json_decref(nu);
    /* restore */
    x = redisCommand(c, "HSET %s %s %s", users_key, victim, old_dept);
    freeReplyObject(x);
    x = redisCommand(c, "HSET %s 1 %s", tags_key, old_tag);
    freeReplyObject(x);
    x = redisCommand(c, "PUBLISH wb:inval %s", S1 " " CORP1);
    freeReplyObject(x);
    snprintf(q, sizeof(q), "/cgi-bin/user/get?access_token=%s&userid=%s",
             Reader_tok, victim);
    wait_settled(Aport, q, 0, NULL);
    sc_call(&r, Aport, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", Reader_tok, victim);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    json_decref(tag);
    free(old_dept);
    free(old_tag);
    redisFree(c);
}

/*---- Changes seen by a second instance ----*/

static int
refused_on(int port, const char *tok, long want)
{
    struct sc_resp r;
    long code;

    sc_call(&r, port, "GET", NULL, "/cgi-bin/tag/list?access_token=%s", tok);
    code = sc_ecode(&r);
    sc_resp_free(&r);
    return code == want;
}

static int
secret_refused_on(int port, const char *secret)
{
    struct sc_resp r;
    long code;

    sc_call(&r, port, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            CORP1, secret);
    code = sc_ecode(&r);
    sc_resp_free(&r);
    return code == 40001;
}

/* Poll until fn holds; the delay in ms, or -1 after 10 s. */
static long
poll_ms(int (*fn)(void *), void *arg, long t0)
{
    while (!fn(arg)) {
        if (h_now_ms() - t0 > 10000)
            return -1;
        usleep(2000);
    }
    return h_now_ms() - t0;
}

struct both {
    const char *tok, *secret;
};

static int
b_refuses_both(void *arg)
{
    struct both *b = arg;

    return refused_on(Bport, b->tok, 40014) &&
           secret_refused_on(Bport, b->secret);
}

static void
test_revoke_seen_by_second_instance(void **state)
{
    char *sec = tc_svc_add("revoke-me", "contacts.read", NULL, NULL);
    char *tok = tc_token_for(Aport, sec, CORP1);
    struct both b = {tok, sec};
    json_t *v;
    long t0, ms;
    int rc;

    (void)state;
    /* warm B's caches: token, service and tenant */
    assert_true(refused_on(Bport, tok, 0));
    assert_true(refused_on(Bport, tok, 0));
    t0 = h_now_ms();
    v = tc_ctl(&rc, "service", "revoke", "revoke-me", (const char *)NULL);
    assert_int_equal(rc, 0);
    json_decref(v);
    ms = poll_ms(b_refuses_both, &b, t0);
    fprintf(stderr,
            "# revoke: token and secret refused on the second instance "
            "after %ld ms\n",
            ms);
    assert_true(ms >= 0 && ms <= 1000);
    assert_true(refused_on(Aport, tok, 40014));
    free(tok);
    free(sec);
}

static void
test_rotate_seen_by_second_instance(void **state)
{
    char *sec = tc_svc_add("rotate-me", "contacts.read", NULL, NULL);
    char *tok = tc_token_for(Aport, sec, CORP1), *tok2;
    struct both b = {tok, sec};
    json_t *v;
    long t0, ms;
    int rc;

    (void)state;
    assert_true(refused_on(Bport, tok, 0));
    t0 = h_now_ms();
    v = tc_ctl(&rc, "service", "rotate", "rotate-me", (const char *)NULL);
    assert_int_equal(rc, 0);
    ms = poll_ms(b_refuses_both, &b, t0);
    fprintf(stderr,
            "# rotate: old token and old secret refused on the second "
            "instance after %ld ms\n",
            ms);
    assert_true(ms >= 0 && ms <= 1000);
    assert_string_equal(h_str(v, "name"), "rotate-me");
    assert_string_not_equal(h_str(v, "secret"), sec);
    /* the new secret works everywhere, and its token is a new one */
    tok2 = tc_token_for(Bport, h_str(v, "secret"), CORP1);
    assert_string_not_equal(tok2, tok);
    assert_true(refused_on(Aport, tok2, 0));
    assert_true(refused_on(Bport, tok2, 0));
    assert_true(refused_on(Aport, tok, 40014));
    json_decref(v);
    free(tok2);
    free(tok);
    free(sec);
}

struct narrow {
    const char *member;
    long stored_ms;
    long t0;
};

static int
narrowed_on_b(void *arg)
{
    struct narrow *n = arg;
    struct sc_resp r;
    long code;

    if (n->stored_ms < 0) {
        json_t *t = tenant_show(CORP1);
        json_t *p = json_object_get(json_object_get(t, "visible"), "parties");

        if (json_array_size(p) == 1 &&
            json_integer_value(json_array_get(p, 0)) == 3)
            n->stored_ms = h_now_ms() - n->t0;
        json_decref(t);
    }
    sc_call(&r, Bport, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", Reader_tok,
            n->member);
    code = sc_ecode(&r);
    sc_resp_free(&r);
    return code == 60011;
}

static int
restored(void *arg)
{
    json_t *t = tenant_show(CORP1);
    json_t *p = json_object_get(json_object_get(t, "visible"), "parties");
    int ok = json_array_size(p) == 1 &&
             json_integer_value(json_array_get(p, 0)) == 2;

    (void)arg;
    json_decref(t);
    return ok;
}

static void
test_change_auth_narrowing_seen_by_second_instance(void **state)
{
    static const char narrow_priv[] =
        "{\"corpid\":\"" CORP1 "\",\"allow_party\":[3],\"allow_user\":[],"
        "\"allow_tag\":[]}";
    json_t *before = json_deep_copy(T.in_users), *priv, *t;
    struct narrow n = {NULL, -1, 0};
    char member[32] = "";
    const char *k;
    json_t *v;
    long ms;

    (void)state;
    priv = json_loads(narrow_priv, 0, NULL);
    truth_compute(priv);
    json_object_foreach(before, k, v)
    {
        if (!set_has(T.in_users, k) && member[0] == '\0')
            snprintf(member, sizeof(member), "%s", k);
    }
    assert_true(member[0] != '\0');
    n.member = member;
    /* warm B: member is visible now */
    {
        struct sc_resp r;

        sc_call(&r, Bport, "GET", NULL,
                "/cgi-bin/user/get?access_token=%s&userid=%s", Reader_tok,
                member);
        SC_EXPECT(&r, 200, 0);
        sc_resp_free(&r);
    }
    h_sim_ok(MockPort, "POST", "/__mock/privilege", narrow_priv);
    n.t0 = h_now_ms();
    tc_corp_event(S1, "change_auth", CORP1, h_next_ts(), NULL, NULL);
    ms = poll_ms(narrowed_on_b, &n, n.t0);
    fprintf(stderr,
            "# change_auth: narrowed range applied on the second instance "
            "%ld ms after the callback was acknowledged (stored, as seen "
            "by brokerctl, after <= %ld ms)\n",
            ms, n.stored_ms);
    assert_true(ms >= 0);
    assert_true(n.stored_ms < 0 || ms - n.stored_ms <= 1000);
    /* the lists follow the new range on both instances */
    {
        struct sc_resp r;
        json_t *ids;
        const char *u;

        sc_call(&r, Aport, "GET", NULL,
                "/cgi-bin/user/list?access_token=%s&department_id=3"
                "&fetch_child=1",
                Reader_tok);
        SC_EXPECT(&r, 200, 0);
        ids = ids_of(json_object_get(r.json, "userlist"), "userid");
        json_object_foreach(ids, u, v)
        {
            assert_true(set_has(T.in_users, u));
        }
        json_decref(ids);
        sc_resp_free(&r);
        sc_call(&r, Aport, "GET", NULL,
                "/cgi-bin/user/list?access_token=%s&department_id=2",
                Reader_tok);
        SC_EXPECT(&r, 200, T.in_depts && set_has(T.in_depts, "2") ? 0 : 60011);
        sc_resp_free(&r);
    }
    /* put the default range back */
    json_decref(priv);
    h_sim_ok(MockPort, "POST", "/__mock/privilege",
             "{\"corpid\":\"" CORP1 "\",\"allow_party\":[2],"
             "\"allow_user\":[\"u00003\"],\"allow_tag\":[1]}");
    tc_corp_event(S1, "change_auth", CORP1, h_next_ts(), NULL, NULL);
    assert_true(h_wait(restored, NULL, 30000));
    t = tenant_show(CORP1);
    truth_compute(json_object_get(t, "privilege"));
    json_decref(t);
    json_decref(before);
}

struct cancel_ctx {
    const char *tok;
};

static int
both_refuse_48004(void *arg)
{
    struct cancel_ctx *c = arg;

    return refused_on(Bport, c->tok, 48004) && refused_on(Aport, c->tok, 48004);
}

static void
test_cancelled_tenant_tokens_refused(void **state)
{
    char *tok = tc_token_for(Bport, Reader_secret, CORP2);
    struct cancel_ctx c = {tok};
    struct sc_resp r;
    long t0, ms;

    (void)state;
    assert_true(refused_on(Aport, tok, 0));
    assert_true(refused_on(Bport, tok, 0));
    t0 = h_now_ms();
    tc_corp_event(S1, "cancel_auth", CORP2, h_next_ts(), NULL, NULL);
    ms = poll_ms(both_refuse_48004, &c, t0);
    fprintf(stderr,
            "# cancel_auth: tokens of the cancelled tenant refused on both "
            "instances %ld ms after the callback was acknowledged\n",
            ms);
    assert_true(ms >= 0);
    sc_call(&r, Aport, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", tok, In_member);
    SC_EXPECT(&r, 200, 48004);
    sc_resp_free(&r);
    /* and no new token for it */
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            CORP2, Reader_secret);
    fprintf(stderr, "# gettoken for the cancelled tenant: errcode %ld\n",
            sc_ecode(&r));
    assert_true(sc_ecode(&r) == 48004 || sc_ecode(&r) == 40013);
    assert_null(json_object_get(r.json, "access_token"));
    sc_resp_free(&r);
    free(tok);
}

/*---- A corp-token storm across two instances ----*/

static void
test_token_storm_two_instances(void **state)
{
    enum { N = 200 };
    static struct sc_resp rs[N];
    CURL *easy[N];
    CURLM *m = curl_multi_init();
    char url[512];
    size_t before, after;
    int running = 1, i, ok = 0;
    long t0;

    (void)state;
    /* both instances hold the current corp token */
    assert_true(refused_on(Aport, Reader_tok, 0));
    assert_true(refused_on(Bport, Reader_tok, 0));
    before = tc_mock_count("/cgi-bin/service/get_corp_token", CORP1);
    h_sim_ok(MockPort, "POST", "/__mock/invalidate",
             "{\"corpid\":\"" CORP1 "\"}");
    for (i = 0; i < N; i++) {
        snprintf(url, sizeof(url),
                 "http://127.0.0.1:%d/cgi-bin/user/get?access_token=%s"
                 "&userid=%s",
                 i % 2 ? Bport : Aport, Reader_tok, In_member);
        sc_resp_init(&rs[i]);
        easy[i] = sc_easy(&rs[i], "GET", url, NULL, 0, NULL);
        curl_multi_add_handle(m, easy[i]);
    }
    t0 = h_now_ms();
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (i = 0; i < N; i++) {
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &rs[i].status);
        curl_multi_remove_handle(m, easy[i]);
        curl_easy_cleanup(easy[i]);
        sc_resp_parse(&rs[i]);
        if (rs[i].status == 200 && sc_ecode(&rs[i]) == 0 &&
            strstr(rs[i].body, In_member) != NULL)
            ok++;
        else if (ok + 5 > i)
            fprintf(stderr, "# storm %d: %ld %.200s\n", i, rs[i].status,
                    rs[i].body ? rs[i].body : "");
        sc_resp_free(&rs[i]);
    }
    curl_multi_cleanup(m);
    after = tc_mock_count("/cgi-bin/service/get_corp_token", CORP1);
    fprintf(stderr,
            "# storm: %d/%d answered with data in %ld ms; get_corp_token "
            "calls for the corp: %zu\n",
            ok, N, h_now_ms() - t0, after - before);
    assert_int_equal(ok, N);
    assert_int_equal(after - before, 1);
    /* our own token was revoked with the rest: take a fresh one */
    {
        const char *ticket = tc_push_ticket(S1);

        direct_token(ticket);
    }
}

/*---- An unmodified WeCom client ----*/

static char *
curl_cli(const char *const argv[])
{
    char *out = NULL;

    assert_int_equal(h_run(argv, &out), 0);
    return out;
}

static void
test_plain_curl_client(void **state)
{
    char url[512], *out;
    json_t *v;
    json_error_t e;
    char tok[128];

    (void)state;
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
             Aport, CORP1, Sdk_secret);
    {
        const char *argv[] = {"/usr/bin/curl", "-sS", url, NULL};

        out = curl_cli(argv);
    }
    v = json_loads(out, 0, &e);
    assert_non_null(v);
    assert_int_equal(json_integer_value(json_object_get(v, "errcode")), 0);
    snprintf(tok, sizeof(tok), "%s", h_str(v, "access_token"));
    json_decref(v);
    free(out);
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/cgi-bin/user/get?access_token=%s&userid=%s",
             Aport, tok, In_member);
    {
        const char *argv[] = {"/usr/bin/curl", "-sS", url, NULL};

        out = curl_cli(argv);
    }
    v = json_loads(out, 0, &e);
    assert_non_null(v);
    assert_int_equal(json_integer_value(json_object_get(v, "errcode")), 0);
    assert_string_equal(h_str(v, "userid"), In_member);
    assert_null(json_object_get(v, "mobile"));
    json_decref(v);
    free(out);
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/cgi-bin/user/list_id?access_token=%s", Bport,
             tok);
    {
        const char *argv[] = {"/usr/bin/curl",
                              "-sS",
                              "-X",
                              "POST",
                              "-H",
                              "Content-Type: application/json",
                              "-d",
                              "{\"cursor\":\"\",\"limit\":10}",
                              url,
                              NULL};

        out = curl_cli(argv);
    }
    v = json_loads(out, 0, &e);
    assert_non_null(v);
    if (json_integer_value(json_object_get(v, "errcode")) != 0)
        fprintf(stderr, "# list_id: %s\n", out);
    assert_int_equal(json_integer_value(json_object_get(v, "errcode")), 0);
    assert_true(json_is_array(json_object_get(v, "dept_user")));
    json_decref(v);
    free(out);
}

/*---- The store goes away ----*/

static void
test_redis_down_fails_closed(void **state)
{
    struct sc_resp r;
    int i;

    (void)state;
    /* everything cached and warm on both instances */
    for (i = 0; i < 2; i++) {
        sc_call(&r, i ? Bport : Aport, "GET", NULL,
                "/cgi-bin/user/get?access_token=%s&userid=%s", Reader_tok,
                In_member);
        SC_EXPECT(&r, 200, 0);
        sc_resp_free(&r);
    }
    h_redis_stop(&H);
    for (i = 0; i < 10; i++) {
        sc_call(&r, i % 2 ? Bport : Aport, "GET", NULL,
                "/cgi-bin/user/get?access_token=%s&userid=%s", Reader_tok,
                In_member);
        if (r.status != 503)
            fprintf(stderr, "# redis down, request %d: %ld %.200s\n", i,
                    r.status, r.body);
        SC_EXPECT(&r, 503, -1);
        assert_null(strstr(r.body, In_member));
        assert_null(json_object_get(r.json, "userid"));
        sc_resp_free(&r);
    }
    sc_call(&r, Aport, "GET", NULL, "/cgi-bin/gettoken?corpid=%s&corpsecret=%s",
            CORP1, Reader_secret);
    SC_EXPECT(&r, 503, -1);
    assert_null(json_object_get(r.json, "access_token"));
    sc_resp_free(&r);
    sc_call(&r, Bport, "POST", "{\"limit\":10}",
            "/cgi-bin/user/list_id?access_token=%s", Reader_tok);
    SC_EXPECT(&r, 503, -1);
    sc_resp_free(&r);
    assert_int_equal(h_redis_start(&H), 0);
}

static void
test_brokers_stop_cleanly(void **state)
{
    (void)state;
    assert_int_equal(h_broker_stop(&H, SIGTERM), 0);
    assert_int_equal(h_stop(Bpid, SIGTERM), 0);
    Bpid = 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gettoken_issues_and_reuses),
        cmocka_unit_test(test_41001_no_access_token),
        cmocka_unit_test(test_40014_unknown_token),
        cmocka_unit_test(test_40014_revoked_service_token),
        cmocka_unit_test(test_42001_expired_token),
        cmocka_unit_test(test_40001_gettoken_bad_credentials),
        cmocka_unit_test(test_40013_gettoken_not_a_tenant),
        cmocka_unit_test(test_48004_outside_service_corps),
        cmocka_unit_test_teardown(test_48004_installing_tenant,
                                  tc_clear_faults),
        cmocka_unit_test_teardown(test_48004_reinstall_required,
                                  tc_clear_faults),
        cmocka_unit_test(test_40035_bad_parameters_get),
        cmocka_unit_test(test_40035_bad_parameters_post),
        cmocka_unit_test(test_48002_undeclared_write_or_ungranted),
        cmocka_unit_test(test_60011_subject_out_of_range),
        cmocka_unit_test_teardown(test_504_upstream_timeout, tc_clear_faults),
        cmocka_unit_test_teardown(test_502_upstream_unreachable,
                                  tc_clear_faults),
        cmocka_unit_test_teardown(test_502_upstream_garbage_never_passed,
                                  tc_clear_faults),
        cmocka_unit_test_teardown(test_wecom_errcode_passed_through,
                                  tc_clear_faults),
        cmocka_unit_test(test_contacts_read_never_sees_sensitive_fields),
        cmocka_unit_test(
            test_customers_service_sees_no_undeclared_or_never_fields),
        cmocka_unit_test(test_user_lists_only_in_range),
        cmocka_unit_test(test_departments_tags_only_in_range),
        cmocka_unit_test(test_list_id_rows_only_in_range),
        cmocka_unit_test(test_follow_users_and_customers_only_in_range),
        cmocka_unit_test(test_group_chats_only_in_range),
        cmocka_unit_test(test_service_parties_narrow_the_range),
        cmocka_unit_test(test_directory_behind_wecom_fails_closed),
        cmocka_unit_test(test_revoke_seen_by_second_instance),
        cmocka_unit_test(test_rotate_seen_by_second_instance),
        cmocka_unit_test(test_change_auth_narrowing_seen_by_second_instance),
        cmocka_unit_test(test_cancelled_tenant_tokens_refused),
        cmocka_unit_test(test_token_storm_two_instances),
        cmocka_unit_test(test_plain_curl_client),
        cmocka_unit_test(test_redis_down_fails_closed),
        cmocka_unit_test(test_brokers_stop_cleanly),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
