/*
 * Tests for the WeCom callback XML parser: fixed API tests for every event
 * body and every hostile input, plus one test per case directory under
 * tests/data/wecom_xml/{valid,invalid} (or $WECOM_XML_DATA).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "dynbuf.h"
#include "wecom_xml.h"

#define DATA_DIR_DEFAULT  "tests/data/wecom_xml"
#define FILE_MAX          (1024 * 1024)
#define MIN_VALID_CASES   12
#define MIN_INVALID_CASES 20

/*---- Helpers ----*/

static struct wecom_xml *
parse_ok(const char *doc)
{
    struct wecom_xml *x = NULL;
    struct brk_errinfo info = {"", 0, -1};
    enum brk_err err = wecom_xml_parse(doc, strlen(doc), NULL, &x, &info);

    if (err != BRK_OK)
        print_error("unexpected %s: %s (line %d, offset %ld)\n",
                    brk_strerror(err), info.msg, info.line, info.offset);
    assert_int_equal(err, BRK_OK);
    assert_non_null(x);
    return x;
}

/* Parse doc (len bytes) expecting err and a message containing msg. */
static void
expect_err_len(const char *doc, size_t len, const struct wecom_xml_limits *lim,
               enum brk_err want, const char *msg, struct brk_errinfo *info_out)
{
    struct wecom_xml *x = NULL;
    struct brk_errinfo info = {"", 0, -1};
    enum brk_err err = wecom_xml_parse(doc, len, lim, &x, &info);

    if (err != want || (msg != NULL && strstr(info.msg, msg) == NULL))
        print_error("got %s \"%s\", want %s \"%s\"\n", brk_strerror(err),
                    info.msg, brk_strerror(want), msg ? msg : "");
    assert_int_equal(err, want);
    assert_null(x);
    if (msg != NULL)
        assert_non_null(strstr(info.msg, msg));
    if (info_out != NULL)
        *info_out = info;
}

static void
expect_err(const char *doc, enum brk_err want, const char *msg)
{
    expect_err_len(doc, strlen(doc), NULL, want, msg, NULL);
}

static void
assert_get(const struct wecom_xml *x, const char *name, const char *want)
{
    const char *got = wecom_xml_get(x, name);

    if (got == NULL || strcmp(got, want) != 0)
        print_error("<%s>: got \"%s\", want \"%s\"\n", name,
                    got ? got : "(absent)", want);
    assert_non_null(got);
    assert_string_equal(got, want);
}

