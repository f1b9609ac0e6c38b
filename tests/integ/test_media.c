/*
 * media/upload through the broker (SPEC §5b) against the strict simulator:
 * served to a service with any write capability, 48002 without one; an
 * oversize, wrong-type or malformed upload refused before WeCom is called
 * (the simulator's request log shows no call); WeCom gets a body the
 * broker built around the media alone; the reply filtered; the returned
 * media_id accepted by add_msg_template; audited without bytes or name.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

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

#define S1     H_SUITE
#define CORP   "wwmockcorp0001"
#define UPLOAD "/cgi-bin/media/upload"
#define SCOPES                                                                 \
    "contacts.read,external.customers,externalcontact:contact:group_msg"
#define CT "Content-Type: multipart/form-data; boundary=caller-b0undary"

static struct harness H;
static pid_t Mock;
static int MockPort;
static char *Writer, *Messenger, *Welcomer, *Plain;
static char WriterTok[128], MessengerTok[128], WelcomerTok[128], PlainTok[128];
static char Cust[80];
static char WelcomerId[32];
static struct event_base *Base;

static char *
svc_add(const char *name, const char *scopes, const char *caps)
{
    json_t *v;
    char *s;
    int rc;

    v = tc_ctl(&rc, "service", "add", name, "--scopes", scopes,
               caps ? "--capabilities" : NULL, caps, (const char *)NULL);
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

/* A multipart body: one part named name holding n bytes (a pattern), the
 * filename and the content type; *len its length. Owned. */
static char *
body_of(const char *name, const char *filename, const char *ctype, size_t n,
        size_t *len)
{
    char *b = malloc(n + 512), *p;
    size_t i;

    assert_non_null(b);
    p = b + snprintf(b, 400,
                     "--caller-b0undary\r\nContent-Disposition: form-data; "
                     "name=\"%s\"; filename=\"%s\"\r\nContent-Type: %s\r\n\r\n",
                     name, filename, ctype);
    for (i = 0; i < n; i++)
        p[i] = (char)('a' + i % 23);
    p += n;
    p += snprintf(p, 64, "\r\n--caller-b0undary--\r\n");
    *len = (size_t)(p - b);
    return b;
}

/* POST body (len bytes) to media/upload?type=type (NULL: no type) with the
 * header line hdr. */
static void
upload(struct sc_resp *r, const char *tok, const char *type, const char *body,
       size_t len, const char *hdr)
{
    char url[512];
    struct curl_slist *hl = NULL;
    CURL *c;

    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d" UPLOAD "?%s%s%saccess_token=%s", H.int_port,
             type ? "type=" : "", type ? type : "", type ? "&" : "", tok);
    sc_resp_init(r);
    c = sc_easy(r, "POST", url, body, len, NULL);
    hl = curl_slist_append(NULL, hdr);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    sc_perform(c, r);
    curl_slist_free_all(hl);
}

/* Expect a refusal with errcode code and no call to WeCom. */
static void
refused(const char *tok, const char *type, const char *body, size_t len,
        const char *hdr, long code)
{
    struct sc_resp r;
    size_t before = tc_mock_count(UPLOAD, NULL);

    upload(&r, tok, type, body, len, hdr);
    SC_EXPECT(&r, 200, code);
    sc_resp_free(&r);
    assert_int_equal(tc_mock_count(UPLOAD, NULL), before);
}

/* Upload n bytes as type; the reply (owned), after one call to WeCom. */
static json_t *
served(const char *tok, const char *type, const char *filename,
       const char *ctype, size_t n)
{
    struct sc_resp r;
    size_t before = tc_mock_count(UPLOAD, NULL), len;
    char *b = body_of("media", filename, ctype, n, &len);
    json_t *j;

    upload(&r, tok, type, b, len, CT);
    SC_EXPECT(&r, 200, 0);
    j = json_incref(r.json);
    sc_resp_free(&r);
    free(b);
    assert_int_equal(tc_mock_count(UPLOAD, NULL), before + 1);
    return j;
}

