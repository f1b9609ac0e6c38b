/*
 * Writes through the broker (SPEC §5b) against the strict simulator: every
 * refusal happens before WeCom is called (the simulator's request log
 * shows no call), a service changes only customers, members and
 * departments in its range and the corp tags and contact ways it made,
 * WelcomeCodes are taken once by the service they were delivered to,
 * idempotency keys replay the stored reply, and writes are audited
 * without values.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "broker.h"
#include "harness.h"
#include "simclient.h"
#include "store.h"
#include "svcclient.h"
#include "tenantclient.h"
#include "write_store.h"

#define S1   H_SUITE
#define CORP "wwmockcorp0001"
#define EXT  "/cgi-bin/externalcontact/"
#define WSCOPES                                                                \
    "contacts.read,external.customers,externalcontact:contact:tag,"            \
    "externalcontact:contact:qrcode,externalcontact:contact:group_msg"

static struct harness H;
static pid_t Mock;
static int MockPort;
static char *Writer, *Narrow, *Plain, *Other, *Welcomer, *NoTag;
static char WriterTok[128], NarrowTok[128], PlainTok[128], OtherTok[128],
    WelcomerTok[128], NoTagTok[128];
static char Cust[80];    /* a customer of u00001, in every range */
static char CustOut[80]; /* a customer the narrowed service cannot see */
static char WelcomerId[32];

static char *
svc_add(const char *name, const char *scopes, const char *caps,
        const char *parties)
{
    json_t *v;
    char *s;
    int rc;

    v = tc_ctl(&rc, "service", "add", name, "--scopes", scopes,
               caps ? "--capabilities" : NULL, caps,
               parties ? "--parties" : NULL, parties, (const char *)NULL);
    assert_int_equal(rc, 0);
    s = strdup(h_str(v, "secret"));
    json_decref(v);
    return s;
}

static void
token(const char *secret, char *out)
{
    char *t = tc_token_for(0, secret, CORP);

    snprintf(out, 128, "%s", t);
    free(t);
}

/* POST body to /cgi-bin/externalcontact/API for the token, with an
 * optional header line. */
static void
write_call(struct sc_resp *r, const char *tok, const char *api,
           const char *body, const char *hdr)
{
    char url[512];

    snprintf(url, sizeof(url), "http://127.0.0.1:%d" EXT "%s%saccess_token=%s",
             H.int_port, api, strchr(api, '?') ? "&" : "?", tok);
    sc_fetch(r, "POST", url, body, NULL, hdr);
}

static size_t
calls(const char *api)
{
    char path[128];

    snprintf(path, sizeof(path), EXT "%s", api);
    return tc_mock_count(path, NULL);
}

/* Expect a refusal with errcode code (HTTP http) and no call to WeCom. */
static void
refused(const char *tok, const char *api, const char *body, const char *hdr,
        long http, long code)
{
    struct sc_resp r;
    size_t before = calls(api);

    sc_resp_init(&r);
    write_call(&r, tok, api, body, hdr);
    SC_EXPECT(&r, http, code);
    sc_resp_free(&r);
    assert_int_equal(calls(api), before);
}

/* Expect success and exactly one call to WeCom; the reply (owned). */
static json_t *
served(const char *tok, const char *api, const char *body, const char *hdr)
{
    struct sc_resp r;
    size_t before = calls(api);
    json_t *j;

    sc_resp_init(&r);
    write_call(&r, tok, api, body, hdr);
    SC_EXPECT(&r, 200, 0);
    j = json_incref(r.json);
    sc_resp_free(&r);
    assert_int_equal(calls(api), before + 1);
    return j;
}

/* A read through the broker: its errcode; the reply in *out (owned). */
static long
read_call(const char *tok, const char *method, const char *pq, const char *body,
          json_t **out)
{
    struct sc_resp r;
    long e;

    sc_resp_init(&r);
    sc_call(&r, H.int_port, method, body, "%s%saccess_token=%s", pq,
            strchr(pq, '?') ? "&" : "?", tok);
    e = sc_ecode(&r);
    if (out != NULL)
        *out = json_incref(r.json);
    sc_resp_free(&r);
    return e;
}