/* A string of n copies of c (brk_free). */
static char *
repeat(char c, size_t n)
{
    char *s = brk_malloc(n + 1);

    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* "<xml><A>" + text + "</A></xml>" padded with spaces inside <xml>. */
static char *
doc_with_text(const char *text, size_t pad)
{
    struct dynbuf d;
    char *out = NULL;
    char *sp = repeat(' ', pad);

    dynbuf_init(&d, FILE_MAX);
    assert_int_equal(dynbuf_add_str(&d, "<xml>"), BRK_OK);
    assert_int_equal(dynbuf_add_str(&d, sp), BRK_OK);
    assert_int_equal(dynbuf_printf(&d, "<A>%s</A></xml>", text), BRK_OK);
    assert_int_equal(dynbuf_take(&d, &out, NULL), BRK_OK);
    brk_free(sp);
    return out;
}

/* A document of n elements: <xml> with n - 1 children <E0>...<En-2>. */
static char *
doc_with_elements(size_t n)
{
    struct dynbuf d;
    char *out = NULL;
    size_t i;

    dynbuf_init(&d, FILE_MAX);
    assert_int_equal(dynbuf_add_str(&d, "<xml>"), BRK_OK);
    for (i = 1; i < n; i++)
        assert_int_equal(dynbuf_printf(&d, "<E%zu/>", i), BRK_OK);
    assert_int_equal(dynbuf_add_str(&d, "</xml>"), BRK_OK);
    assert_int_equal(dynbuf_take(&d, &out, NULL), BRK_OK);
    return out;
}

/* A document nested depth levels deep: <xml><a><a>...v...</a></a></xml>. */
static char *
doc_with_depth(size_t depth)
{
    struct dynbuf d;
    char *out = NULL;
    size_t i;

    dynbuf_init(&d, FILE_MAX);
    assert_int_equal(dynbuf_add_str(&d, "<xml>"), BRK_OK);
    for (i = 1; i < depth; i++)
        assert_int_equal(dynbuf_add_str(&d, "<a>"), BRK_OK);
    assert_int_equal(dynbuf_add_str(&d, "v"), BRK_OK);
    for (i = 1; i < depth; i++)
        assert_int_equal(dynbuf_add_str(&d, "</a>"), BRK_OK);
    assert_int_equal(dynbuf_add_str(&d, "</xml>"), BRK_OK);
    assert_int_equal(dynbuf_take(&d, &out, NULL), BRK_OK);
    return out;
}

/*---- Canonical dump (the format of expected.txt) ----*/

/*
 * One line per element in document order: "path=text", path the element
 * names from the root joined by '/'. In text, backslash, tab, LF, CR and
 * other control bytes are escaped (\\, \t, \n, \r, \xHH); UTF-8 is as is.
 */
static void
dump_node(struct dynbuf *d, const struct wecom_xml_node *n, const char *path)
{
    char *p = NULL;
    size_t i;
    unsigned char ch;
    struct dynbuf pb;

    dynbuf_init(&pb, FILE_MAX);
    if (path[0] != '\0')
        assert_int_equal(dynbuf_printf(&pb, "%s/%s", path, n->name), BRK_OK);
    else
        assert_int_equal(dynbuf_add_str(&pb, n->name), BRK_OK);
    assert_int_equal(dynbuf_take(&pb, &p, NULL), BRK_OK);
    assert_int_equal(dynbuf_printf(d, "%s=", p), BRK_OK);
    assert_int_equal(strlen(n->text), n->text_len);
    for (i = 0; i < n->text_len; i++) {
        ch = (unsigned char)n->text[i];
        if (ch == '\\')
            assert_int_equal(dynbuf_add_str(d, "\\\\"), BRK_OK);
        else if (ch == '\n')
            assert_int_equal(dynbuf_add_str(d, "\\n"), BRK_OK);
        else if (ch == '\r')
            assert_int_equal(dynbuf_add_str(d, "\\r"), BRK_OK);
        else if (ch == '\t')
            assert_int_equal(dynbuf_add_str(d, "\\t"), BRK_OK);
        else if (ch < 0x20 || ch == 0x7f)
            assert_int_equal(dynbuf_printf(d, "\\x%02x", ch), BRK_OK);
        else
            assert_int_equal(dynbuf_add(d, &n->text[i], 1), BRK_OK);
    }
    assert_int_equal(dynbuf_add_str(d, "\n"), BRK_OK);
    for (i = 0; i < n->nchildren; i++)
        dump_node(d, &n->children[i], p);
    brk_free(p);
}

static char *
dump(const struct wecom_xml *x)
{
    struct dynbuf d;
    char *out = NULL;

    dynbuf_init(&d, FILE_MAX);
    assert_int_equal(dynbuf_add_str(&d, ""), BRK_OK);
    dump_node(&d, wecom_xml_root(x), "");
    assert_int_equal(dynbuf_take(&d, &out, NULL), BRK_OK);
    return out;
}

/*---- Event bodies (wecom-protocol.md §1.6, §2) ----*/

static void
test_envelope_command(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("<xml>\n"
                 "  <ToUserName><![CDATA[ww4asffe99e54c0f4c]]></ToUserName>\n"
                 "  <Encrypt><![CDATA[RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9"
                 "qca6a==]]></Encrypt>\n"
                 "  <AgentID><![CDATA[]]></AgentID>\n"
                 "</xml>\n");
    assert_get(x, "ToUserName", "ww4asffe99e54c0f4c");
    assert_get(x, "Encrypt", "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6a==");
    assert_get(x, "AgentID", "");
    assert_null(wecom_xml_get(x, "MsgSignature"));
    assert_string_equal(wecom_xml_root(x)->name, "xml");
    assert_string_equal(wecom_xml_root(x)->text, "");
    assert_int_equal(wecom_xml_root(x)->nchildren, 3);
    wecom_xml_free(x);
}

static void
test_envelope_data(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("<xml><ToUserName><![CDATA[wxf8b4f85f3a794e77]]>"
                 "</ToUserName><Encrypt><![CDATA[abc+/=]]></Encrypt>"
                 "<AgentID><![CDATA[218]]></AgentID></xml>");
    assert_get(x, "ToUserName", "wxf8b4f85f3a794e77");
    assert_get(x, "Encrypt", "abc+/=");
    assert_get(x, "AgentID", "218");
    wecom_xml_free(x);
}

static void
test_passive_reply(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("<xml>\n"
                 "  <Encrypt><![CDATA[msg_encrypt]]></Encrypt>\n"
                 "  <MsgSignature><![CDATA[msg_signature]]></MsgSignature>\n"
                 "  <TimeStamp>1409659813</TimeStamp>\n"
                 "  <Nonce><![CDATA[1372623149]]></Nonce>\n"
                 "</xml>");
    assert_get(x, "Encrypt", "msg_encrypt");
    assert_get(x, "MsgSignature", "msg_signature");
    assert_get(x, "TimeStamp", "1409659813");
    assert_get(x, "Nonce", "1372623149");
    wecom_xml_free(x);
}

static void
test_suite_ticket(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("<xml>\n"
                 "  <SuiteId><![CDATA[ww4asffe99e54c0fxxxx]]></SuiteId>\n"
                 "  <InfoType><![CDATA[suite_ticket]]></InfoType>\n"
                 "  <TimeStamp>1403610513</TimeStamp>\n"
                 "  <SuiteTicket><![CDATA[asdfasfdasdfasdf]]></SuiteTicket>\n"
                 "</xml>");
    assert_get(x, "SuiteId", "ww4asffe99e54c0fxxxx");
    assert_get(x, "InfoType", "suite_ticket");
    assert_get(x, "TimeStamp", "1403610513");
    assert_get(x, "SuiteTicket", "asdfasfdasdfasdf");
    wecom_xml_free(x);
}

static void
test_create_auth(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("<xml>\n"
                 "  <SuiteId><![CDATA[ww4asffe9xxx4c0f4c]]></SuiteId>\n"
                 "  <AuthCode><![CDATA[AUTHCODE]]></AuthCode>\n"
                 "  <InfoType><![CDATA[create_auth]]></InfoType>\n"
                 "  <TimeStamp>1403610513</TimeStamp>\n"
                 "  <State><![CDATA[123]]></State>\n"
                 "  <ExtraInfo></ExtraInfo>\n"
                 "</xml>");
    assert_get(x, "SuiteId", "ww4asffe9xxx4c0f4c");
    assert_get(x, "AuthCode", "AUTHCODE");
    assert_get(x, "InfoType", "create_auth");
    assert_get(x, "TimeStamp", "1403610513");
    assert_get(x, "State", "123");
    assert_get(x, "ExtraInfo", "");
    assert_null(wecom_xml_get(x, "AuthCorpId"));
    wecom_xml_free(x);
}

static void
check_auth_change(const char *info_type)
{
    struct wecom_xml *x;
    char doc[512];
    int n;

    n = snprintf(doc, sizeof(doc),
                 "<xml>\n"
                 "  <SuiteId><![CDATA[ww4asffe99exxx0f4c]]></SuiteId>\n"
                 "  <InfoType><![CDATA[%s]]></InfoType>\n"
                 "  <TimeStamp>1403610513</TimeStamp>\n"
                 "  <AuthCorpId><![CDATA[wxf8b4f85f3a794e77]]></AuthCorpId>\n"
                 "</xml>",
                 info_type);
    assert_true(n > 0 && (size_t)n < sizeof(doc));
    x = parse_ok(doc);
    assert_get(x, "SuiteId", "ww4asffe99exxx0f4c");
    assert_get(x, "InfoType", info_type);
    assert_get(x, "TimeStamp", "1403610513");
    assert_get(x, "AuthCorpId", "wxf8b4f85f3a794e77");
    wecom_xml_free(x);
}

static void
test_change_auth(void **state)
{
    (void)state;
    check_auth_change("change_auth");
}

static void
test_cancel_auth(void **state)
{
    (void)state;
    check_auth_change("cancel_auth");
}

static void
test_corp_arch_auth(void **state)
{
    (void)state;
    check_auth_change("corp_arch_auth");
}

static void
test_reset_permanent_code(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("<xml><SuiteId><![CDATA[dk4asffe9xxx4c0f4c]]></SuiteId>"
                 "<AuthCode><![CDATA[AUTHCODE]]></AuthCode>\n"
                 "<InfoType><![CDATA[reset_permanent_code]]></InfoType>"
                 "<TimeStamp>1403610513</TimeStamp></xml>");
    assert_get(x, "SuiteId", "dk4asffe9xxx4c0f4c");
    assert_get(x, "AuthCode", "AUTHCODE");
    assert_get(x, "InfoType", "reset_permanent_code");
    assert_get(x, "TimeStamp", "1403610513");
    wecom_xml_free(x);
}

static const char create_user_doc[] =
    "<xml>\n"
    "  <SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId>\n"
    "  <AuthCorpId><![CDATA[wxf8b4f85f3axxxxxx]]></AuthCorpId>\n"
    "  <InfoType><![CDATA[change_contact]]></InfoType>\n"
    "  <TimeStamp>1403610513</TimeStamp>\n"
    "  <ChangeType><![CDATA[create_user]]></ChangeType>\n"
    "  <UserID><![CDATA[zhangsan]]></UserID>\n"
    "  <OpenUserID><![CDATA[woxxx]]></OpenUserID>\n"
    "  <Name><![CDATA[张三]]></Name>\n"
    "  <Department><![CDATA[1,2,3]]></Department>\n"
    "  <MainDepartment>1</MainDepartment>\n"
    "  <IsLeaderInDept><![CDATA[1,0,0]]></IsLeaderInDept>\n"
    "  <DirectLeader><![CDATA[lisi,wangwu]]></DirectLeader>\n"
    "  <Mobile><![CDATA[11111111111]]></Mobile>\n"
    "  <Position><![CDATA[产品经理]]></Position>\n"
    "  <Gender>1</Gender>\n"
    "  <Email><![CDATA[zhangsan@xxx.com]]></Email>\n"
    "  <BizMail><![CDATA[zhangsan@qyycs2.wecom.work]]></BizMail>\n"
    "  <Avatar><![CDATA[http://wx.qlogo.cn/mmopen/ajNVdqHZLLA3WJ6DSZUfiakY"
    "e37PKnQhBIeOQBO4czqrnZDS79FH5Wm5m4X69TBicnHFlhiafvDwklOpZeXYQQ2icg/0]]>"
    "</Avatar>\n"
    "  <Alias><![CDATA[zhangsan]]></Alias>\n"
    "  <Telephone><![CDATA[020-111111]]></Telephone>\n"
    "  <ExtAttr><Item><Name><![CDATA[爱好]]></Name><Type>0</Type><Text>"
    "<Value><![CDATA[旅游]]></Value></Text></Item></ExtAttr>\n"
    "</xml>\n";

static void
test_change_contact_create_user(void **state)
{
    struct wecom_xml *x;
    const struct wecom_xml_node *ext, *item, *text;

    (void)state;
    x = parse_ok(create_user_doc);
    assert_get(x, "SuiteId", "ww4asffe99e54c0f4c");
    assert_get(x, "AuthCorpId", "wxf8b4f85f3axxxxxx");
    assert_get(x, "InfoType", "change_contact");
    assert_get(x, "TimeStamp", "1403610513");
    assert_get(x, "ChangeType", "create_user");
    assert_get(x, "UserID", "zhangsan");
    assert_get(x, "OpenUserID", "woxxx");
    assert_get(x, "Name", "张三");
    assert_get(x, "Department", "1,2,3");
    assert_get(x, "MainDepartment", "1");
    assert_get(x, "IsLeaderInDept", "1,0,0");
    assert_get(x, "DirectLeader", "lisi,wangwu");
    assert_get(x, "Mobile", "11111111111");
    assert_get(x, "Position", "产品经理");
    assert_get(x, "Gender", "1");
    assert_get(x, "Email", "zhangsan@xxx.com");
    assert_get(x, "BizMail", "zhangsan@qyycs2.wecom.work");
    assert_get(x, "Alias", "zhangsan");
    assert_get(x, "Telephone", "020-111111");
    assert_get(x, "ExtAttr", "");
    assert_int_equal(wecom_xml_root(x)->nchildren, 21);
    ext = wecom_xml_child(wecom_xml_root(x), "ExtAttr");
    assert_non_null(ext);
    assert_int_equal(ext->nchildren, 1);
    item = wecom_xml_child(ext, "Item");
    assert_non_null(item);
    assert_int_equal(item->nchildren, 3);
    assert_string_equal(wecom_xml_child(item, "Name")->text, "爱好");
    assert_string_equal(wecom_xml_child(item, "Type")->text, "0");
    text = wecom_xml_child(item, "Text");
    assert_non_null(text);
    assert_string_equal(text->text, "");
    assert_string_equal(wecom_xml_child(text, "Value")->text, "旅游");
    assert_int_equal(wecom_xml_child(text, "Value")->text_len, strlen("旅游"));
    /* get() only looks at direct children of the root */
    assert_null(wecom_xml_get(x, "Value"));
    assert_null(wecom_xml_get(x, "Item"));
    wecom_xml_free(x);
}

static void
test_change_contact_update_user(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId>"
                 "<AuthCorpId><![CDATA[wxf8b4f85f3axxxxxx]]></AuthCorpId>"
                 "<InfoType><![CDATA[change_contact]]></InfoType>"
                 "<TimeStamp>1403610513</TimeStamp>"
                 "<ChangeType><![CDATA[update_user]]></ChangeType>"
                 "<UserID><![CDATA[zhangsan]]></UserID>"
                 "<OpenUserID><![CDATA[woxxx]]></OpenUserID>"
                 "<NewUserID><![CDATA[zhangsan001]]></NewUserID>"
                 "<Department><![CDATA[1,2]]></Department>"
                 "<MainDepartment>2</MainDepartment>"
                 "<Status>1</Status></xml>");
    assert_get(x, "ChangeType", "update_user");
    assert_get(x, "UserID", "zhangsan");
    assert_get(x, "NewUserID", "zhangsan001");
    assert_get(x, "Department", "1,2");
    assert_get(x, "MainDepartment", "2");
    assert_get(x, "Status", "1");
    wecom_xml_free(x);
}