static int
setup(void **state)
{
    const char *extra[] = {"--suite", H_SUITE ":" H_SECRET, "--corps",
                           "1",       "--members",          "30",
                           NULL};
    char broker[256], body[512], pq[512];
    struct sc_resp r;
    json_t *list;
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
             "\"externalcontact:base:base\","
             "\"externalcontact:contact:welcome_msg\","
             "\"externalcontact:contact:group_msg\"]}",
             CORP);
    h_sim_ok(MockPort, "POST", "/__mock/permissions", body);
    tc_install(S1, CORP, h_next_ts());
    tc_wait_status(S1, CORP, "active", 30000);
    Writer = svc_add("writer", SCOPES, "external.write");
    Messenger = svc_add("messenger", SCOPES, "external.message");
    Welcomer =
        svc_add("welcomer", SCOPES ",externalcontact:contact:welcome_msg",
                "external.welcome");
    Plain = svc_add("plain", SCOPES, NULL);
    token(Writer, WriterTok);
    token(Messenger, MessengerTok);
    token(Welcomer, WelcomerTok);
    token(Plain, PlainTok);
    list = tc_ctl(&rc, "service", "show", "welcomer", (const char *)NULL);
    assert_int_equal(rc, 0);
    h_copy_str(WelcomerId, sizeof(WelcomerId), h_str(list, "id"));
    json_decref(list);
    /* a customer of u00001, read through the broker (feeds its index) */
    sc_resp_init(&r);
    sc_call(&r, H.int_port, "GET", NULL,
            "/cgi-bin/externalcontact/list?userid=u00001&access_token=%s",
            MessengerTok);
    list = json_object_get(r.json, "external_userid");
    assert_true(json_array_size(list) > 0);
    h_copy_str(Cust, sizeof(Cust), json_string_value(json_array_get(list, 0)));
    sc_resp_free(&r);
    snprintf(pq, sizeof(pq),
             "/cgi-bin/externalcontact/get?external_userid=%s&access_token=%s",
             Cust, MessengerTok);
    sc_resp_init(&r);
    sc_call(&r, H.int_port, "GET", NULL, "%s", pq);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    free(Writer);
    free(Messenger);
    free(Welcomer);
    free(Plain);
    tc_world_stop(&H, Mock);
    return 0;
}

/* The simulator's last media/upload log entry's body (owned). */
static json_t *
last_logged(void)
{
    json_t *v =
        h_sim_json(MockPort, "GET", "/__mock/requests?path=" UPLOAD, NULL);
    json_t *b;

    assert_true(json_array_size(v) > 0);
    b = json_incref(
        json_object_get(json_array_get(v, json_array_size(v) - 1), "body"));
    json_decref(v);
    assert_non_null(b);
    return b;
}

static void
test_served_to_any_writer(void **state)
{
    json_t *j, *logged;
    const char *ct;

    (void)state;
    j = served(WriterTok, "image", "a.png", "image/png", 1000);
    assert_string_equal(h_str(j, "type"), "image");
    assert_true(strlen(h_str(j, "media_id")) > 0);
    assert_non_null(json_object_get(j, "created_at"));
    /* the reply is filtered: the simulator's extra member is gone */
    assert_null(json_object_get(j, "mock_internal_media"));
    json_decref(j);
    /* WeCom got one part of the broker's making around the same bytes */
    logged = last_logged();
    assert_true(json_is_true(json_object_get(logged, "parsed")));
    assert_string_equal(h_str(logged, "filename"), "a.png");
    assert_string_equal(h_str(logged, "media_content_type"), "image/png");
    assert_int_equal(json_integer_value(json_object_get(logged, "size")), 1000);
    ct = h_str(logged, "content_type");
    assert_null(strstr(ct, "caller-b0undary"));
    assert_non_null(strstr(ct, "multipart/form-data; boundary="));
    json_decref(logged);
    /* any one of the write capabilities suffices */
    json_decref(served(MessengerTok, "voice", "v.AMR", "audio/amr", 2 << 20));
    json_decref(served(WelcomerTok, "file", "report.pdf",
                       "application/octet-stream", 6));
}

/* The same upload with the same idempotency key: WeCom called once, the
 * stored reply replayed (the broker's body is the same for the same media) */
static void
test_idempotent_retry(void **state)
{
    struct sc_resp r;
    size_t before = tc_mock_count(UPLOAD, NULL), len;
    char *b = body_of("media", "b.png", "image/png", 3000, &len);
    struct curl_slist *hl;
    char url[512], first[128];
    CURL *c;
    int i;

    (void)state;
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d" UPLOAD "?type=image&access_token=%s",
             H.int_port, WriterTok);
    for (i = 0; i < 2; i++) {
        sc_resp_init(&r);
        c = sc_easy(&r, "POST", url, b, len, NULL);
        hl = curl_slist_append(NULL, CT);
        hl = curl_slist_append(hl, "X-Broker-Idempotency-Key: upload-7");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
        sc_perform(c, &r);
        curl_slist_free_all(hl);
        SC_EXPECT(&r, 200, 0);
        if (i == 0)
            h_copy_str(first, sizeof(first), h_str(r.json, "media_id"));
        else
            assert_string_equal(h_str(r.json, "media_id"), first);
        sc_resp_free(&r);
    }
    free(b);
    assert_int_equal(tc_mock_count(UPLOAD, NULL), before + 1);
}

static void
test_no_capability(void **state)
{
    size_t len;
    char *b = body_of("media", "a.png", "image/png", 1000, &len);

    (void)state;
    refused(PlainTok, "image", b, len, CT, 48002);
    free(b);
}