static void
find_customers(void)
{
    json_t *list = NULL, *one = NULL, *users = NULL;
    char pq[256];
    size_t i, u;
    long en;

    /* u00001's customers, through the broker: the reads feed the index */
    assert_int_equal(
        read_call(WriterTok, "GET", EXT "list?userid=u00001", NULL, &list), 0);
    assert_true(json_array_size(json_object_get(list, "external_userid")) > 0);
    h_copy_str(Cust, sizeof(Cust),
               json_string_value(json_array_get(
                   json_object_get(list, "external_userid"), 0)));
    json_decref(list);
    snprintf(pq, sizeof(pq), EXT "get?external_userid=%s", Cust);
    assert_int_equal(read_call(WriterTok, "GET", pq, NULL, NULL), 0);
    /* a customer the narrowed service cannot see (no follow user in
     * department 2's subtree) but the unnarrowed one reads: found among
     * the follow users' customers */
    assert_int_equal(
        read_call(WriterTok, "GET", EXT "get_follow_user_list", NULL, &users),
        0);
    CustOut[0] = '\0';
    for (u = 0; CustOut[0] == '\0' &&
                u < json_array_size(json_object_get(users, "follow_user"));
         u++) {
        snprintf(pq, sizeof(pq), EXT "list?userid=%s",
                 json_string_value(
                     json_array_get(json_object_get(users, "follow_user"), u)));
        if (read_call(WriterTok, "GET", pq, NULL, &list) != 0) {
            json_decref(list);
            continue;
        }
        for (i = 0;
             i < json_array_size(json_object_get(list, "external_userid"));
             i++) {
            const char *c = json_string_value(
                json_array_get(json_object_get(list, "external_userid"), i));

            snprintf(pq, sizeof(pq), EXT "get?external_userid=%s", c);
            if (read_call(WriterTok, "GET", pq, NULL, &one) != 0) {
                json_decref(one);
                continue;
            }
            json_decref(one);
            en = read_call(NarrowTok, "GET", pq, NULL, NULL);
            if (en == 60011) {
                h_copy_str(CustOut, sizeof(CustOut), c);
                break;
            }
        }
        json_decref(list);
    }
    json_decref(users);
    list = NULL;
    json_decref(list);
    assert_true(CustOut[0] != '\0');
}

static int
setup(void **state)
{
    const char *extra[] = {
        "--suite", H_SUITE ":" H_SECRET, "--corps", "2", "--members",
        "60",      "--departments",      "15",      NULL};
    char broker[256], body[512];
    json_t *v;
    int rc;

    (void)state;
    if (h_setup(&H) != 0)
        return -1;
    Mock = h_mock_start(H.dir, extra, &MockPort);
    if (Mock == 0)
        return -1;
    snprintf(broker, sizeof(broker), "wecom_api_base = http://127.0.0.1:%d\n",
             MockPort);
    if (h_write_conf(&H, 0, broker) != 0 || h_broker_start(&H) != 0)
        return -1;
    tc_init(&H, MockPort);
    tc_push_ticket(S1);
    snprintf(body, sizeof(body),
             "{\"corpid\":\"%s\",\"app_permissions\":[\"contact:base:base\","
             "\"externalcontact:base:base\",\"externalcontact:contact:tag\","
             "\"externalcontact:contact:welcome_msg\","
             "\"externalcontact:contact:group_msg\","
             "\"externalcontact:contact:qrcode\"]}",
             CORP);
    h_sim_ok(MockPort, "POST", "/__mock/permissions", body);
    tc_install(S1, CORP, h_next_ts());
    tc_wait_status(S1, CORP, "active", 30000);
    Writer =
        svc_add("writer", WSCOPES, "external.write,external.message", NULL);
    Narrow = svc_add("narrow", WSCOPES, "external.write,external.message",
                     CORP ":2");
    Plain = svc_add("plain", WSCOPES, NULL, NULL);
    Other = svc_add("other", WSCOPES, "external.write", NULL);
    NoTag = svc_add("notag", "contacts.read,external.customers",
                    "external.write", NULL);
    Welcomer = svc_add("welcomer",
                       "external.customers,externalcontact:contact:welcome_msg",
                       "external.welcome", NULL);
    token(Writer, WriterTok);
    token(Narrow, NarrowTok);
    token(Plain, PlainTok);
    token(Other, OtherTok);
    token(NoTag, NoTagTok);
    token(Welcomer, WelcomerTok);
    v = tc_ctl(&rc, "service", "show", "welcomer", (const char *)NULL);
    assert_int_equal(rc, 0);
    h_copy_str(WelcomerId, sizeof(WelcomerId), h_str(v, "id"));
    json_decref(v);
    find_customers();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    free(Writer);
    free(Narrow);
    free(Plain);
    free(Other);
    free(NoTag);
    free(Welcomer);
    tc_world_stop(&H, Mock);
    return 0;
}