static void
test_change_contact_party_and_tag(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId>"
                 "<AuthCorpId><![CDATA[wxf8b4f85f3axxxxxx]]></AuthCorpId>"
                 "<InfoType><![CDATA[change_contact]]></InfoType>"
                 "<TimeStamp>1403610513</TimeStamp>"
                 "<ChangeType><![CDATA[create_party]]></ChangeType>"
                 "<Id>2</Id><Name><![CDATA[研发部]]></Name>"
                 "<ParentId><![CDATA[1]]></ParentId><Order>1</Order></xml>");
    assert_get(x, "ChangeType", "create_party");
    assert_get(x, "Id", "2");
    assert_get(x, "Name", "研发部");
    assert_get(x, "ParentId", "1");
    assert_get(x, "Order", "1");
    wecom_xml_free(x);

    x = parse_ok("<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId>"
                 "<AuthCorpId><![CDATA[wxf8b4f85f3axxxxxx]]></AuthCorpId>"
                 "<InfoType><![CDATA[change_contact]]></InfoType>"
                 "<TimeStamp>1403610513</TimeStamp>"
                 "<ChangeType><![CDATA[update_tag]]></ChangeType>"
                 "<TagId>1</TagId>"
                 "<AddUserItems><![CDATA[zhangsan,lisi]]></AddUserItems>"
                 "<DelUserItems><![CDATA[zhangsan1]]></DelUserItems>"
                 "<AddPartyItems><![CDATA[1,2]]></AddPartyItems>"
                 "<DelPartyItems><![CDATA[3]]></DelPartyItems></xml>");
    assert_get(x, "ChangeType", "update_tag");
    assert_get(x, "TagId", "1");
    assert_get(x, "AddUserItems", "zhangsan,lisi");
    assert_get(x, "DelUserItems", "zhangsan1");
    assert_get(x, "AddPartyItems", "1,2");
    assert_get(x, "DelPartyItems", "3");
    wecom_xml_free(x);
}

static void
test_change_external_contact(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId>"
                 "<AuthCorpId><![CDATA[wxf8b4f85f3axxxxxx]]></AuthCorpId>"
                 "<InfoType><![CDATA[change_external_contact]]></InfoType>"
                 "<TimeStamp>1403610513</TimeStamp>"
                 "<ChangeType><![CDATA[add_external_contact]]></ChangeType>"
                 "<UserID><![CDATA[zhangsan]]></UserID>"
                 "<ExternalUserID><![CDATA[woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA]]>"
                 "</ExternalUserID>"
                 "<State><![CDATA[teststate]]></State>"
                 "<WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode></xml>");
    assert_get(x, "InfoType", "change_external_contact");
    assert_get(x, "ChangeType", "add_external_contact");
    assert_get(x, "UserID", "zhangsan");
    assert_get(x, "ExternalUserID", "woAJ2GCAAAXtWyujaWJHDDGi0mACAAAA");
    assert_get(x, "State", "teststate");
    assert_get(x, "WelcomeCode", "WELCOMECODE");
    wecom_xml_free(x);

    x = parse_ok("<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId>"
                 "<AuthCorpId><![CDATA[wxf8b4f85f3axxxxxx]]></AuthCorpId>"
                 "<InfoType><![CDATA[change_external_contact]]></InfoType>"
                 "<TimeStamp>1403610513</TimeStamp>"
                 "<ChangeType><![CDATA[transfer_fail]]></ChangeType>"
                 "<FailReason><![CDATA[customer_refused]]></FailReason>"
                 "<UserID><![CDATA[zhangsan]]></UserID>"
                 "<ExternalUserID><![CDATA[woAJ2GCAAA]]></ExternalUserID>"
                 "</xml>");
    assert_get(x, "ChangeType", "transfer_fail");
    assert_get(x, "FailReason", "customer_refused");
    wecom_xml_free(x);
}

static void
test_change_external_chat_and_tag(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId>"
                 "<AuthCorpId><![CDATA[wxf8b4f85f3axxxxxx]]></AuthCorpId>"
                 "<InfoType><![CDATA[change_external_chat]]></InfoType>"
                 "<TimeStamp>1403610513</TimeStamp>"
                 "<ChatId><![CDATA[wrx7HUARsKxx]]></ChatId>"
                 "<ChangeType><![CDATA[update]]></ChangeType>"
                 "<UpdateDetail><![CDATA[add_member]]></UpdateDetail>"
                 "<JoinScene>1</JoinScene><QuitScene>0</QuitScene>"
                 "<MemChangeCnt>10</MemChangeCnt></xml>");
    assert_get(x, "InfoType", "change_external_chat");
    assert_get(x, "ChatId", "wrx7HUARsKxx");
    assert_get(x, "ChangeType", "update");
    assert_get(x, "UpdateDetail", "add_member");
    assert_get(x, "JoinScene", "1");
    assert_get(x, "QuitScene", "0");
    assert_get(x, "MemChangeCnt", "10");
    wecom_xml_free(x);

    x = parse_ok("<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId>"
                 "<AuthCorpId><![CDATA[wxf8b4f85f3axxxxxx]]></AuthCorpId>"
                 "<InfoType><![CDATA[change_external_tag]]></InfoType>"
                 "<TimeStamp>1403610513</TimeStamp>"
                 "<Id><![CDATA[etm7wjCgAA]]></Id>"
                 "<TagType><![CDATA[tag]]></TagType>"
                 "<ChangeType><![CDATA[create]]></ChangeType></xml>");
    assert_get(x, "InfoType", "change_external_tag");
    assert_get(x, "Id", "etm7wjCgAA");
    assert_get(x, "TagType", "tag");
    assert_get(x, "ChangeType", "create");
    wecom_xml_free(x);
}

