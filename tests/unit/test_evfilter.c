/*
 * Tests for the event filter over the shipped scopes/events.json: each
 * rule of SPEC §6b it owns (declared, permission, capability, range by
 * subject, whole-tenant events, WelcomeCode, lifecycle notices with
 * AuthCorpId and without AuthCode, fields tagged as the endpoints'), the
 * output's form, hostile documents, and allocation failures.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "capability.h"
#include "evfilter.h"
#include "grant.h"
#include "scope_events.h"
#include "scope_map.h"
#include "wecom_xml.h"

#define CORP "wwcorp1"

static struct scope_map *map;

/* The range: ids listed are in; everything else is out. Counts calls. */
struct range {
    const char *in[8];
    int fail; /* answer "cannot tell" */
    int calls;
    enum scope_record last_kind;
    char last_id[64];
};

static int
range_cb(void *arg, enum scope_record kind, const char *id)
{
    struct range *r = arg;
    size_t i;

    r->calls++;
    r->last_kind = kind;
    snprintf(r->last_id, sizeof(r->last_id), "%s", id);
    if (r->fail)
        return -1;
    for (i = 0; i < nitems(r->in) && r->in[i] != NULL; i++)
        if (strcmp(r->in[i], id) == 0)
            return 1;
    return 0;
}

/* A service asking: its grant and the tenant's are the same names. */
struct svc {
    struct scope_grant tenant, service;
    struct range range;
    struct evfilter_ask ask;
    struct brk_errinfo info;
};

static void
svc_init(struct svc *s, const char *grants, unsigned caps)
{
    char buf[256], *tok, *save = NULL;

    memset(s, 0, sizeof(*s));
    scope_grant_clear(&s->tenant);
    scope_grant_clear(&s->service);
    snprintf(buf, sizeof(buf), "%s", grants);
    for (tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        assert_int_equal(scope_grant_add_name(&s->tenant, tok), BRK_OK);
        assert_int_equal(scope_grant_add_name(&s->service, tok), BRK_OK);
    }
    s->ask.callback = SCOPE_CB_COMMAND;
    s->ask.corpid = CORP;
    s->ask.tenant = &s->tenant;
    s->ask.service = &s->service;
    s->ask.caps = caps;
    s->ask.in_range = range_cb;
    s->ask.arg = &s->range;
    s->ask.info = &s->info;
}

/* Run the filter on xml; expect BRK_OK. */
static void
run(struct svc *s, const char *xml, struct evfilter_result *r)
{
    enum brk_err err = evfilter_apply(map, xml, strlen(xml), &s->ask, r);

    if (err != BRK_OK)
        fail_msg("%s: %s", brk_strerror(err), s->info.msg);
}

/* Run the filter on xml; expect want, and the result untouched. */
static void
run_err(struct svc *s, const char *xml, size_t len, enum brk_err want)
{
    struct evfilter_result r;
    enum brk_err err;

    memset(&r, 0x5a, sizeof(r));
    err = evfilter_apply(map, xml, len, &s->ask, &r);
    if (err != want)
        fail_msg("got %s, want %s (%s)", brk_strerror(err), brk_strerror(want),
                 s->info.msg);
    assert_int_equal(((unsigned char *)&r)[0], 0x5a);
    assert_int_equal(((unsigned char *)&r)[sizeof(r) - 1], 0x5a);
}