static void
test_refused_before_wecom(void **state)
{
    static const char two[] =
        "--caller-b0undary\r\nContent-Disposition: form-data; name=\"media\"; "
        "filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nabcdefgh\r\n"
        "--caller-b0undary\r\nContent-Disposition: form-data; name=\"media\"; "
        "filename=\"b.txt\"\r\nContent-Type: text/plain\r\n\r\nabcdefgh\r\n"
        "--caller-b0undary--\r\n";
    static const char open[] =
        "--caller-b0undary\r\nContent-Disposition: form-data; name=\"media\"; "
        "filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nabcdefgh";
    size_t len;
    char *b;

    (void)state;
    /* over WeCom's limit for the type, by one byte */
    b = body_of("media", "a.png", "image/png", (10 << 20) + 1, &len);
    refused(WriterTok, "image", b, len, CT, 40058);
    free(b);
    b = body_of("media", "v.amr", "audio/amr", (2 << 20) + 1, &len);
    refused(WriterTok, "voice", b, len, CT, 40058);
    free(b);
    /* five bytes or fewer */
    b = body_of("media", "a.txt", "text/plain", 5, &len);
    refused(WriterTok, "file", b, len, CT, 40058);
    free(b);
    /* a type WeCom does not know, none, or a file of another type */
    b = body_of("media", "a.png", "image/png", 1000, &len);
    refused(WriterTok, "thumb", b, len, CT, 40058);
    refused(WriterTok, NULL, b, len, CT, 40035);
    refused(WriterTok, "video", b, len, CT, 40058);
    /* not multipart, another boundary */
    refused(WriterTok, "image", b, len, "Content-Type: application/json",
            40058);
    refused(WriterTok, "image", b, len,
            "Content-Type: multipart/form-data; boundary=other", 40058);
    free(b);
    b = body_of("media", "a.gif", "image/gif", 1000, &len);
    refused(WriterTok, "image", b, len, CT, 40058);
    free(b);
    /* malformed: no closing delimiter; another name; two parts */
    refused(WriterTok, "file", open, sizeof(open) - 1, CT, 40058);
    b = body_of("file", "a.txt", "text/plain", 100, &len);
    refused(WriterTok, "file", b, len, CT, 40035);
    free(b);
    refused(WriterTok, "file", two, sizeof(two) - 1, CT, 40035);
    /* a JSON body stays bounded (1 MB) while the listener takes 20 MB */
    b = malloc((2 << 20) + 1);
    assert_non_null(b);
    memset(b, ' ', 2 << 20);
    b[0] = '{';
    b[(2 << 20) - 1] = '}';
    b[2 << 20] = '\0';
    {
        struct sc_resp r;
        size_t before =
            tc_mock_count("/cgi-bin/externalcontact/batch/get_by_user", NULL);

        sc_resp_init(&r);
        sc_call(&r, H.int_port, "POST", b,
                "/cgi-bin/externalcontact/batch/get_by_user?access_token=%s",
                WriterTok);
        SC_EXPECT(&r, 200, 40058);
        sc_resp_free(&r);
        assert_int_equal(
            tc_mock_count("/cgi-bin/externalcontact/batch/get_by_user", NULL),
            before);
    }
    free(b);
}

static void
test_media_id_in_msg_template(void **state)
{
    char body[512];
    struct sc_resp r;
    json_t *j;

    (void)state;
    j = served(MessengerTok, "file", "brochure.pdf", "application/pdf", 4096);
    snprintf(body, sizeof(body),
             "{\"chat_type\":\"single\",\"external_userid\":[\"%s\"],"
             "\"text\":{\"content\":\"hi\"},\"attachments\":[{\"msgtype\":"
             "\"file\",\"file\":{\"media_id\":\"%s\"}}]}",
             Cust, h_str(j, "media_id"));
    json_decref(j);
    sc_resp_init(&r);
    sc_call(&r, H.int_port, "POST", body,
            "/cgi-bin/externalcontact/add_msg_template?access_token=%s",
            MessengerTok);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    /* a media_id WeCom never gave: its own 40007, relayed */
    snprintf(body, sizeof(body),
             "{\"chat_type\":\"single\",\"external_userid\":[\"%s\"],"
             "\"text\":{\"content\":\"hi\"},\"attachments\":[{\"msgtype\":"
             "\"file\",\"file\":{\"media_id\":\"3mnotuploaded\"}}]}",
             Cust);
    sc_resp_init(&r);
    sc_call(&r, H.int_port, "POST", body,
            "/cgi-bin/externalcontact/add_msg_template?access_token=%s",
            MessengerTok);
    assert_int_equal(sc_ecode(&r), 40007);
    sc_resp_free(&r);
}

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