static void
test_agree_external_userid_migration(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("<xml><SuiteId><![CDATA[ww4asffe99e54c0f4c]]></SuiteId>"
                 "<InfoType><![CDATA[agree_external_userid_migration]]>"
                 "</InfoType><TimeStamp>1403610513</TimeStamp>"
                 "<ServiceCorpId><![CDATA[wwservice]]></ServiceCorpId>"
                 "<AuthCorpId><![CDATA[wwauth]]></AuthCorpId></xml>");
    assert_get(x, "InfoType", "agree_external_userid_migration");
    assert_get(x, "ServiceCorpId", "wwservice");
    assert_get(x, "AuthCorpId", "wwauth");
    wecom_xml_free(x);
}

/*---- Text handling ----*/

static void
test_cdata_and_plain_mixed(void **state)
{
    struct wecom_xml *x;
    const struct wecom_xml_node *a;

    (void)state;
    x = parse_ok("<xml><A>ab<![CDATA[cd]]>e&amp;f<![CDATA[ g ]]>h</A></xml>");
    assert_get(x, "A", "abcde&f g h");
    a = wecom_xml_child(wecom_xml_root(x), "A");
    assert_int_equal(a->text_len, 11);
    assert_int_equal(a->nchildren, 0);
    assert_null(a->children);
    wecom_xml_free(x);
}

static void
test_cdata_with_markup_and_brackets(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("<xml><A><![CDATA[<xml><B>x</B></xml>]]></A>"
                 "<C><![CDATA[a]]b]]]></C><D><![CDATA[]]]]></D>"
                 "<E><![CDATA[&amp;]]></E></xml>");
    assert_get(x, "A", "<xml><B>x</B></xml>");
    assert_get(x, "C", "a]]b]");
    assert_get(x, "D", "]]");
    assert_get(x, "E", "&amp;");
    assert_null(wecom_xml_get(x, "B"));
    assert_int_equal(wecom_xml_root(x)->nchildren, 4);
    wecom_xml_free(x);
}

static void
test_entities_predefined_and_numeric(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("<xml><A>&lt;&gt;&amp;&apos;&quot;</A>"
                 "<B>&#65;&#x42;&#x5F20;&#128512;</B></xml>");
    assert_get(x, "A", "<>&'\"");
    assert_get(x, "B", "AB张\xf0\x9f\x98\x80");
    wecom_xml_free(x);
}

static void
test_whitespace_leaf_kept_between_children_dropped(void **state)
{
    struct wecom_xml *x;
    const struct wecom_xml_node *r;

    (void)state;
    x = parse_ok("<xml>\n\t <A>  </A>\r\n <B>\n</B> <C> x </C>\n</xml>");
    r = wecom_xml_root(x);
    assert_string_equal(r->text, "");
    assert_int_equal(r->text_len, 0);
    assert_get(x, "A", "  ");
    assert_get(x, "B", "\n");
    assert_get(x, "C", " x ");
    wecom_xml_free(x);
}

static void
test_crlf_normalised(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("<xml><A>a\r\nb\rc</A><B><![CDATA[d\r\ne]]></B></xml>");
    assert_get(x, "A", "a\nb\nc");
    assert_get(x, "B", "d\ne");
    wecom_xml_free(x);
}

static void
test_nested_ext_attr_items(void **state)
{
    struct wecom_xml *x;
    const struct wecom_xml_node *ext, *it;

    (void)state;
    x = parse_ok(
        "<xml><ExtAttr>\n"
        "  <Item><Name><![CDATA[爱好]]></Name><Type>0</Type>"
        "<Text><Value><![CDATA[旅游]]></Value></Text></Item>\n"
        "  <Item><Name><![CDATA[卡号]]></Name><Type>1</Type>"
        "<Web><Title><![CDATA[企业微信]]></Title>"
        "<Url><![CDATA[https://work.weixin.qq.com]]></Url></Web></Item>\n"
        "  <Item><Name>n3</Name><Type>0</Type><Text><Value></Value></Text>"
        "</Item>\n"
        "</ExtAttr></xml>");
    ext = wecom_xml_child(wecom_xml_root(x), "ExtAttr");
    assert_non_null(ext);
    assert_int_equal(ext->nchildren, 3);
    it = &ext->children[0];
    assert_string_equal(it->name, "Item");
    assert_string_equal(wecom_xml_child(it, "Name")->text, "爱好");
    assert_string_equal(
        wecom_xml_child(wecom_xml_child(it, "Text"), "Value")->text, "旅游");
    it = &ext->children[1];
    assert_string_equal(it->name, "Item");
    assert_string_equal(wecom_xml_child(it, "Type")->text, "1");
    assert_null(wecom_xml_child(it, "Text"));
    assert_string_equal(
        wecom_xml_child(wecom_xml_child(it, "Web"), "Title")->text, "企业微信");
    assert_string_equal(
        wecom_xml_child(wecom_xml_child(it, "Web"), "Url")->text,
        "https://work.weixin.qq.com");
    it = &ext->children[2];
    assert_string_equal(wecom_xml_child(it, "Name")->text, "n3");
    assert_string_equal(
        wecom_xml_child(wecom_xml_child(it, "Text"), "Value")->text, "");
    /* the first of repeated children */
    assert_ptr_equal(wecom_xml_child(ext, "Item"), &ext->children[0]);
    assert_null(wecom_xml_child(ext, "Missing"));
    assert_null(wecom_xml_child(NULL, "Item"));
    wecom_xml_free(x);
}

static void
test_duplicate_nested_items_allowed(void **state)
{
    struct wecom_xml *x;
    const struct wecom_xml_node *ext;

    (void)state;
    x = parse_ok("<xml><ExtAttr><Item><Name>a</Name><Name>b</Name></Item>"
                 "<Item><Name>c</Name></Item></ExtAttr></xml>");
    ext = wecom_xml_child(wecom_xml_root(x), "ExtAttr");
    assert_int_equal(ext->nchildren, 2);
    assert_int_equal(ext->children[0].nchildren, 2);
    assert_string_equal(ext->children[0].children[1].text, "b");
    assert_string_equal(ext->children[1].children[0].text, "c");
    wecom_xml_free(x);
}

static void
test_empty_root(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("<xml/>");
    assert_int_equal(wecom_xml_root(x)->nchildren, 0);
    assert_null(wecom_xml_root(x)->children);
    assert_null(wecom_xml_get(x, "A"));
    wecom_xml_free(x);
    x = parse_ok("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
                 "<!-- comment --><xml></xml>\n<!-- after -->\n");
    assert_int_equal(wecom_xml_root(x)->nchildren, 0);
    wecom_xml_free(x);
}

static void
test_utf8_bom_accepted(void **state)
{
    struct wecom_xml *x;

    (void)state;
    x = parse_ok("\xef\xbb\xbf<xml><A>1</A></xml>");
    assert_get(x, "A", "1");
    wecom_xml_free(x);
}

static void
test_free_null(void **state)
{
    (void)state;
    wecom_xml_free(NULL);
    assert_null(wecom_xml_root(NULL));
    assert_null(wecom_xml_get(NULL, "A"));
}

/*---- Hostile and malformed input ----*/

static void
test_duplicate_direct_child_rejected(void **state)
{
    struct brk_errinfo info;
    const char *doc = "<xml>\n<A>1</A>\n<B>2</B>\n<A>3</A>\n<B>4</B></xml>";

    (void)state;
    expect_err_len(doc, strlen(doc), NULL, BRK_ERR_WX_PARSE_XML, "<A> repeated",
                   &info);
    /* the first repeat in document order, at its start tag */
    assert_int_equal(info.line, 4);
    assert_int_equal(info.offset, strstr(doc, "<A>3") - doc);
}