static int
has_name(const char *list, const char *name)
{
    size_t n = strlen(name);
    const char *p;

    for (p = list; (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

#define CONTACT(change, body)                                                  \
    "<xml><SuiteId><![CDATA[ww4suite]]></SuiteId>"                             \
    "<AuthCorpId><![CDATA[" CORP "]]></AuthCorpId>"                            \
    "<InfoType><![CDATA[change_contact]]></InfoType>"                          \
    "<TimeStamp>1403610513</TimeStamp>"                                        \
    "<ChangeType><![CDATA[" change "]]></ChangeType>" body "</xml>"

#define EXTERNAL(info, change, body)                                           \
    "<xml><SuiteId><![CDATA[ww4suite]]></SuiteId>"                             \
    "<AuthCorpId><![CDATA[" CORP "]]></AuthCorpId>"                            \
    "<InfoType><![CDATA[" info "]]></InfoType>"                                \
    "<TimeStamp>1403610513</TimeStamp>"                                        \
    "<ChangeType><![CDATA[" change "]]></ChangeType>" body "</xml>"

static const char create_user[] =
    CONTACT("create_user",
            "<UserID><![CDATA[zhangsan]]></UserID>"
            "<OpenUserID><![CDATA[woxxx]]></OpenUserID>"
            "<Name><![CDATA[张三]]></Name>"
            "<Department><![CDATA[1,2,3]]></Department>"
            "<MainDepartment>1</MainDepartment>"
            "<IsLeaderInDept><![CDATA[1,0,0]]></IsLeaderInDept>"
            "<DirectLeader><![CDATA[lisi,wangwu]]></DirectLeader>"
            "<Mobile><![CDATA[11111111111]]></Mobile>"
            "<Position><![CDATA[产品经理]]></Position>"
            "<Gender>1</Gender>"
            "<Email><![CDATA[zhangsan@xxx.com]]></Email>"
            "<Status>1</Status>"
            "<Avatar><![CDATA[http://wx.qlogo.cn/a/0]]></Avatar>"
            "<Telephone><![CDATA[020-111111]]></Telephone>"
            "<ExtAttr><Item><Name><![CDATA[hobby]]></Name><Type>0</Type>"
            "<Text><Value><![CDATA[travel]]></Value></Text></Item></ExtAttr>"
            "<MockInternalNote><![CDATA[x]]></MockInternalNote>");

/*---- Setup ----*/

static int
setup(void **state)
{
    static const char *const cands[] = {".", "..", "../..", "../../.."};
    struct brk_errinfo info = {"", 0, -1};
    const char *env = getenv("BROKER_SRCDIR");
    char dir[PATH_MAX];
    size_t i;

    (void)state;
    for (i = 0; i < nitems(cands); i++) {
        snprintf(dir, sizeof(dir), "%s/scopes", env != NULL ? env : cands[i]);
        if (access(dir, F_OK) == 0)
            break;
    }
    if (scope_map_load(dir, &map, &info) != BRK_OK) {
        fprintf(stderr, "%s\n", info.msg);
        return -1;
    }
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    brk_alloc_fail_at(0);
    scope_map_free(map);
    return 0;
}

/*---- Fields as the endpoints tag them ----*/

static void
test_member_fields_as_user_get(void **state)
{
    struct evfilter_result r;
    struct svc s;

    (void)state;
    svc_init(&s, "contacts.read", 0);
    s.range.in[0] = "zhangsan";
    run(&s, create_user, &r);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    assert_string_equal(r.name, "change_contact/create_user");
    assert_string_equal(r.xml,
                        "<xml><SuiteId><![CDATA[ww4suite]]></SuiteId>"
                        "<AuthCorpId><![CDATA[" CORP "]]></AuthCorpId>"
                        "<InfoType><![CDATA[change_contact]]></InfoType>"
                        "<TimeStamp>1403610513</TimeStamp>"
                        "<ChangeType><![CDATA[create_user]]></ChangeType>"
                        "<UserID><![CDATA[zhangsan]]></UserID>"
                        "<OpenUserID><![CDATA[woxxx]]></OpenUserID>"
                        "<Department><![CDATA[1,2,3]]></Department>"
                        "<MainDepartment>1</MainDepartment>"
                        "<Status>1</Status></xml>");
    assert_int_equal(r.xml_len, strlen(r.xml));
    assert_true(has_name(r.kept, "UserID"));
    assert_true(has_name(r.kept, "Department"));
    assert_true(has_name(r.removed, "Mobile"));
    assert_true(has_name(r.removed, "Email"));
    assert_true(has_name(r.removed, "Name"));
    assert_true(has_name(r.removed, "Gender"));
    assert_true(has_name(r.removed, "DirectLeader"));
    assert_true(has_name(r.removed, "ExtAttr"));
    assert_true(has_name(r.removed, "MockInternalNote"));
    assert_false(has_name(r.kept, "Mobile"));
    assert_null(strstr(r.xml, "11111111111"));
    assert_int_equal(r.nsubjects, 1);
    assert_int_equal(r.subjects[0].kind, SCOPE_REC_MEMBER);
    assert_string_equal(r.subjects[0].field, "UserID");
    assert_string_equal(r.subjects[0].id, "zhangsan");
    assert_true(r.subjects[0].checked);
    assert_int_equal(r.perm, GRANT_FIELD_KEPT);
    evfilter_result_free(&r);
}

/* Sensitive and organisation fields follow their own permissions; leaders
 * outside the range leave the list. */
static void
test_sensitive_and_leaders(void **state)
{
    struct evfilter_result r;
    struct svc s;

    (void)state;
    svc_init(&s,
             "contacts.read,member.sensitive,corp_arch:base:base,"
             "corp_arch:member:direct_leader",
             0);
    s.range.in[0] = "zhangsan";
    s.range.in[1] = "wangwu";
    run(&s, create_user, &r);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    assert_non_null(strstr(r.xml, "<Gender>1</Gender>"));
    assert_non_null(
        strstr(r.xml, "<Avatar><![CDATA[http://wx.qlogo.cn/a/0]]></Avatar>"));
    assert_non_null(
        strstr(r.xml, "<IsLeaderInDept><![CDATA[1,0,0]]></IsLeaderInDept>"));
    assert_non_null(
        strstr(r.xml, "<DirectLeader><![CDATA[wangwu]]></DirectLeader>"));
    assert_int_equal(r.dropped, 1);
    /* "never" stays removed whatever the grant */
    assert_null(strstr(r.xml, "Mobile"));
    assert_null(strstr(r.xml, "ExtAttr"));
    assert_null(strstr(r.xml, "Telephone"));
    evfilter_result_free(&r);
}

/*---- Event-level rules ----*/

static void
test_permission(void **state)
{
    struct evfilter_result r;
    struct svc s;

    (void)state;
    svc_init(&s, "external.customers", 0);
    s.range.in[0] = "zhangsan";
    run(&s, create_user, &r);
    assert_int_equal(r.reason, EVFILTER_PERMISSION);
    assert_int_equal(r.perm, GRANT_FIELD_BOTH_LACK);
    assert_null(r.xml);
    assert_null(r.kept);
    assert_int_equal(s.range.calls, 0);
    evfilter_result_free(&r);
    /* the tenant granted it, the service was not given it */
    assert_int_equal(scope_grant_add_name(&s.tenant, "contacts.read"), BRK_OK);
    run(&s, create_user, &r);
    assert_int_equal(r.reason, EVFILTER_PERMISSION);
    assert_int_equal(r.perm, GRANT_FIELD_SERVICE_LACKS);
    evfilter_result_free(&r);
    /* no grants at all: refused, not crashed */
    s.ask.tenant = NULL;
    s.ask.service = NULL;
    run(&s, create_user, &r);
    assert_int_equal(r.reason, EVFILTER_PERMISSION);
    evfilter_result_free(&r);
}

static void
test_undeclared(void **state)
{
    static const char unknown[] =
        "<xml><SuiteId><![CDATA[s]]></SuiteId><InfoType><![CDATA["
        "new_thing]]></InfoType><TimeStamp>1</TimeStamp></xml>";
    static const char ticket[] =
        "<xml><SuiteId><![CDATA[s]]></SuiteId><InfoType><![CDATA["
        "suite_ticket]]></InfoType><TimeStamp>1</TimeStamp>"
        "<SuiteTicket><![CDATA[secret]]></SuiteTicket></xml>";
    static const char change[] = CONTACT("rename_user", "");
    static const char odd[] = "<xml><InfoType><![CDATA[a b]]></InfoType></xml>";
    struct evfilter_result r;
    struct svc s;

    (void)state;
    svc_init(&s, "contacts.read,external.customers", CAP_ALL);
    run(&s, unknown, &r);
    assert_int_equal(r.reason, EVFILTER_UNDECLARED);
    assert_string_equal(r.name, "new_thing");
    assert_null(r.event);
    assert_null(r.xml);
    evfilter_result_free(&r);
    run(&s, ticket, &r);
    assert_int_equal(r.reason, EVFILTER_UNDECLARED);
    evfilter_result_free(&r);
    run(&s, change, &r);
    assert_int_equal(r.reason, EVFILTER_UNDECLARED);
    assert_string_equal(r.name, "change_contact/rename_user");
    evfilter_result_free(&r);
    run(&s, odd, &r);
    assert_int_equal(r.reason, EVFILTER_UNDECLARED);
    assert_string_equal(r.name, "");
    evfilter_result_free(&r);
    /* a command event sent to the data URL is not the data event */
    s.ask.callback = SCOPE_CB_DATA;
    run(&s, create_user, &r);
    assert_int_equal(r.reason, EVFILTER_UNDECLARED);
    evfilter_result_free(&r);
}

static void
test_range_by_subject(void **state)
{
    static const char del[] =
        CONTACT("delete_user", "<UserID><![CDATA[gone]]></UserID>"
                               "<OpenUserID><![CDATA[wo1]]></OpenUserID>");
    static const char party[] =
        CONTACT("create_party", "<Id>7</Id><Name><![CDATA[Sales]]></Name>"
                                "<ParentId>1</ParentId><Order>1</Order>");
    struct evfilter_result r;
    struct svc s;

    (void)state;
    svc_init(&s, "contacts.read", 0);
    run(&s, create_user, &r);
    assert_int_equal(r.reason, EVFILTER_OUT_OF_RANGE);
    assert_null(r.xml);
    assert_int_equal(r.nsubjects, 1);
    assert_string_equal(r.subjects[0].id, "zhangsan");
    evfilter_result_free(&r);
    /* a deletion is asked of the caller's (pre-deletion) range */
    s.range.in[0] = "gone";
    run(&s, del, &r);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    assert_int_equal(s.range.last_kind, SCOPE_REC_MEMBER);
    assert_string_equal(s.range.last_id, "gone");
    evfilter_result_free(&r);
    /* a department by its id; Name is "never", as in department/list */
    s.range.in[0] = "7";
    run(&s, party, &r);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    assert_int_equal(s.range.last_kind, SCOPE_REC_DEPARTMENT);
    assert_null(strstr(r.xml, "Sales"));
    assert_non_null(strstr(r.xml, "<Id>7</Id>"));
    evfilter_result_free(&r);
    s.range.in[0] = "8";
    run(&s, party, &r);
    assert_int_equal(r.reason, EVFILTER_OUT_OF_RANGE);
    evfilter_result_free(&r);
    /* no range callback: nothing is in range */
    s.ask.in_range = NULL;
    run(&s, party, &r);
    assert_int_equal(r.reason, EVFILTER_OUT_OF_RANGE);
    evfilter_result_free(&r);
    /* a range that cannot tell fails the call */
    s.ask.in_range = range_cb;
    s.range.fail = 1;
    run_err(&s, party, strlen(party), BRK_ERR_STORE);
}

static void
test_tag_lists(void **state)
{
    static const char tag[] = CONTACT(
        "update_tag", "<TagId>5</TagId>"
                      "<AddUserItems><![CDATA[u1,u2,u3]]></AddUserItems>"
                      "<DelUserItems><![CDATA[]]></DelUserItems>"
                      "<AddPartyItems><![CDATA[1,9]]></AddPartyItems>");
    struct evfilter_result r;
    struct svc s;

    (void)state;
    svc_init(&s, "contacts.read", 0);
    s.range.in[0] = "5";
    s.range.in[1] = "u1";
    s.range.in[2] = "u3";
    s.range.in[3] = "1";
    run(&s, tag, &r);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    assert_non_null(
        strstr(r.xml, "<AddUserItems><![CDATA[u1,u3]]></AddUserItems>"));
    assert_non_null(strstr(r.xml, "<DelUserItems><![CDATA[]]></DelUserItems>"));
    assert_non_null(
        strstr(r.xml, "<AddPartyItems><![CDATA[1]]></AddPartyItems>"));
    assert_int_equal(r.dropped, 2);
    evfilter_result_free(&r);
    s.range.in[0] = "6";
    run(&s, tag, &r);
    assert_int_equal(r.reason, EVFILTER_OUT_OF_RANGE);
    assert_int_equal(s.range.last_kind, SCOPE_REC_TAG);
    evfilter_result_free(&r);
}

static void
test_external_contact_and_welcome(void **state)
{
    static const char add[] =
        EXTERNAL("change_external_contact", "add_external_contact",
                 "<UserID><![CDATA[zhangsan]]></UserID>"
                 "<ExternalUserID><![CDATA[wmcust]]></ExternalUserID>"
                 "<State><![CDATA[ad1]]></State>"
                 "<WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode>");
    struct evfilter_result r;
    struct svc s;

    (void)state;
    svc_init(&s, "external.customers", 0);
    s.range.in[0] = "zhangsan";
    run(&s, add, &r);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    assert_true(r.welcome_code);
    assert_null(strstr(r.xml, "WELCOMECODE"));
    assert_true(has_name(r.removed, "WelcomeCode"));
    assert_non_null(strstr(r.xml, "<State><![CDATA[ad1]]></State>"));
    assert_int_equal(s.range.last_kind, SCOPE_REC_FOLLOW_USER);
    evfilter_result_free(&r);
    s.ask.caps = CAP_EXTERNAL_WELCOME;
    run(&s, add, &r);
    assert_non_null(
        strstr(r.xml, "<WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode>"));
    assert_true(has_name(r.kept, "WelcomeCode"));
    evfilter_result_free(&r);
    /* contacts alone do not open customers */
    svc_init(&s, "contacts.read", CAP_EXTERNAL_WELCOME);
    s.range.in[0] = "zhangsan";
    run(&s, add, &r);
    assert_int_equal(r.reason, EVFILTER_PERMISSION);
    assert_true(r.welcome_code);
    evfilter_result_free(&r);
    /* the follow user out of range */
    svc_init(&s, "external.customers", 0);
    run(&s, add, &r);
    assert_int_equal(r.reason, EVFILTER_OUT_OF_RANGE);
    evfilter_result_free(&r);
}

static void
test_chat_owner_and_members(void **state)
{
    static const char upd[] = EXTERNAL(
        "change_external_chat", "update",
        "<ChatId><![CDATA[wrchat]]></ChatId>"
        "<UpdateDetail><![CDATA[add_member]]></UpdateDetail>"
        "<JoinScene>1</JoinScene><QuitScene>0</QuitScene>"
        "<MemChangeCnt>2</MemChangeCnt>"
        "<MemChangeList><Item>inside</Item><Item>outside</Item></MemChangeList>"
        "<LastMemVer>a</LastMemVer><CurMemVer>b</CurMemVer>");
    struct evfilter_result r;
    struct svc s;

    (void)state;
    svc_init(&s, "external.customers", 0);
    s.range.in[0] = "inside";
    /* without a range of its own the chat is not asked about */
    run(&s, upd, &r);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    assert_int_equal(r.nsubjects, 1);
    assert_int_equal(r.subjects[0].kind, SCOPE_REC_CHAT);
    assert_string_equal(r.subjects[0].id, "wrchat");
    assert_false(r.subjects[0].checked);
    assert_non_null(strstr(r.xml, "<MemChangeList><Item><![CDATA[inside]]>"
                                  "</Item></MemChangeList>"));
    assert_int_equal(s.range.last_kind, SCOPE_REC_CHAT_MEMBER);
    assert_int_equal(r.dropped, 1);
    assert_non_null(strstr(r.xml, "<JoinScene>1</JoinScene>"));
    evfilter_result_free(&r);
    /* a range-narrowed service needs the owner in range */
    s.ask.own_range = 1;
    run(&s, upd, &r);
    assert_int_equal(r.reason, EVFILTER_OUT_OF_RANGE);
    assert_true(r.subjects[0].checked);
    evfilter_result_free(&r);
    s.range.in[1] = "wrchat";
    run(&s, upd, &r);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    evfilter_result_free(&r);
}

static void
test_external_tag_whole_tenant(void **state)
{
    static const char tag[] =
        EXTERNAL("change_external_tag", "create",
                 "<Id><![CDATA[et1]]></Id><TagType><![CDATA[tag]]></TagType>");
    struct evfilter_result r;
    struct svc s;

    (void)state;
    svc_init(&s, "external.customers", 0);
    run(&s, tag, &r);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    assert_int_equal(s.range.calls, 0);
    evfilter_result_free(&r);
    s.ask.own_range = 1;
    run(&s, tag, &r);
    assert_int_equal(r.reason, EVFILTER_NARROWED);
    assert_null(r.xml);
    evfilter_result_free(&r);
}

/*---- Lifecycle notices ----*/

static void
test_create_auth(void **state)
{
    static const char ca[] =
        "<xml><SuiteId><![CDATA[ww4suite]]></SuiteId>"
        "<AuthCode><![CDATA[AUTHCODE]]></AuthCode>"
        "<InfoType><![CDATA[create_auth]]></InfoType>"
        "<TimeStamp>1403610513</TimeStamp>"
        "<State><![CDATA[123]]></State><ExtraInfo></ExtraInfo></xml>";
    static const char other[] =
        "<xml><SuiteId><![CDATA[s]]></SuiteId>"
        "<InfoType><![CDATA[change_auth]]></InfoType>"
        "<TimeStamp>1</TimeStamp>"
        "<AuthCorpId><![CDATA[wwother]]></AuthCorpId></xml>";
    static const char cancel[] =
        "<xml><SuiteId><![CDATA[s]]></SuiteId>"
        "<InfoType><![CDATA[cancel_auth]]></InfoType>"
        "<TimeStamp>1</TimeStamp>"
        "<AuthCorpId><![CDATA[" CORP "]]></AuthCorpId>"
        "<AuthCode><![CDATA[AUTHCODE]]></AuthCode></xml>";
    struct evfilter_result r;
    struct svc s;

    (void)state;
    /* to every service allowed the tenant, whatever its scopes */
    svc_init(&s, "", 0);
    run(&s, ca, &r);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    assert_string_equal(r.xml, "<xml><SuiteId><![CDATA[ww4suite]]></SuiteId>"
                               "<AuthCorpId><![CDATA[" CORP "]]></AuthCorpId>"
                               "<InfoType><![CDATA[create_auth]]></InfoType>"
                               "<TimeStamp>1403610513</TimeStamp>"
                               "<State><![CDATA[123]]></State>"
                               "<ExtraInfo><![CDATA[]]></ExtraInfo></xml>");
    assert_true(has_name(r.removed, "AuthCode"));
    assert_true(has_name(r.kept, "AuthCorpId"));
    assert_int_equal(s.range.calls, 0);
    evfilter_result_free(&r);
    /* an AuthCode is removed even where it is not declared */
    run(&s, cancel, &r);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    assert_null(strstr(r.xml, "AUTHCODE"));
    assert_null(strstr(r.xml, "AuthCode"));
    evfilter_result_free(&r);
    /* the tenant must be known to name it */
    s.ask.corpid = NULL;
    run_err(&s, ca, strlen(ca), BRK_ERR_INVAL);
    s.ask.corpid = "bad corp";
    run_err(&s, ca, strlen(ca), BRK_ERR_INVAL);
    /* an event naming another corp is refused */
    s.ask.corpid = CORP;
    run_err(&s, other, strlen(other), BRK_ERR_INVAL);
}

/*---- Data callbacks ----*/

static void
test_data_callbacks(void **state)
{
    static const char text[] =
        "<xml><ToUserName><![CDATA[" CORP "]]></ToUserName>"
        "<FromUserName><![CDATA[xen0n]]></FromUserName>"
        "<CreateTime>1583995625</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        "<Content><![CDATA[x123]]></Content>"
        "<MsgId>2018405441</MsgId><AgentID>1000002</AgentID></xml>";
    static const char admin[] =
        "<xml><ToUserName><![CDATA[" CORP "]]></ToUserName>"
        "<FromUserName><![CDATA[sys]]></FromUserName>"
        "<CreateTime>1583995625</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_app_admin]]></Event>"
        "<AgentID>1000002</AgentID></xml>";
    static const char elsewhere[] =
        "<xml><ToUserName><![CDATA[wwother]]></ToUserName>"
        "<FromUserName><![CDATA[xen0n]]></FromUserName>"
        "<CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        "</xml>";
    struct evfilter_result r;
    struct svc s;

    (void)state;
    svc_init(&s, "contacts.read", 0);
    s.ask.callback = SCOPE_CB_DATA;
    s.range.in[0] = "xen0n";
    run(&s, text, &r);
    assert_int_equal(r.reason, EVFILTER_CAPABILITY);
    evfilter_result_free(&r);
    s.ask.caps = CAP_MESSAGES;
    run(&s, text, &r);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    assert_string_equal(r.xml, text);
    assert_null(strstr(r.xml, "AuthCorpId"));
    evfilter_result_free(&r);
    s.range.in[0] = NULL;
    run(&s, text, &r);
    assert_int_equal(r.reason, EVFILTER_OUT_OF_RANGE);
    evfilter_result_free(&r);
    /* the admin notice has no member sender */
    run(&s, admin, &r);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    assert_string_equal(r.name, "event/change_app_admin");
    assert_int_equal(s.range.calls, 2);
    evfilter_result_free(&r);
    run_err(&s, elsewhere, strlen(elsewhere), BRK_ERR_INVAL);
}

/*---- The output ----*/

/* "]]>" and CR in a value never break out of CDATA; the output reads back
 * to the same values. */
static void
test_cdata_escaping(void **state)
{
    static const char evil[] = CONTACT(
        "update_user", "<UserID><![CDATA[zhangsan]]></UserID>"
                       "<OpenUserID>a]]&gt;&lt;Mobile&gt;1&lt;/Mobile&gt;"
                       "&#13;b</OpenUserID>");
    struct wecom_xml *x = NULL;
    struct evfilter_result r;
    struct svc s;

    (void)state;
    svc_init(&s, "contacts.read", 0);
    s.range.in[0] = "zhangsan";
    run(&s, evil, &r);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    assert_int_equal(wecom_xml_parse(r.xml, r.xml_len, NULL, &x, NULL), BRK_OK);
    assert_string_equal(wecom_xml_get(x, "OpenUserID"),
                        "a]]><Mobile>1</Mobile>\rb");
    assert_null(wecom_xml_get(x, "Mobile"));
    wecom_xml_free(x);
    evfilter_result_free(&r);
}

/*---- Hostile input ----*/

static void
test_hostile_documents(void **state)
{
    static const char *const bad_xml[] = {
        "<xml><InfoType><![CDATA[change_contact]]></InfoType>",
        "",
        "<notxml/>",
        "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY a \"b\">]>"
        "<xml><InfoType>&a;</InfoType></xml>",
        "<xml><InfoType>&undefined;</InfoType></xml>",
        "<xml><InfoType a=\"1\">x</InfoType></xml>",
        /* repeated at the root: which UserID would the range see? */
        CONTACT("delete_user", "<UserID><![CDATA[in]]></UserID>"
                               "<UserID><![CDATA[out]]></UserID>"),
        /* repeated below the root */
        CONTACT("create_user", "<UserID><![CDATA[in]]></UserID><ExtAttr>"
                               "<Item><Name>a</Name><Name>b</Name></Item>"
                               "</ExtAttr>"),
        /* not UTF-8 */
        CONTACT("create_user", "<UserID>\xff\xfe</UserID>"),
    };
    static const char *const bad_type[] = {
        CONTACT("create_user", "<UserID><![CDATA[in]]></UserID>"
                               "<MainDepartment>one</MainDepartment>"),
        CONTACT("create_user", "<UserID><![CDATA[in]]></UserID>"
                               "<MainDepartment></MainDepartment>"),
        CONTACT("create_user", "<UserID><![CDATA[in]]></UserID>"
                               "<Department><![CDATA[1,x]]></Department>"),
        CONTACT("create_user", "<UserID><a>in</a></UserID>"),
        CONTACT("create_user", "<UserID><![CDATA[in]]></UserID>"
                               "<ExtAttr><Row><Name>a</Name></Row></ExtAttr>"),
        CONTACT("create_user", "<UserID><![CDATA[in]]></UserID>"
                               "<ExtAttr>text</ExtAttr>"),
        CONTACT("create_user", "<UserID><![CDATA[in]]></UserID>"
                               "<Department><Item>1</Item></Department>"),
        /* a type error in a field the service would not get still fails */
        CONTACT("create_user", "<UserID><![CDATA[in]]></UserID>"
                               "<Gender>male</Gender>"),
        "<xml><SuiteId><![CDATA[s]]></SuiteId><InfoType><![CDATA["
        "change_auth]]></InfoType><TimeStamp> 1</TimeStamp></xml>",
    };
    char *big, *deep;
    size_t i, n;
    struct svc s;

    (void)state;
    svc_init(&s, "contacts.read,member.sensitive", 0);
    s.range.in[0] = "in";
    for (i = 0; i < nitems(bad_xml); i++)
        run_err(&s, bad_xml[i], strlen(bad_xml[i]), BRK_ERR_WX_PARSE_XML);
    for (i = 0; i < nitems(bad_type); i++)
        run_err(&s, bad_type[i], strlen(bad_type[i]), BRK_ERR_INVAL);
    /* a NUL inside is not the end of the document */
    run_err(&s, "<xml></xml>\0<x/>", 16, BRK_ERR_WX_PARSE_XML);
    /* huge */
    n = EVFILTER_MAX_BYTES + 1;
    big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    memcpy(big, "<xml>", 5);
    memcpy(big + n - 6, "</xml>", 6);
    run_err(&s, big, n, BRK_ERR_TOOBIG);
    free(big);
    /* deep: ExtAttr/Item/Text/Value/a/b/c/d */
    deep = malloc(4096);
    assert_non_null(deep);
    snprintf(deep, 4096, "%s",
             CONTACT("create_user", "<UserID><![CDATA[in]]></UserID>"
                                    "<ExtAttr><Item><Text><Value><a><b><c><d>"
                                    "</d></c></b></a></Value></Text></Item>"
                                    "</ExtAttr>"));
    run_err(&s, deep, strlen(deep), BRK_ERR_TOOBIG);
    free(deep);
    run_err(&s, NULL, 3, BRK_ERR_INVAL);
}

/* Names of undeclared elements reach the audit only when plain. */
static void
test_removed_names_are_plain(void **state)
{
    static const char odd[] =
        CONTACT("delete_user", "<UserID><![CDATA[in]]></UserID><x-y>1</x-y>"
                               "<Z.z>2</Z.z><Fine_1>3</Fine_1>");
    struct evfilter_result r;
    struct svc s;

    (void)state;
    svc_init(&s, "contacts.read", 0);
    s.range.in[0] = "in";
    run(&s, odd, &r);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    assert_true(has_name(r.removed, "?"));
    assert_true(has_name(r.removed, "Fine_1"));
    assert_null(strstr(r.removed, "x-y"));
    assert_null(strstr(r.removed, "Z.z"));
    assert_null(strstr(r.xml, "x-y"));
    evfilter_result_free(&r);
}

/*---- Small pieces ----*/

static void
test_names_and_decide(void **state)
{
    const struct scope_event *ev = scope_events_lookup(map, "event:text");
    enum grant_field f;
    struct svc s;

    (void)state;
    assert_string_equal(evfilter_reason_name(EVFILTER_DELIVER), "deliver");
    assert_string_equal(evfilter_reason_name(EVFILTER_OUT_OF_RANGE),
                        "out_of_range");
    assert_string_equal(evfilter_reason_name((enum evfilter_reason)99),
                        "unknown");
    svc_init(&s, "", 0);
    assert_int_equal(evfilter_decide(ev, &s.ask, &f), EVFILTER_CAPABILITY);
    assert_int_equal(f, GRANT_FIELD_ALWAYS);
    s.ask.caps = CAP_MESSAGES;
    assert_int_equal(evfilter_decide(ev, &s.ask, NULL), EVFILTER_DELIVER);
    evfilter_result_free(NULL);
}

/*---- Allocation failures ----*/

static void
test_alloc_failure(void **state)
{
    struct evfilter_result r;
    unsigned long n;
    enum brk_err err = BRK_ERR_NOMEM;
    struct svc s;

    (void)state;
    svc_init(&s,
             "contacts.read,member.sensitive,corp_arch:base:base,"
             "corp_arch:member:direct_leader",
             0);
    s.range.in[0] = "zhangsan";
    s.range.in[1] = "wangwu";
    for (n = 1; n < 10000; n++) {
        memset(&r, 0x5a, sizeof(r));
        brk_alloc_fail_at(n);
        err = evfilter_apply(map, create_user, strlen(create_user), &s.ask, &r);
        if (err == BRK_OK) {
            assert_false(brk_alloc_failed());
            brk_alloc_fail_at(0);
            break;
        }
        brk_alloc_fail_at(0);
        if (err != BRK_ERR_NOMEM)
            fail_msg("n=%lu: %s (%s)", n, brk_strerror(err), s.info.msg);
        assert_int_equal(((unsigned char *)&r)[0], 0x5a);
    }
    assert_int_equal(err, BRK_OK);
    assert_true(n > 10);
    assert_int_equal(r.reason, EVFILTER_DELIVER);
    assert_non_null(strstr(r.xml, "<DirectLeader><![CDATA[wangwu]]>"));
    evfilter_result_free(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_member_fields_as_user_get),
        cmocka_unit_test(test_sensitive_and_leaders),
        cmocka_unit_test(test_permission),
        cmocka_unit_test(test_undeclared),
        cmocka_unit_test(test_range_by_subject),
        cmocka_unit_test(test_tag_lists),
        cmocka_unit_test(test_external_contact_and_welcome),
        cmocka_unit_test(test_chat_owner_and_members),
        cmocka_unit_test(test_external_tag_whole_tenant),
        cmocka_unit_test(test_create_auth),
        cmocka_unit_test(test_data_callbacks),
        cmocka_unit_test(test_cdata_escaping),
        cmocka_unit_test(test_hostile_documents),
        cmocka_unit_test(test_removed_names_are_plain),
        cmocka_unit_test(test_names_and_decide),
        cmocka_unit_test(test_alloc_failure),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