/*---- Who may write ----*/

static void
test_capability_and_permission(void **state)
{
    char body[256];

    (void)state;
    snprintf(body, sizeof(body),
             "{\"userid\":\"u00001\",\"external_userid\":\"%s\","
             "\"remark\":\"r\"}",
             Cust);
    /* no capability: 48002, whatever the scopes */
    refused(PlainTok, "remark", body, NULL, 200, 48002);
    /* a capability, but the service lacks the endpoint's permission */
    refused(NoTagTok, "add_corp_tag",
            "{\"group_name\":\"g\",\"tag\":[{\"name\":\"t\"}]}", NULL, 200,
            48002);
    /* an undeclared write API stays forbidden */
    refused(WriterTok, "transfer_customer", "{}", NULL, 200, 48002);
}

/*---- The body ----*/

static void
test_body_refusals(void **state)
{
    char body[512];

    (void)state;
    snprintf(body, sizeof(body),
             "{\"userid\":\"u00001\",\"external_userid\":\"%s\","
             "\"remark\":\"r\",\"secret_note\":\"x\"}",
             Cust);
    refused(WriterTok, "remark", body, NULL, 200, 40035);
    snprintf(body, sizeof(body),
             "{\"userid\":\"u00001\",\"userid\":\"u00001\","
             "\"external_userid\":\"%s\"}",
             Cust);
    refused(WriterTok, "remark", body, NULL, 200, 40035);
    refused(WriterTok, "remark", "{\"userid\":\"u00001\"", NULL, 200, 40058);
    refused(WriterTok, "remark", "[]", NULL, 200, 40058);
    snprintf(body, sizeof(body),
             "{\"userid\":\"u00001\",\"external_userid\":\"%s\","
             "\"remark\":\"012345678901234567890\"}",
             Cust);
    refused(WriterTok, "remark", body, NULL, 200, 40058);
    snprintf(body, sizeof(body),
             "{\"userid\":\"u00001\",\"external_userid\":\"%s\","
             "\"add_tag\":\"t\"}",
             Cust);
    refused(WriterTok, "mark_tag", body, NULL, 200, 40058);
    refused(WriterTok, "add_contact_way", "{\"type\":3,\"scene\":1}", NULL, 200,
            40058);
    refused(WriterTok, "add_contact_way",
            "{\"type\":1,\"scene\":1,\"conclusions\":{\"text\":{\"body\":"
            "\"x\"}}}",
            NULL, 200, 40035);
    /* a query parameter a write does not declare */
    refused(WriterTok, "del_contact_way?config_id=x", "{\"config_id\":\"x\"}",
            NULL, 200, 40035);
}

/*---- The range ----*/