static void
test_duplicate_direct_child_empty_rejected(void **state)
{
    (void)state;
    expect_err("<xml><A/><ExtAttr><A/></ExtAttr><A></A></xml>",
               BRK_ERR_WX_PARSE_XML, "<A> repeated");
}

static void
test_billion_laughs_rejected(void **state)
{
    (void)state;
    expect_err("<?xml version=\"1.0\"?>\n"
               "<!DOCTYPE xml [\n"
               " <!ENTITY a \"aaaaaaaaaa\">\n"
               " <!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">\n"
               " <!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">\n"
               " <!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\">\n"
               " <!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\">\n"
               " <!ENTITY f \"&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;\">\n"
               " <!ENTITY g \"&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;\">\n"
               " <!ENTITY h \"&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;\">\n"
               " <!ENTITY i \"&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;\">\n"
               "]>\n"
               "<xml><A>&i;</A></xml>",
               BRK_ERR_WX_PARSE_XML, "DOCTYPE");
}

static void
test_xxe_system_entity_rejected(void **state)
{
    struct brk_errinfo info;
    const char *doc = "<?xml version=\"1.0\"?>\n"
                      "<!DOCTYPE xml [<!ENTITY x SYSTEM "
                      "\"file:///etc/passwd\">]>\n"
                      "<xml><A>&x;</A></xml>";

    (void)state;
    expect_err_len(doc, strlen(doc), NULL, BRK_ERR_WX_PARSE_XML, "DOCTYPE",
                   &info);
    /* stopped inside the DOCTYPE, before any entity was declared */
    assert_int_equal(info.line, 2);
    assert_in_range(info.offset, strstr(doc, "<!DOCTYPE") - doc,
                    strstr(doc, "<!ENTITY") - doc);
}

static void
test_xxe_parameter_entity_rejected(void **state)
{
    (void)state;
    expect_err("<!DOCTYPE xml [<!ENTITY % p SYSTEM "
               "\"http://127.0.0.1:1/evil.dtd\"> %p;]>\n"
               "<xml><A>&e;</A></xml>",
               BRK_ERR_WX_PARSE_XML, "DOCTYPE");
}

static void
test_external_dtd_rejected(void **state)
{
    (void)state;
    expect_err("<!DOCTYPE xml SYSTEM \"file:///etc/passwd\"><xml/>",
               BRK_ERR_WX_PARSE_XML, "DOCTYPE");
    expect_err("<!DOCTYPE xml><xml/>", BRK_ERR_WX_PARSE_XML, "DOCTYPE");
}

static void
test_undeclared_entity_rejected(void **state)
{
    (void)state;
    expect_err("<xml><A>&nbsp;</A></xml>", BRK_ERR_WX_PARSE_XML,
               "undefined entity");
}

static void
test_processing_instruction_rejected(void **state)
{
    (void)state;
    expect_err("<xml><?php echo 1; ?><A>1</A></xml>", BRK_ERR_WX_PARSE_XML,
               "processing instruction");
    expect_err("<?xml-stylesheet href=\"a.xsl\"?><xml/>", BRK_ERR_WX_PARSE_XML,
               "processing instruction");
}

static void
test_attribute_rejected(void **state)
{
    (void)state;
    expect_err("<xml a=\"1\"><A>1</A></xml>", BRK_ERR_WX_PARSE_XML,
               "attribute a on <xml>");
    expect_err("<xml><A b='2'>1</A></xml>", BRK_ERR_WX_PARSE_XML,
               "attribute b on <A>");
    expect_err("<xml xmlns=\"urn:x\"/>", BRK_ERR_WX_PARSE_XML, "attribute");
}

static void
test_mixed_content_rejected(void **state)
{
    (void)state;
    expect_err("<xml>junk<A>1</A></xml>", BRK_ERR_WX_PARSE_XML,
               "mixed with child elements in <xml>");
    expect_err("<xml><A>1</A>junk</xml>", BRK_ERR_WX_PARSE_XML,
               "mixed with child elements in <xml>");
    expect_err("<xml><E><I>1</I><![CDATA[x]]></E></xml>", BRK_ERR_WX_PARSE_XML,
               "mixed with child elements in <E>");
    expect_err("<xml><E>&#65;<I>1</I></E></xml>", BRK_ERR_WX_PARSE_XML,
               "mixed with child elements in <E>");
}

static void
test_nul_byte_rejected(void **state)
{
    static const char doc[] = "<xml>\n<A>a\0b</A></xml>";
    struct brk_errinfo info;

    (void)state;
    expect_err_len(doc, sizeof(doc) - 1, NULL, BRK_ERR_WX_PARSE_XML, "NUL",
                   &info);
    assert_int_equal(info.offset, 10);
    assert_int_equal(info.line, 2);
}

static void
test_other_encoding_rejected(void **state)
{
    (void)state;
    expect_err("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><xml/>",
               BRK_ERR_WX_PARSE_XML, "encoding ISO-8859-1");
    expect_err("<?xml version=\"1.0\" encoding=\"GBK\"?><xml><A>x</A></xml>",
               BRK_ERR_WX_PARSE_XML, "encoding GBK");
    expect_err("<?xml version=\"1.0\" encoding=\"UTF-16\"?><xml/>",
               BRK_ERR_WX_PARSE_XML, "encoding UTF-16");
}

static void
test_utf16_bom_rejected(void **state)
{
    static const char le[] = "\xff\xfe<\0x\0m\0l\0/\0>\0";
    static const char be[] = "\xfe\xff\0<\0x\0m\0l\0/\0>";

    (void)state;
    expect_err_len(le, sizeof(le) - 1, NULL, BRK_ERR_WX_PARSE_XML, "UTF-16",
                   NULL);
    expect_err_len(be, sizeof(be) - 1, NULL, BRK_ERR_WX_PARSE_XML, "UTF-16",
                   NULL);
}

static void
test_invalid_utf8_rejected(void **state)
{
    (void)state;
    expect_err("<xml><A>\xc0\xaf</A></xml>", BRK_ERR_WX_PARSE_XML, NULL);
    expect_err("<xml><A>\xed\xa0\x80</A></xml>", BRK_ERR_WX_PARSE_XML, NULL);
    expect_err("<xml><A>\xff</A></xml>", BRK_ERR_WX_PARSE_XML, NULL);
    expect_err("<xml><A>\x01</A></xml>", BRK_ERR_WX_PARSE_XML, NULL);
    expect_err("<xml><A>&#0;</A></xml>", BRK_ERR_WX_PARSE_XML,
               "invalid character");
}

static void
test_trailing_garbage_rejected(void **state)
{
    struct brk_errinfo info;
    const char *doc = "<xml><A>1</A></xml>\n<xml><A>2</A></xml>";

    (void)state;
    expect_err_len(doc, strlen(doc), NULL, BRK_ERR_WX_PARSE_XML, "junk", &info);
    assert_int_equal(info.line, 2);
    expect_err("<xml/>garbage", BRK_ERR_WX_PARSE_XML, "junk");
}

static void
test_root_must_be_xml(void **state)
{
    (void)state;
    expect_err("<root><A>1</A></root>", BRK_ERR_WX_PARSE_XML,
               "root element <root>");
    expect_err("<XML/>", BRK_ERR_WX_PARSE_XML, "root element <XML>");
}

static void
test_not_well_formed_rejected(void **state)
{
    struct brk_errinfo info;
    const char *doc = "<xml>\n<A>1</A>\n<B>2</C>\n</xml>";

    (void)state;
    expect_err_len(doc, strlen(doc), NULL, BRK_ERR_WX_PARSE_XML,
                   "mismatched tag", &info);
    assert_int_equal(info.line, 3);
    assert_true(info.offset > 0);
    expect_err("", BRK_ERR_WX_PARSE_XML, "no element found");
    expect_err_len(NULL, 0, NULL, BRK_ERR_WX_PARSE_XML, "no element found",
                   NULL);
    expect_err("<xml><A>1</A>", BRK_ERR_WX_PARSE_XML, "no element found");
    expect_err("<xml><A><![CDATA[x</A></xml>", BRK_ERR_WX_PARSE_XML,
               "unclosed CDATA");
    expect_err("<xml><A>a < b</A></xml>", BRK_ERR_WX_PARSE_XML,
               "not well-formed");
}