/* A WelcomeCode the simulator minted, recorded as delivered to the
 * welcomer just now (as the event delivery does). */
static void
record_code(char *code, size_t len)
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
    assert_int_equal(welcome_record(st, "wb:", S1, CORP, hash, WelcomerId,
                                    brk_wall_ms(), on_done, &d),
                     BRK_OK);
    assert_true(h_wait(answered, &d, 5000));
    assert_int_equal(d.err, BRK_OK);
    store_free(st);
}

static void
test_media_id_in_welcome(void **state)
{
    char code[80], body[512];
    struct sc_resp r;
    json_t *j;

    (void)state;
    Base = event_base_new();
    assert_non_null(Base);
    j = served(WelcomerTok, "image", "hello.jpg", "image/jpeg", 2048);
    record_code(code, sizeof(code));
    snprintf(body, sizeof(body),
             "{\"welcome_code\":\"%s\",\"attachments\":[{\"msgtype\":"
             "\"image\",\"image\":{\"media_id\":\"%s\"}}]}",
             code, h_str(j, "media_id"));
    json_decref(j);
    sc_resp_init(&r);
    sc_call(&r, H.int_port, "POST", body,
            "/cgi-bin/externalcontact/send_welcome_msg?access_token=%s",
            WelcomerTok);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    event_base_free(Base);
    Base = NULL;
}

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

/* The audit entries of uploads with the media's digest: how many, and
 * their fields checked. */
static int
audited_uploads(const char *sha)
{
    redisContext *rc = h_redis(&H);
    redisReply *r;
    size_t i;
    int n = 0;

    assert_non_null(rc);
    r = redisCommand(rc, "XRANGE wb:audit - +");
    assert_non_null(r);
    for (i = 0; i < r->elements; i++) {
        const redisReply *f = r->element[i]->element[1];
        const char *ep = field(f, "endpoint"), *s = field(f, "media_sha256");

        if (ep == NULL || strcmp(ep, UPLOAD) != 0 || s == NULL ||
            strcmp(s, sha) != 0)
            continue;
        n++;
        assert_string_equal(field(f, "type"), "write");
        assert_string_equal(field(f, "media_type"), "image/jpeg");
        assert_string_equal(field(f, "media_size"), "777");
        assert_string_equal(field(f, "errcode"), "0");
        assert_null(field(f, "body_keys"));
    }
    freeReplyObject(r);
    redisFree(rc);
    return n;
}

static int
upload_audited(void *sha)
{
    return audited_uploads(sha) > 0;
}

static void
test_audit(void **state)
{
    char sha[65], *b, *all;
    size_t len;
    json_t *j;

    (void)state;
    j = served(WriterTok, "image", "secret-name.jpg", "image/jpeg", 777);
    json_decref(j);
    b = body_of("media", "secret-name.jpg", "image/jpeg", 777, &len);
    /* the media's bytes: after the part's headers, before the delimiter */
    assert_int_equal(write_store_sha256(strstr(b, "\r\n\r\n") + 4, 777, sha),
                     0);
    free(b);
    /* the entry may wait for its batch (a few ms under load) */
    assert_true(h_wait(upload_audited, sha, 5000));
    assert_int_equal(audited_uploads(sha), 1);
    /* neither the name nor the bytes anywhere in Redis */
    all = tc_redis_text();
    assert_null(strstr(all, "secret-name"));
    assert_null(strstr(all, "abcdefghijklmnopqrstuvw"));
    free(all);
}

static void
test_scopes_list(void **state)
{
    json_t *a, *e;
    size_t i;
    int rc, seen = 0;

    (void)state;
    a = tc_ctl(&rc, "scopes", "list", (const char *)NULL);
    assert_int_equal(rc, 0);
    json_array_foreach(a, i, e)
    {
        if (strcmp(h_str(e, "path"), UPLOAD) != 0)
            continue;
        seen = 1;
        assert_true(json_is_true(json_object_get(e, "write")));
        assert_true(json_is_true(json_object_get(e, "multipart")));
        assert_non_null(strstr(h_str(e, "capability"), "external.write"));
        assert_non_null(strstr(h_str(e, "capability"), "external.message"));
        assert_non_null(strstr(h_str(e, "capability"), "external.welcome"));
    }
    json_decref(a);
    assert_true(seen);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_served_to_any_writer),
        cmocka_unit_test(test_idempotent_retry),
        cmocka_unit_test(test_no_capability),
        cmocka_unit_test(test_refused_before_wecom),
        cmocka_unit_test(test_media_id_in_msg_template),
        cmocka_unit_test(test_media_id_in_welcome),
        cmocka_unit_test(test_audit),
        cmocka_unit_test(test_scopes_list),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