static void
test_range(void **state)
{
    char body[512];
    json_t *j;

    (void)state;
    /* a member outside the tenant's range */
    snprintf(body, sizeof(body),
             "{\"userid\":\"u00002\",\"external_userid\":\"%s\","
             "\"remark\":\"r\"}",
             Cust);
    refused(WriterTok, "remark", body, NULL, 200, 60011);
    /* a customer the broker has never seen: closed */
    refused(WriterTok, "remark",
            "{\"userid\":\"u00001\",\"external_userid\":"
            "\"wmffffffffffffffffffffffffffffff\"}",
            NULL, 200, 60011);
    /* in range: the service tags its customer */
    j = served(WriterTok, "add_corp_tag",
               "{\"group_name\":\"vip\",\"tag\":[{\"name\":\"gold\"}]}", NULL);
    snprintf(
        body, sizeof(body),
        "{\"userid\":\"u00001\",\"external_userid\":\"%s\","
        "\"add_tag\":[\"%s\"]}",
        Cust,
        json_string_value(json_object_get(
            json_array_get(
                json_object_get(json_object_get(j, "tag_group"), "tag"), 0),
            "id")));
    json_decref(j);
    json_decref(served(WriterTok, "mark_tag", body, NULL));
    /* the narrowed service: the same customer of u00001 is in its range,
     * one followed only outside it is not */
    snprintf(body, sizeof(body),
             "{\"userid\":\"u00001\",\"external_userid\":\"%s\","
             "\"remark\":\"n\"}",
             Cust);
    json_decref(served(NarrowTok, "remark", body, NULL));
    snprintf(body, sizeof(body),
             "{\"userid\":\"u00001\",\"external_userid\":\"%s\","
             "\"remark\":\"n\"}",
             CustOut);
    refused(NarrowTok, "remark", body, NULL, 200, 60011);
    /* a contact way for a member or department out of range */
    refused(WriterTok, "add_contact_way",
            "{\"type\":2,\"scene\":2,\"user\":[\"u00002\"]}", NULL, 200, 60011);
    refused(NarrowTok, "add_contact_way",
            "{\"type\":2,\"scene\":2,\"party\":[3]}", NULL, 200, 60011);
}

static void
test_msg_template_narrowed(void **state)
{
    char body[512];

    (void)state;
    snprintf(body, sizeof(body),
             "{\"chat_type\":\"single\",\"external_userid\":[\"%s\"],"
             "\"text\":{\"content\":\"hi\"}}",
             Cust);
    /* without a sender WeCom would pick one, maybe out of range */
    refused(NarrowTok, "add_msg_template", body, NULL, 200, 60011);
    refused(NarrowTok, "add_msg_template",
            "{\"chat_type\":\"single\",\"sender\":\"u00001\","
            "\"tag_filter\":{\"group_list\":[{\"tag_list\":[\"t\"]}]}}",
            NULL, 200, 60011);
    snprintf(body, sizeof(body),
             "{\"chat_type\":\"single\",\"external_userid\":[\"%s\"],"
             "\"sender\":\"u00001\",\"text\":{\"content\":\"hi\"}}",
             CustOut);
    refused(NarrowTok, "add_msg_template", body, NULL, 200, 60011);
    snprintf(body, sizeof(body),
             "{\"chat_type\":\"single\",\"external_userid\":[\"%s\"],"
             "\"sender\":\"u00001\",\"text\":{\"content\":\"hi\"}}",
             Cust);
    json_decref(served(NarrowTok, "add_msg_template", body, NULL));
    /* a service with the tenant's whole range may leave both to WeCom */
    snprintf(body, sizeof(body),
             "{\"chat_type\":\"single\",\"external_userid\":[\"%s\"],"
             "\"text\":{\"content\":\"hi\"}}",
             Cust);
    json_decref(served(WriterTok, "add_msg_template", body, NULL));
}

/*---- What a service made ----*/