static void
test_error_without_info(void **state)
{
    struct wecom_xml *x = NULL;

    (void)state;
    assert_int_equal(wecom_xml_parse("<xml>", 5, NULL, &x, NULL),
                     BRK_ERR_WX_PARSE_XML);
    assert_int_equal(
        wecom_xml_parse("<!DOCTYPE xml><xml/>", 20, NULL, &x, NULL),
        BRK_ERR_WX_PARSE_XML);
    assert_int_equal(wecom_xml_parse("<xml/>", 6,
                                     &(struct wecom_xml_limits){5, 0, 0, 0}, &x,
                                     NULL),
                     BRK_ERR_TOOBIG);
    assert_null(x);
}

/*---- Limits ----*/

static void
test_bytes_limit_exact(void **state)
{
    struct wecom_xml_limits lim = {0, 0, 0, 0};
    struct wecom_xml *x = NULL;
    char *doc;
    size_t len;

    (void)state;
    /* the default: 65536 bytes accepted, one more refused */
    doc = doc_with_text("t", 65536 - strlen("<xml><A>t</A></xml>"));
    len = strlen(doc);
    assert_int_equal(len, 65536);
    assert_int_equal(wecom_xml_parse(doc, len, NULL, &x, NULL), BRK_OK);
    wecom_xml_free(x);
    brk_free(doc);
    doc = doc_with_text("t", 65537 - strlen("<xml><A>t</A></xml>"));
    expect_err_len(doc, strlen(doc), NULL, BRK_ERR_TOOBIG, "65537 bytes", NULL);
    brk_free(doc);

    /* a configured limit */
    lim.max_bytes = 100;
    doc = doc_with_text("t", 100 - strlen("<xml><A>t</A></xml>"));
    x = NULL;
    assert_int_equal(wecom_xml_parse(doc, 100, &lim, &x, NULL), BRK_OK);
    assert_string_equal(wecom_xml_get(x, "A"), "t");
    wecom_xml_free(x);
    expect_err_len(doc, 100, &(struct wecom_xml_limits){99, 0, 0, 0},
                   BRK_ERR_TOOBIG, "over the limit of 99", NULL);
    brk_free(doc);
}

static void
test_elements_limit_exact(void **state)
{
    struct wecom_xml_limits lim = {0, 10, 0, 0};
    struct wecom_xml *x = NULL;
    char *doc;

    (void)state;
    doc = doc_with_elements(512);
    assert_int_equal(wecom_xml_parse(doc, strlen(doc), NULL, &x, NULL), BRK_OK);
    assert_int_equal(wecom_xml_root(x)->nchildren, 511);
    assert_string_equal(wecom_xml_root(x)->children[510].name, "E511");
    wecom_xml_free(x);
    brk_free(doc);
    doc = doc_with_elements(513);
    expect_err(doc, BRK_ERR_TOOBIG, "more than 512 elements");
    brk_free(doc);

    doc = doc_with_elements(10);
    x = NULL;
    assert_int_equal(wecom_xml_parse(doc, strlen(doc), &lim, &x, NULL), BRK_OK);
    wecom_xml_free(x);
    brk_free(doc);
    doc = doc_with_elements(11);
    expect_err_len(doc, strlen(doc), &lim, BRK_ERR_TOOBIG,
                   "more than 10 elements", NULL);
    brk_free(doc);
}

static void
test_depth_limit_exact(void **state)
{
    struct wecom_xml_limits lim = {0, 0, 3, 0};
    struct wecom_xml *x = NULL;
    const struct wecom_xml_node *n;
    size_t i;
    char *doc;

    (void)state;
    doc = doc_with_depth(8);
    assert_int_equal(wecom_xml_parse(doc, strlen(doc), NULL, &x, NULL), BRK_OK);
    n = wecom_xml_root(x);
    for (i = 1; i < 8; i++) {
        assert_int_equal(n->nchildren, 1);
        n = &n->children[0];
    }
    assert_int_equal(n->nchildren, 0);
    assert_string_equal(n->text, "v");
    wecom_xml_free(x);
    brk_free(doc);
    doc = doc_with_depth(9);
    expect_err(doc, BRK_ERR_TOOBIG, "deeper than 8");
    brk_free(doc);

    doc = doc_with_depth(3);
    x = NULL;
    assert_int_equal(wecom_xml_parse(doc, strlen(doc), &lim, &x, NULL), BRK_OK);
    wecom_xml_free(x);
    brk_free(doc);
    doc = doc_with_depth(4);
    expect_err_len(doc, strlen(doc), &lim, BRK_ERR_TOOBIG, "deeper than 3",
                   NULL);
    brk_free(doc);
}

static void
test_text_limit_exact(void **state)
{
    struct wecom_xml_limits lim = {0, 0, 0, 4};
    struct wecom_xml *x = NULL;
    const char *small = "<xml><A>ab<![CDATA[c]]>&amp;</A></xml>";
    char *t, *doc;

    (void)state;
    t = repeat('m', 16384);
    doc = doc_with_text(t, 0);
    assert_int_equal(wecom_xml_parse(doc, strlen(doc), NULL, &x, NULL), BRK_OK);
    assert_int_equal(wecom_xml_child(wecom_xml_root(x), "A")->text_len, 16384);
    wecom_xml_free(x);
    brk_free(doc);
    brk_free(t);
    t = repeat('m', 16385);
    doc = doc_with_text(t, 0);
    expect_err(doc, BRK_ERR_TOOBIG, "longer than 16384");
    brk_free(doc);
    brk_free(t);

    /* counted across CDATA and plain pieces, after entity expansion */
    x = NULL;
    assert_int_equal(wecom_xml_parse(small, strlen(small), &lim, &x, NULL),
                     BRK_OK);
    assert_string_equal(wecom_xml_get(x, "A"), "abc&");
    wecom_xml_free(x);
    expect_err_len("<xml><A>ab<![CDATA[cd]]>e</A></xml>",
                   strlen("<xml><A>ab<![CDATA[cd]]>e</A></xml>"), &lim,
                   BRK_ERR_TOOBIG, "text of <A> longer than 4", NULL);
}

static void
test_text_limit_whitespace(void **state)
{
    struct wecom_xml_limits lim = {0, 0, 0, 4};
    struct wecom_xml *x = NULL;
    const char *layout = "<xml>\n        <A>1</A>\n        <B>\n"
                         "                <C>2</C>      </B>\n</xml>";

    (void)state;
    /* whitespace around children is layout, not text: never counted */
    assert_int_equal(wecom_xml_parse(layout, strlen(layout), &lim, &x, NULL),
                     BRK_OK);
    assert_get(x, "A", "1");
    assert_get(x, "B", "");
    assert_string_equal(
        wecom_xml_child(wecom_xml_child(wecom_xml_root(x), "B"), "C")->text,
        "2");
    wecom_xml_free(x);
    /* but a whitespace-only leaf is text, and bounded */
    x = NULL;
    assert_int_equal(
        wecom_xml_parse("<xml><A>    </A></xml>", 22, &lim, &x, NULL), BRK_OK);
    assert_get(x, "A", "    ");
    wecom_xml_free(x);
    expect_err_len("<xml><A>     </A></xml>", 23, &lim, BRK_ERR_TOOBIG,
                   "text of <A> longer than 4", NULL);
    expect_err_len("<xml><A>     x</A></xml>", 24, &lim, BRK_ERR_TOOBIG,
                   "text of <A> longer than 4", NULL);
    expect_err_len("<xml><A>      <B/>x</A></xml>", 29, &lim,
                   BRK_ERR_WX_PARSE_XML, "mixed", NULL);
}

/*---- Building ----*/