static void
test_creator_only(void **state)
{
    char body[256], tag[80], group[80], way[80];
    json_t *j, *tg;

    (void)state;
    j = served(WriterTok, "add_corp_tag",
               "{\"group_name\":\"mine\",\"tag\":[{\"name\":\"a\"}]}", NULL);
    tg = json_object_get(j, "tag_group");
    h_copy_str(group, sizeof(group), h_str(tg, "group_id"));
    h_copy_str(tag, sizeof(tag),
               h_str(json_array_get(json_object_get(tg, "tag"), 0), "id"));
    json_decref(j);
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"name\":\"b\"}", tag);
    refused(OtherTok, "edit_corp_tag", body, NULL, 200, 48002);
    json_decref(served(WriterTok, "edit_corp_tag", body, NULL));
    snprintf(body, sizeof(body),
             "{\"group_id\":\"%s\",\"tag\":[{\"name\":\"c\"}]}", group);
    refused(OtherTok, "add_corp_tag", body, NULL, 200, 48002);
    snprintf(body, sizeof(body), "{\"group_id\":[\"%s\"]}", group);
    refused(OtherTok, "del_corp_tag", body, NULL, 200, 48002);
    json_decref(served(WriterTok, "del_corp_tag", body, NULL));
    /* an id nobody made through the broker */
    refused(WriterTok, "edit_corp_tag", "{\"id\":\"etunknown\"}", NULL, 200,
            48002);

    j = served(WriterTok, "add_contact_way",
               "{\"type\":1,\"scene\":2,\"user\":[\"u00001\"],"
               "\"state\":\"s1\"}",
               NULL);
    h_copy_str(way, sizeof(way), h_str(j, "config_id"));
    assert_non_null(json_string_value(json_object_get(j, "qr_code")));
    assert_null(json_object_get(j, "mock_internal_note"));
    json_decref(j);
    snprintf(body, sizeof(body), "{\"config_id\":\"%s\"}", way);
    refused(OtherTok, "get_contact_way", body, NULL, 200, 48002);
    refused(OtherTok, "del_contact_way", body, NULL, 200, 48002);
    j = served(WriterTok, "get_contact_way", body, NULL);
    assert_string_equal(h_str(json_object_get(j, "contact_way"), "config_id"),
                        way);
    json_decref(j);
    json_decref(served(WriterTok, "del_contact_way", body, NULL));
}

/*---- WelcomeCodes ----*/

static struct event_base *Base;

struct done {
    int calls;
    enum brk_err err;
};

static void
on_done(enum brk_err err, struct redisReply *r, void *arg)
{
    struct done *d = arg;

    (void)r;
    d->calls++;
    d->err = err;
}

static int
is_up(void *arg)
{
    event_base_loop(Base, EVLOOP_NONBLOCK);
    return store_is_up(arg);
}

static int
answered(void *arg)
{
    event_base_loop(Base, EVLOOP_NONBLOCK);
    return ((struct done *)arg)->calls > 0;
}

/* A code the simulator pushed, recorded as delivered to svc_id at at_ms
 * through welcome_record. */
static void
record_code(const char *svc_id, long long at_ms, char *code, size_t len)
{
    struct store *st = NULL;
    struct done d = {0, BRK_OK};
    char url[400], hash[65], body[128];
    json_t *j;

    snprintf(body, sizeof(body), "{\"corpid\":\"%s\"}", CORP);
    j = h_sim_json(MockPort, "POST", "/__mock/welcome_code", body);
    h_copy_str(code, len, h_need_str(j, "welcome_code"));
    json_decref(j);
    snprintf(url, sizeof(url), "unix://%s", H.redis_sock);
    assert_int_equal(store_new(Base, url, 2000, &st), BRK_OK);
    assert_true(h_wait(is_up, st, 5000));
    assert_int_equal(write_store_sha256(code, strlen(code), hash), BRK_OK);
    assert_int_equal(
        welcome_record(st, "wb:", S1, CORP, hash, svc_id, at_ms, on_done, &d),
        BRK_OK);
    assert_true(h_wait(answered, &d, 5000));
    assert_int_equal(d.err, BRK_OK);
    store_free(st);
}

static void
test_welcome_code(void **state)
{
    char code[80], body[256];

    (void)state;
    Base = event_base_new();
    assert_non_null(Base);
    /* delivered to this service just now: once */
    record_code(WelcomerId, brk_wall_ms(), code, sizeof(code));
    snprintf(body, sizeof(body),
             "{\"welcome_code\":\"%s\",\"text\":{\"content\":\"hello\"}}",
             code);
    json_decref(served(WelcomerTok, "send_welcome_msg", body, NULL));
    refused(WelcomerTok, "send_welcome_msg", body, NULL, 200, 41051);
    /* delivered to another service */
    record_code("0123456789abcdef", brk_wall_ms(), code, sizeof(code));
    snprintf(body, sizeof(body),
             "{\"welcome_code\":\"%s\",\"text\":{\"content\":\"hello\"}}",
             code);
    refused(WelcomerTok, "send_welcome_msg", body, NULL, 200, 41050);
    /* pushed more than 20 s ago */
    record_code(WelcomerId, brk_wall_ms() - 21000, code, sizeof(code));
    snprintf(body, sizeof(body),
             "{\"welcome_code\":\"%s\",\"text\":{\"content\":\"hello\"}}",
             code);
    refused(WelcomerTok, "send_welcome_msg", body, NULL, 200, 41050);
    /* never delivered by the broker */
    refused(WelcomerTok, "send_welcome_msg",
            "{\"welcome_code\":\"WCnever\",\"text\":{\"content\":\"x\"}}", NULL,
            200, 41050);
    /* the code itself is never stored */
    {
        char *all = tc_redis_text();

        assert_null(strstr(all, code));
        free(all);
    }
    event_base_free(Base);
    Base = NULL;
}