static void
test_build_exact_output(void **state)
{
    const char *keys[] = {"ToUserName", "Encrypt", "AgentID"};
    const char *vals[] = {"ww1", "abc", ""};
    char *out = NULL;
    size_t len = 0;
    const char want[] = "<xml><ToUserName><![CDATA[ww1]]></ToUserName>"
                        "<Encrypt><![CDATA[abc]]></Encrypt>"
                        "<AgentID><![CDATA[]]></AgentID></xml>";

    (void)state;
    assert_int_equal(wecom_xml_build(keys, vals, 3, &out, &len), BRK_OK);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
    brk_free(out);
    out = NULL;
    assert_int_equal(wecom_xml_build(NULL, NULL, 0, &out, NULL), BRK_OK);
    assert_string_equal(out, "<xml></xml>");
    brk_free(out);
}

static void
test_build_round_trip(void **state)
{
    const char *keys[] = {"A", "B", "C", "D", "E", "F", "G", "H", "I_9"};
    const char *vals[] = {
        "plain",
        "a]]>b",
        "]]>]]>",
        "x]]",
        "]",
        "张三 产品经理 \xf0\x9f\x98\x80",
        "line1\r\nline2\rline3\n\ttab",
        "",
        "<xml><A>&amp;</A></xml>",
    };
    const char *want[] = {
        "plain",
        "a]]>b",
        "]]>]]>",
        "x]]",
        "]",
        vals[5],
        "line1\r\nline2\rline3\n\ttab",
        "",
        "<xml><A>&amp;</A></xml>",
    };
    struct wecom_xml *x = NULL;
    char *out = NULL;
    size_t len = 0, i;

    (void)state;
    assert_int_equal(wecom_xml_build(keys, vals, nitems(keys), &out, &len),
                     BRK_OK);
    assert_int_equal(len, strlen(out));
    assert_int_equal(wecom_xml_parse(out, len, NULL, &x, NULL), BRK_OK);
    assert_int_equal(wecom_xml_root(x)->nchildren, nitems(keys));
    for (i = 0; i < nitems(keys); i++) {
        assert_string_equal(wecom_xml_root(x)->children[i].name, keys[i]);
        assert_get(x, keys[i], want[i]);
    }
    wecom_xml_free(x);
    brk_free(out);
}

static void
test_build_rejects_bad_names(void **state)
{
    const char *bad[] = {"", "1A", "a-b", "a b", "<A>", "A>", "x:y", "é"};
    const char *val[] = {"v"};
    char *out = NULL;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(bad); i++) {
        const char *k[] = {bad[i]};

        assert_int_equal(wecom_xml_build(k, val, 1, &out, NULL), BRK_ERR_INVAL);
        assert_null(out);
    }
    {
        const char *k[] = {"_ok9"};

        assert_int_equal(wecom_xml_build(k, val, 1, &out, NULL), BRK_OK);
        brk_free(out);
    }
}

static void
test_build_rejects_bad_values(void **state)
{
    const char *bad[] = {"a\x01",        "\x1f",         "\xc0\xaf",
                         "\xed\xa0\x80", "\xef\xbf\xbe", "\xf4\x90\x80\x80",
                         "\xe5\xbc",     "\xff"};
    const char *key[] = {"A"};
    char *out = NULL;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(bad); i++) {
        const char *v[] = {bad[i]};

        assert_int_equal(wecom_xml_build(key, v, 1, &out, NULL), BRK_ERR_INVAL);
        assert_null(out);
    }
}

/*---- Allocation failure ----*/

static void
test_parse_alloc_failure_loop(void **state)
{
    struct wecom_xml *x = NULL;
    unsigned long n;
    enum brk_err err;

    (void)state;
    for (n = 1; n < 10000; n++) {
        x = NULL;
        brk_alloc_fail_at(n);
        err = wecom_xml_parse(create_user_doc, strlen(create_user_doc), NULL,
                              &x, NULL);
        if (!brk_alloc_failed())
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(x);
    }
    brk_alloc_fail_at(0);
    assert_true(n > 1 && n < 10000);
    assert_int_equal(err, BRK_OK);
    assert_string_equal(wecom_xml_get(x, "Mobile"), "11111111111");
    wecom_xml_free(x);
}

static void
test_build_alloc_failure_loop(void **state)
{
    const char *keys[] = {"SuiteId", "AuthCode", "InfoType"};
    const char *vals[] = {"ww1", "secret]]>code", "create_auth"};
    char *out = NULL;
    unsigned long n;
    enum brk_err err;

    (void)state;
    for (n = 1; n < 1000; n++) {
        out = NULL;
        brk_alloc_fail_at(n);
        err = wecom_xml_build(keys, vals, 3, &out, NULL);
        if (!brk_alloc_failed())
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(out);
    }
    brk_alloc_fail_at(0);
    assert_true(n > 1 && n < 1000);
    assert_int_equal(err, BRK_OK);
    assert_non_null(strstr(out, "secret]]]]><![CDATA[>code"));
    brk_free(out);
}

/*---- Data-driven cases ----*/

struct data_case {
    char *dir;  /* case directory */
    char *name; /* "valid/<case>" or "invalid/<case>" */
    int valid;
};

/* Read a whole file (brk_free); NULL when it does not exist. */
static char *
read_file(const char *dir, const char *file, size_t *len)
{
    char path[4096];
    FILE *f;
    char *buf;
    size_t n;
    int r;

    r = snprintf(path, sizeof(path), "%s/%s", dir, file);
    assert_true(r > 0 && (size_t)r < sizeof(path));
    f = fopen(path, "rb");
    if (f == NULL) {
        assert_int_equal(errno, ENOENT);
        return NULL;
    }
    buf = brk_malloc(FILE_MAX + 1);
    assert_non_null(buf);
    n = fread(buf, 1, FILE_MAX + 1, f);
    assert_false(ferror(f));
    fclose(f);
    assert_true(n <= FILE_MAX);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

/* Optional "limits" file: lines "max_bytes=N" etc. */
static int
read_limits(const char *dir, struct wecom_xml_limits *lim)
{
    char *text = read_file(dir, "limits", NULL);
    char *line, *next, *end;
    unsigned long long v;
    size_t *field;

    memset(lim, 0, sizeof(*lim));
    if (text == NULL)
        return 0;
    for (line = text; line != NULL && *line != '\0'; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        if (*line == '\0')
            continue;
        if (strncmp(line, "max_bytes=", 10) == 0)
            field = &lim->max_bytes;
        else if (strncmp(line, "max_elements=", 13) == 0)
            field = &lim->max_elements;
        else if (strncmp(line, "max_depth=", 10) == 0)
            field = &lim->max_depth;
        else if (strncmp(line, "max_text=", 9) == 0)
            field = &lim->max_text;
        else
            field = NULL;
        if (field == NULL)
            fail_msg("%s/limits: unknown line \"%s\"", dir, line);
        errno = 0;
        v = strtoull(strchr(line, '=') + 1, &end, 10);
        if (errno != 0 || *end != '\0' || end == strchr(line, '=') + 1)
            fail_msg("%s/limits: bad number in \"%s\"", dir, line);
        *field = (size_t)v;
    }
    brk_free(text);
    return 1;
}

/* Show the first line where the dump and expected.txt differ. */
static void
report_first_difference(const char *name, const char *want, const char *got)
{
    size_t i = 0, start = 0;
    int line = 1;

    while (want[i] != '\0' && want[i] == got[i]) {
        if (want[i] == '\n') {
            start = i + 1;
            line++;
        }
        i++;
    }
    print_error("%s: line %d\n  expected: %.*s\n  got:      %.*s\n", name, line,
                (int)strcspn(want + start, "\n"), want + start,
                (int)strcspn(got + start, "\n"), got + start);
}

static void
run_valid_case(const struct data_case *dc)
{
    struct wecom_xml_limits lim;
    struct wecom_xml *x = NULL;
    struct brk_errinfo info = {"", 0, -1};
    char *in, *want, *got;
    size_t len;
    int has_lim;
    enum brk_err err;

    in = read_file(dc->dir, "input.xml", &len);
    want = read_file(dc->dir, "expected.txt", NULL);
    if (in == NULL || want == NULL)
        fail_msg("%s: needs input.xml and expected.txt", dc->name);
    has_lim = read_limits(dc->dir, &lim);
    err = wecom_xml_parse(in, len, has_lim ? &lim : NULL, &x, &info);
    if (err != BRK_OK)
        fail_msg("%s: %s: %s (line %d, offset %ld)", dc->name,
                 brk_strerror(err), info.msg, info.line, info.offset);
    got = dump(x);
    if (strcmp(got, want) != 0) {
        report_first_difference(dc->name, want, got);
        fail_msg("%s: dump differs from expected.txt", dc->name);
    }
    brk_free(got);
    wecom_xml_free(x);
    brk_free(want);
    brk_free(in);
}

/* Nonzero when s names an error (brk_strerror of some code). */
static int
is_error_name(const char *s)
{
    int e;

    for (e = 0; e < BRK_ERR__COUNT; e++)
        if (strcmp(brk_strerror((enum brk_err)e), s) == 0)
            return 1;
    return 0;
}

/*
 * "error" holds one or two lines: an error name (brk_strerror) or a
 * substring of the message; when two, the name then the substring.
 */
static void
run_invalid_case(const struct data_case *dc)
{
    struct wecom_xml_limits lim;
    struct wecom_xml *x = NULL;
    struct brk_errinfo info = {"", 0, -1};
    char *in, *want, *second = NULL;
    size_t len, wl;
    int has_lim;
    enum brk_err err;

    in = read_file(dc->dir, "input.xml", &len);
    want = read_file(dc->dir, "error", NULL);
    if (in == NULL || want == NULL)
        fail_msg("%s: needs input.xml and error", dc->name);
    wl = strlen(want);
    while (wl > 0 && (want[wl - 1] == '\n' || want[wl - 1] == '\r' ||
                      want[wl - 1] == ' '))
        want[--wl] = '\0';
    second = strchr(want, '\n');
    if (second != NULL)
        *second++ = '\0';
    if (want[0] == '\0' || (second != NULL && !is_error_name(want)))
        fail_msg("%s: malformed error file", dc->name);
    has_lim = read_limits(dc->dir, &lim);
    err = wecom_xml_parse(in, len, has_lim ? &lim : NULL, &x, &info);
    if (err == BRK_OK) {
        wecom_xml_free(x);
        fail_msg("%s: accepted, want %s", dc->name, want);
    }
    assert_null(x);
    if (is_error_name(want)) {
        if (strcmp(brk_strerror(err), want) != 0)
            fail_msg("%s: got %s (%s), want %s", dc->name, brk_strerror(err),
                     info.msg, want);
    } else if (strstr(info.msg, want) == NULL) {
        fail_msg("%s: message \"%s\" lacks \"%s\"", dc->name, info.msg, want);
    }
    if (second != NULL && strstr(info.msg, second) == NULL)
        fail_msg("%s: message \"%s\" lacks \"%s\"", dc->name, info.msg, second);
    brk_free(want);
    brk_free(in);
}

static void
test_data_case(void **state)
{
    const struct data_case *dc = *state;

    if (dc->valid)
        run_valid_case(dc);
    else
        run_invalid_case(dc);
}

static struct data_case *cases;
static size_t ncases, nvalid, ninvalid;
static const char *data_dir;

static int
name_cmp(const void *a, const void *b)
{
    const struct data_case *x = a;
    const struct data_case *y = b;

    return strcmp(x->name, y->name);
}

static char *
join(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = brk_malloc(n);

    if (s == NULL)
        abort();
    snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}

/* Collect the case directories of one kind; a missing directory adds none. */
static void
collect(const char *kind, int valid)
{
    char *top = join(data_dir, "/", kind);
    DIR *d = opendir(top);
    struct dirent *de;
    struct data_case *nc;
    char *prefix = join(kind, "/", "");

    while (d != NULL && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        nc = brk_realloc(cases, (ncases + 1) * sizeof(*cases));
        if (nc == NULL)
            abort();
        cases = nc;
        cases[ncases].dir = join(top, "/", de->d_name);
        cases[ncases].name = join(prefix, de->d_name, "");
        cases[ncases].valid = valid;
        ncases++;
        if (valid)
            nvalid++;
        else
            ninvalid++;
    }
    if (d != NULL)
        closedir(d);
    brk_free(prefix);
    brk_free(top);
}

static void
test_data_suite_present(void **state)
{
    (void)state;
    print_message("# wecom_xml data cases in %s: %zu valid, %zu invalid\n",
                  data_dir, nvalid, ninvalid);
    if (nvalid < MIN_VALID_CASES || ninvalid < MIN_INVALID_CASES)
        fail_msg("too few data cases in %s (run from the repository root "
                 "or set WECOM_XML_DATA)",
                 data_dir);
}

#define T(f) cmocka_unit_test(f)

static const struct CMUnitTest api_tests[] = {
    T(test_envelope_command),
    T(test_envelope_data),
    T(test_passive_reply),
    T(test_suite_ticket),
    T(test_create_auth),
    T(test_change_auth),
    T(test_cancel_auth),
    T(test_corp_arch_auth),
    T(test_reset_permanent_code),
    T(test_change_contact_create_user),
    T(test_change_contact_update_user),
    T(test_change_contact_party_and_tag),
    T(test_change_external_contact),
    T(test_change_external_chat_and_tag),
    T(test_agree_external_userid_migration),
    T(test_cdata_and_plain_mixed),
    T(test_cdata_with_markup_and_brackets),
    T(test_entities_predefined_and_numeric),
    T(test_whitespace_leaf_kept_between_children_dropped),
    T(test_crlf_normalised),
    T(test_nested_ext_attr_items),
    T(test_duplicate_nested_items_allowed),
    T(test_empty_root),
    T(test_utf8_bom_accepted),
    T(test_free_null),
    T(test_duplicate_direct_child_rejected),
    T(test_duplicate_direct_child_empty_rejected),
    T(test_billion_laughs_rejected),
    T(test_xxe_system_entity_rejected),
    T(test_xxe_parameter_entity_rejected),
    T(test_external_dtd_rejected),
    T(test_undeclared_entity_rejected),
    T(test_processing_instruction_rejected),
    T(test_attribute_rejected),
    T(test_mixed_content_rejected),
    T(test_nul_byte_rejected),
    T(test_other_encoding_rejected),
    T(test_utf16_bom_rejected),
    T(test_invalid_utf8_rejected),
    T(test_trailing_garbage_rejected),
    T(test_root_must_be_xml),
    T(test_not_well_formed_rejected),
    T(test_error_without_info),
    T(test_bytes_limit_exact),
    T(test_elements_limit_exact),
    T(test_depth_limit_exact),
    T(test_text_limit_exact),
    T(test_text_limit_whitespace),
    T(test_build_exact_output),
    T(test_build_round_trip),
    T(test_build_rejects_bad_names),
    T(test_build_rejects_bad_values),
    T(test_parse_alloc_failure_loop),
    T(test_build_alloc_failure_loop),
    T(test_data_suite_present),
};

int
main(void)
{
    struct CMUnitTest *all;
    size_t i, n;
    int rc;

    data_dir = getenv("WECOM_XML_DATA");
    if (data_dir == NULL || data_dir[0] == '\0')
        data_dir = DATA_DIR_DEFAULT;
    collect("valid", 1);
    collect("invalid", 0);
    if (ncases > 0)
        qsort(cases, ncases, sizeof(*cases), name_cmp);

    /* the fixed tests, then one test per case directory */
    n = nitems(api_tests) + ncases;
    all = brk_calloc(n, sizeof(*all));
    if (all == NULL)
        abort();
    memcpy(all, api_tests, sizeof(api_tests));
    for (i = 0; i < ncases; i++) {
        all[nitems(api_tests) + i].name = cases[i].name;
        all[nitems(api_tests) + i].test_func = test_data_case;
        all[nitems(api_tests) + i].initial_state = &cases[i];
    }
    rc = _cmocka_run_group_tests("wecom_xml", all, n, NULL, NULL);
    for (i = 0; i < ncases; i++) {
        brk_free(cases[i].dir);
        brk_free(cases[i].name);
    }
    brk_free(cases);
    brk_free(all);
    return rc;
}