/*---- Idempotency ----*/

static void
test_idempotency(void **state)
{
    char body[256], other[256];
    struct sc_resp r;
    size_t before;
    const char *hdr = "X-Broker-Idempotency-Key: order-42.a_b";

    (void)state;
    snprintf(body, sizeof(body),
             "{\"userid\":\"u00001\",\"external_userid\":\"%s\","
             "\"remark\":\"first\"}",
             Cust);
    snprintf(other, sizeof(other),
             "{\"userid\":\"u00001\",\"external_userid\":\"%s\","
             "\"remark\":\"second\"}",
             Cust);
    json_decref(served(WriterTok, "remark", body, hdr));
    /* the same key and body: the stored reply, WeCom not called */
    before = calls("remark");
    sc_resp_init(&r);
    write_call(&r, WriterTok, "remark", body, hdr);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    assert_int_equal(calls("remark"), before);
    /* the same key, another body: 409 */
    refused(WriterTok, "remark", other, hdr, 409, -1);
    /* another service's same key is its own */
    json_decref(served(NarrowTok, "remark", body, hdr));
    /* without the key a retry is a new write */
    json_decref(served(WriterTok, "remark", body, NULL));
    json_decref(served(WriterTok, "remark", body, NULL));
    /* malformed keys */
    refused(WriterTok, "remark", body, "X-Broker-Idempotency-Key: a b", 200,
            40035);
    refused(WriterTok, "remark", body,
            "X-Broker-Idempotency-Key: "
            "0123456789012345678901234567890123456789012345678901234567890123"
            "4",
            200, 40035);
    /* no request value is stored: neither the remark nor the key */
    {
        char *all = tc_redis_text();

        assert_null(strstr(all, "order-42"));
        assert_null(strstr(all, "\"first\""));
        free(all);
    }
}

/*---- Audit and metrics ----*/

/* The value of field in an audit entry (a stream entry's field list). */
static const char *
field(const redisReply *f, const char *name)
{
    size_t i;

    for (i = 0; i + 1 < f->elements; i += 2)
        if (strcmp(f->element[i]->str, name) == 0)
            return f->element[i + 1]->str;
    return NULL;
}

static void
test_audit(void **state)
{
    redisContext *rc = h_redis(&H);
    redisReply *r;
    size_t i, writes = 0;
    char *all;

    (void)state;
    assert_non_null(rc);
    r = redisCommand(rc, "XRANGE wb:audit - +");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    for (i = 0; i < r->elements; i++) {
        const redisReply *f = r->element[i]->element[1];
        const char *t = field(f, "type"), *ep = field(f, "endpoint");

        if (t == NULL || strcmp(t, "write") != 0)
            continue;
        writes++;
        assert_non_null(ep);
        if (strcmp(ep, EXT "remark") == 0 && field(f, "body_keys") != NULL) {
            assert_non_null(strstr(field(f, "body_keys"), "external_userid"));
            assert_int_equal(strlen(field(f, "body_sha256")), 64);
            assert_non_null(field(f, "errcode"));
        }
    }
    freeReplyObject(r);
    redisFree(rc);
    assert_true(writes > 10);
    /* no value in the trail, nor anywhere in Redis */
    all = tc_redis_text();
    assert_null(strstr(all, "\"second\""));
    assert_null(strstr(all, "hello"));
    free(all);
    assert_true(tc_metric("wecom_broker_writes_total{endpoint=\"/cgi-bin/"
                          "externalcontact/remark\",result=\"refused\","
                          "errcode=\"60011\"}") > 0);
    assert_true(tc_metric("wecom_broker_writes_total{endpoint=\"/cgi-bin/"
                          "externalcontact/remark\",result=\"replayed\","
                          "errcode=\"0\"}") == 1);
}

/*---- brokerctl ----*/

static void
test_scopes_list_and_explain(void **state)
{
    json_t *a, *e;
    size_t i;
    int rc, seen = 0, body_row = 0;

    (void)state;
    a = tc_ctl(&rc, "scopes", "list", (const char *)NULL);
    assert_int_equal(rc, 0);
    json_array_foreach(a, i, e)
    {
        const char *p = h_str(e, "path");

        if (strcmp(p, EXT "mark_tag") == 0) {
            assert_true(json_is_true(json_object_get(e, "write")));
            assert_string_equal(h_str(e, "capability"), "external.write");
            assert_true(json_array_size(json_object_get(e, "body")) >= 4);
            seen++;
        }
        if (strcmp(p, "/cgi-bin/user/get") == 0) {
            assert_false(json_is_true(json_object_get(e, "write")));
            assert_true(json_object_get(e, "body") == NULL ||
                        json_is_null(json_object_get(e, "body")));
            seen++;
        }
    }
    json_decref(a);
    assert_int_equal(seen, 2);
    a = tc_ctl(&rc, "explain", CORP, "writer", EXT "remark",
               (const char *)NULL);
    assert_int_equal(rc, 0);
    json_array_foreach(a, i, e)
    {
        if (strcmp(h_str(e, "field"), "body:external_userid") == 0) {
            assert_non_null(strstr(h_str(e, "reason"), "customer"));
            body_row = 1;
        }
    }
    json_decref(a);
    assert_true(body_row);
}

/*---- The service's write rate ----*/

static void
test_write_rate(void **state)
{
    char *sec, tok[128], body[256];
    json_t *v;
    int rc;

    (void)state;
    v = tc_ctl(&rc, "service", "add", "slow", "--scopes", WSCOPES,
               "--capabilities", "external.write", "--write-rate", "2/min",
               (const char *)NULL);
    assert_int_equal(rc, 0);
    sec = strdup(h_str(v, "secret"));
    json_decref(v);
    json_decref(tc_ctl(&rc, "service", "add", "bad", "--scopes", WSCOPES,
                       "--write-rate", "0/min", (const char *)NULL));
    assert_int_equal(rc, 2);
    token(sec, tok);
    snprintf(body, sizeof(body),
             "{\"userid\":\"u00001\",\"external_userid\":\"%s\","
             "\"remark\":\"r\"}",
             Cust);
    json_decref(served(tok, "remark", body, NULL));
    json_decref(served(tok, "remark", body, NULL));
    /* unless the minute turned in between: then the third is the first */
    if (brk_wall_ms() % 60000 > 2000)
        refused(tok, "remark", body, NULL, 200, 45009);
    free(sec);
}

/*---- Purge ----*/

static int
key_gone(const char *pattern)
{
    redisContext *c = h_redis(&H);
    redisReply *r = redisCommand(c, "KEYS %s", pattern);
    int gone = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 0;

    freeReplyObject(r);
    redisFree(c);
    return gone;
}

static void
test_purge_removes_write_state(void **state)
{
    int rc;

    (void)state;
    /* the index, the creators, the codes and the keys are the tenant's */
    assert_false(key_gone("wb:{" CORP "}:*:wr:cust"));
    assert_false(key_gone("wb:{" CORP "}:*:wr:owner"));
    json_decref(
        tc_ctl(&rc, "tenant", "purge", CORP, "--yes", (const char *)NULL));
    assert_int_equal(rc, 0);
    assert_true(key_gone("wb:{" CORP "}:*"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capability_and_permission),
        cmocka_unit_test(test_body_refusals),
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_msg_template_narrowed),
        cmocka_unit_test(test_creator_only),
        cmocka_unit_test(test_welcome_code),
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_audit),
        cmocka_unit_test(test_scopes_list_and_explain),
        cmocka_unit_test(test_write_rate),
        cmocka_unit_test(test_purge_removes_write_state),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
