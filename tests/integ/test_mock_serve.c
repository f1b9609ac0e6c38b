/*
 * mock-wecom serve over HTTP: the WeCom service and data APIs it
 * simulates, its token rules, fault injection and control endpoints, and
 * the grant it enforces: what WeCom refuses a third-party app, the
 * third-party shapes, leaky mode and latency.
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
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"
#include "simclient.h"
#include "wecom_crypto.h"

#define SUITE_A  "wwsuiteA"
#define SECRET_A "secretA"
#define SUITE_B  "wwsuiteB"
#define SECRET_B "secretB"
#define CORP1    "wwmockcorp0001"
#define CORP2    "wwmockcorp0002"

static char Dir[256];
static pid_t Pid;
static int Port;

/*---- helpers ----*/

static void
ticket(int port, const char *suite, char *out, size_t cap)
{
    long st;
    json_t *j = h_jcall(port, "GET", NULL, &st,
                        "/__mock/suite_ticket?suite_id=%s", suite);

    assert_int_equal(st, 200);
    assert_true(json_integer_value(json_object_get(j, "timestamp")) >
                1600000000);
    h_copy_str(out, cap, h_need_str(j, "suite_ticket"));
    json_decref(j);
}

static json_t *
suite_token_call(int port, const char *suite, const char *secret,
                 const char *tk)
{
    json_t *b = json_pack("{s:s,s:s,s:s}", "suite_id", suite, "suite_secret",
                          secret, "suite_ticket", tk);
    char *body = json_dumps(b, JSON_COMPACT);
    json_t *j =
        h_jcall(port, "POST", body, NULL, "/cgi-bin/service/get_suite_token");

    free(body);
    json_decref(b);
    return j;
}

static void
suite_token(int port, const char *suite, const char *secret, char *out,
            size_t cap)
{
    char tk[128];
    json_t *j;

    ticket(port, suite, tk, sizeof(tk));
    j = suite_token_call(port, suite, secret, tk);
    h_copy_str(out, cap, h_need_str(j, "suite_access_token"));
    json_decref(j);
}

static void
install(int port, const char *suite, const char *corpid, char *out, size_t cap)
{
    char body[256];
    long st;
    json_t *j;

    snprintf(body, sizeof(body),
             "{\"suite_id\":\"%s\",\"corpid\":\"%s\",\"state\":\"st-%s\"}",
             suite, corpid, corpid);
    j = h_jcall(port, "POST", body, &st, "/__mock/install");
    assert_int_equal(st, 200);
    h_copy_str(out, cap, h_need_str(j, "auth_code"));
    assert_true(strlen(out) >= 64);
    json_decref(j);
}

static json_t *
exchange(int port, const char *sat, const char *code, int v2)
{
    char body[512];

    snprintf(body, sizeof(body), "{\"auth_code\":\"%s\"}", code);
    return h_jcall(
        port, "POST", body, NULL,
        "/cgi-bin/service/%sget_permanent_code?suite_access_token=%s",
        v2 ? "v2/" : "", sat);
}

static json_t *
with_permanent(int port, const char *api, const char *sat, const char *corpid,
               const char *pc)
{
    char body[512];

    snprintf(body, sizeof(body),
             "{\"auth_corpid\":\"%s\",\"permanent_code\":\"%s\"}", corpid, pc);
    return h_jcall(port, "POST", body, NULL,
                   "/cgi-bin/service/%s?suite_access_token=%s", api, sat);
}

struct sess {
    char sat[128];
    char pc[128];
    char ct[128];
};

/* Ticket, suite token, install, v1 exchange: a ready tenant. */
static void
sess_open(int port, const char *suite, const char *secret, const char *corpid,
          struct sess *s)
{
    char code[256];
    json_t *j;

    suite_token(port, suite, secret, s->sat, sizeof(s->sat));
    install(port, suite, corpid, code, sizeof(code));
    j = exchange(port, s->sat, code, 0);
    assert_int_equal(h_errcode(j), 0);
    h_copy_str(s->pc, sizeof(s->pc), h_need_str(j, "permanent_code"));
    h_copy_str(s->ct, sizeof(s->ct), h_need_str(j, "access_token"));
    json_decref(j);
}

/* A data call with the corp token; asserts HTTP 200. */
static json_t *__attribute__((format(printf, 4, 5)))
data(const struct sess *s, const char *method, const char *body,
     const char *fmt, ...)
{
    char pq[1024], path[1200];
    va_list ap;
    long st;
    json_t *j;

    va_start(ap, fmt);
    vsnprintf(pq, sizeof(pq), fmt, ap);
    va_end(ap);
    snprintf(path, sizeof(path), "%s%caccess_token=%s", pq,
             strchr(pq, '?') ? '&' : '?', s->ct);
    j = h_jcall(Port, method, body, &st, "%s", path);
    assert_int_equal(st, 200);
    return j;
}

static void
post_ok(const char *path, const char *body)
{
    long st;
    json_t *j = h_jcall(Port, "POST", body, &st, "%s", path);

    if (st != 200)
        fail_msg("%s %s: HTTP %ld", path, body, st);
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
}

static void
clear_faults(void)
{
    json_t *j = h_jcall(Port, "DELETE", NULL, NULL, "/__mock/faults");

    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
}

static void __attribute__((format(printf, 2, 3)))
postf(const char *path, const char *fmt, ...)
{
    char body[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    post_ok(path, body);
}

/* Both corps back to the default grant, strict, no latency or faults. */
static int
reset(void **state)
{
    static const char *const corps[] = {CORP1, CORP2};
    size_t i;

    (void)state;
    clear_faults();
    post_ok("/__mock/leaky", "{\"leaky\":false}");
    post_ok("/__mock/latency", "{\"ms\":0}");
    post_ok("/__mock/member_auth_shape", "{\"shape\":\"open_userid\"}");
    for (i = 0; i < 2; i++) {
        postf("/__mock/privilege",
              "{\"corpid\":\"%s\",\"level\":1,\"allow_party\":[2],"
              "\"allow_user\":[\"u00003\"],\"allow_tag\":[1]}",
              corps[i]);
        postf("/__mock/permissions",
              "{\"corpid\":\"%s\",\"app_permissions\":"
              "[\"contact:base:base\",\"externalcontact:base:base\"]}",
              corps[i]);
        postf("/__mock/auth_mode", "{\"corpid\":\"%s\",\"auth_mode\":0}",
              corps[i]);
        postf("/__mock/app_tags", "{\"corpid\":\"%s\",\"tagids\":[]}",
              corps[i]);
        postf("/__mock/admins",
              "{\"corpid\":\"%s\",\"admins\":[{\"userid\":\"u00001\","
              "\"auth_type\":1}]}",
              corps[i]);
    }
    return 0;
}

/* The default grant, every corp leaky: every record, every field. */
static int
leaky(void **state)
{
    reset(state);
    post_ok("/__mock/leaky", "{\"leaky\":true}");
    return 0;
}

/* The default grant with contacts edit (level 3). */
static int
edit(void **state)
{
    reset(state);
    post_ok("/__mock/privilege",
            "{\"corpid\":\"" CORP1 "\",\"level\":3,\"allow_party\":[2],"
            "\"allow_user\":[\"u00003\"],\"allow_tag\":[1]}");
    return 0;
}

/* Everything granted: the whole corp, edit, corp_arch, customers. */
static int
everything(void **state)
{
    reset(state);
    post_ok("/__mock/permissions",
            "{\"corpid\":\"" CORP1 "\",\"app_permissions\":"
            "[\"contact:edit:all\",\"corp_arch:base:base\","
            "\"externalcontact:base:base\"]}");
    post_ok("/__mock/privilege",
            "{\"corpid\":\"" CORP1 "\",\"allow_party\":[1],"
            "\"allow_tag\":[1,2,3,4]}");
    post_ok("/__mock/app_tags", "{\"corpid\":\"" CORP1 "\",\"tagids\":[1,2]}");
    return 0;
}

/*---- setup ----*/

static int
setup(void **state)
{
    static const char *const extra[] = {"--suite", SUITE_A ":" SECRET_A,
                                        "--suite", SUITE_B ":" SECRET_B,
                                        "--corps", "2",
                                        NULL};

    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(Dir, sizeof(Dir), "/tmp/wbmock.XXXXXX");
    if (mkdtemp(Dir) == NULL)
        return -1;
    Pid = h_mock_start(Dir, extra, &Port);
    return Pid > 0 ? 0 : -1;
}

static int
teardown(void **state)
{
    char f[400];
    int i;

    int rc = 0;

    (void)state;
    /* a clean stop: under the sanitizers, leaks fail the exit status */
    if (Pid > 0 && h_stop(Pid, SIGTERM) != 0)
        rc = -1;
    if (getenv("KEEP_TEST_DIR") == NULL) {
        /* only our own files: port files and logs */
        for (i = 1; i < 32; i++) {
            snprintf(f, sizeof(f), "%s/mock-%d.port", Dir, i);
            unlink(f);
            snprintf(f, sizeof(f), "%s/mock-%d.log", Dir, i);
            unlink(f);
        }
        rmdir(Dir);
    }
    curl_global_cleanup();
    return rc;
}

/*---- suite token ----*/

static void
test_ticket_to_suite_token_without_errcode(void **state)
{
    char tk[128];
    json_t *j;

    (void)state;
    ticket(Port, SUITE_A, tk, sizeof(tk));
    j = suite_token_call(Port, SUITE_A, SECRET_A, tk);
    assert_null(json_object_get(j, "errcode"));
    assert_null(json_object_get(j, "errmsg"));
    assert_true(strlen(h_need_str(j, "suite_access_token")) >= 40);
    assert_int_equal(json_integer_value(json_object_get(j, "expires_in")),
                     7200);
    json_decref(j);
}

static void
test_suite_token_wrong_secret(void **state)
{
    char tk[128];
    json_t *j;

    (void)state;
    ticket(Port, SUITE_A, tk, sizeof(tk));
    j = suite_token_call(Port, SUITE_A, "secretX", tk);
    assert_int_equal(h_errcode(j), 40080);
    assert_null(json_object_get(j, "suite_access_token"));
    json_decref(j);
    /* another suite's secret is wrong too */
    j = suite_token_call(Port, SUITE_A, SECRET_B, tk);
    assert_int_equal(h_errcode(j), 40080);
    json_decref(j);
}

static void
test_suite_token_unknown_suite(void **state)
{
    char tk[128];
    json_t *j;

    (void)state;
    ticket(Port, SUITE_A, tk, sizeof(tk));
    j = suite_token_call(Port, "wwnosuchsuite", SECRET_A, tk);
    assert_int_equal(h_errcode(j), 40083);
    json_decref(j);
}

static void
test_suite_token_old_ticket(void **state)
{
    char first[128], second[128], tk[128];
    json_t *j;
    int i;

    (void)state;
    ticket(Port, SUITE_A, first, sizeof(first));
    ticket(Port, SUITE_A, second, sizeof(second));
    for (i = 0; i < 4; i++)
        ticket(Port, SUITE_A, tk, sizeof(tk));
    /* six minted: the first fell out of the last five */
    j = suite_token_call(Port, SUITE_A, SECRET_A, first);
    assert_int_equal(h_errcode(j), 40085);
    json_decref(j);
    j = suite_token_call(Port, SUITE_A, SECRET_A, second);
    assert_null(json_object_get(j, "errcode"));
    json_decref(j);
    j = suite_token_call(Port, SUITE_A, SECRET_A, "never-minted");
    assert_int_equal(h_errcode(j), 40085);
    json_decref(j);
    /* a ticket of suite B is no ticket of suite A */
    ticket(Port, SUITE_B, tk, sizeof(tk));
    j = suite_token_call(Port, SUITE_A, SECRET_A, tk);
    assert_int_equal(h_errcode(j), 40085);
    json_decref(j);
}

/*---- install ----*/

static void
test_permanent_code_v1_shape(void **state)
{
    char sat[128], code[256];
    const json_t *corp, *agent, *priv, *ed;
    json_t *j;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    install(Port, SUITE_A, CORP1, code, sizeof(code));
    j = exchange(Port, sat, code, 0);
    assert_int_equal(h_errcode(j), 0);
    assert_string_equal(h_need_str(j, "errmsg"), "ok");
    assert_true(strlen(h_need_str(j, "access_token")) >= 40);
    assert_int_equal(json_integer_value(json_object_get(j, "expires_in")),
                     7200);
    assert_true(strlen(h_need_str(j, "permanent_code")) >= 40);
    assert_string_equal(h_need_str(j, "state"), "st-" CORP1);
    corp = json_object_get(j, "auth_corp_info");
    assert_string_equal(h_need_str(corp, "corpid"), CORP1);
    assert_non_null(strstr(h_need_str(corp, "corp_name"), "模拟企业1"));
    assert_string_equal(h_need_str(corp, "corp_type"), "verified");
    assert_non_null(strstr(h_need_str(corp, "corp_full_name"), "有限公司"));
    assert_true(json_is_integer(json_object_get(corp, "subject_type")));
    assert_true(json_is_integer(json_object_get(corp, "verified_end_time")));
    assert_true(json_is_integer(json_object_get(corp, "corp_user_max")));
    assert_non_null(json_object_get(corp, "corp_square_logo_url"));
    assert_non_null(json_object_get(corp, "corp_wxqrcode"));
    assert_non_null(json_object_get(corp, "location"));
    agent = json_array_get(
        json_object_get(json_object_get(j, "auth_info"), "agent"), 0);
    assert_true(json_is_integer(json_object_get(agent, "agentid")));
    assert_true(json_is_boolean(json_object_get(agent, "is_customized_app")));
    priv = json_object_get(agent, "privilege");
    assert_int_equal(json_integer_value(json_object_get(priv, "level")), 1);
    assert_int_equal(json_integer_value(json_array_get(
                         json_object_get(priv, "allow_party"), 0)),
                     2);
    assert_true(json_is_array(json_object_get(priv, "extra_user")));
    assert_string_equal(
        h_need_str(json_object_get(j, "auth_user_info"), "userid"), "u00001");
    ed = json_array_get(
        json_object_get(json_object_get(j, "edition_info"), "agent"), 0);
    assert_int_equal(json_integer_value(json_object_get(ed, "app_status")), 3);
    assert_non_null(json_object_get(j, "mock_internal_note"));
    json_decref(j);
}

static void
test_permanent_code_second_exchange(void **state)
{
    char sat[128], code[256], pc[128];
    json_t *j;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    install(Port, SUITE_A, CORP1, code, sizeof(code));
    j = exchange(Port, sat, code, 0);
    assert_int_equal(h_errcode(j), 0);
    h_copy_str(pc, sizeof(pc), h_need_str(j, "permanent_code"));
    json_decref(j);
    j = exchange(Port, sat, code, 0);
    assert_int_equal(h_errcode(j), 40078);
    assert_null(json_object_get(j, "permanent_code"));
    json_decref(j);
    j = exchange(Port, sat, code, 1);
    assert_int_equal(h_errcode(j), 40078);
    json_decref(j);
    /* a new install of the same pair gets the same permanent code */
    install(Port, SUITE_A, CORP1, code, sizeof(code));
    j = exchange(Port, sat, code, 0);
    assert_string_equal(h_need_str(j, "permanent_code"), pc);
    json_decref(j);
    /* never minted */
    j = exchange(Port, sat, "x", 0);
    assert_int_equal(h_errcode(j), 40078);
    json_decref(j);
}

static void
test_auth_code_of_other_suite(void **state)
{
    char satA[128], satB[128], code[256];
    json_t *j;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, satA, sizeof(satA));
    suite_token(Port, SUITE_B, SECRET_B, satB, sizeof(satB));
    install(Port, SUITE_A, CORP1, code, sizeof(code));
    j = exchange(Port, satB, code, 0);
    assert_int_equal(h_errcode(j), 40078);
    json_decref(j);
    /* the refused attempt did not consume it */
    j = exchange(Port, satA, code, 0);
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
}

static void
test_permanent_code_v2_shape(void **state)
{
    char sat[128], code[256];
    const char *key;
    json_t *j, *v;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    install(Port, SUITE_A, CORP2, code, sizeof(code));
    j = exchange(Port, sat, code, 1);
    assert_int_equal(h_errcode(j), 0);
    json_object_foreach(j, key, v)
    {
        if (strcmp(key, "errcode") && strcmp(key, "errmsg") &&
            strcmp(key, "permanent_code") && strcmp(key, "auth_corp_info") &&
            strcmp(key, "auth_user_info") && strcmp(key, "state") &&
            strcmp(key, "mock_internal_note"))
            fail_msg("unexpected v2 member %s", key);
    }
    assert_true(strlen(h_need_str(j, "permanent_code")) >= 40);
    v = json_object_get(j, "auth_corp_info");
    assert_int_equal(json_object_size(v), 2);
    assert_string_equal(h_need_str(v, "corpid"), CORP2);
    assert_non_null(json_object_get(v, "corp_name"));
    assert_string_equal(
        h_need_str(json_object_get(j, "auth_user_info"), "userid"), "u00001");
    assert_string_equal(h_need_str(j, "state"), "st-" CORP2);
    json_decref(j);
}

static void
test_get_auth_info_privilege(void **state)
{
    struct sess s;
    const json_t *priv;
    json_t *j;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    j = with_permanent(Port, "get_auth_info", s.sat, CORP1, s.pc);
    assert_int_equal(h_errcode(j), 0);
    assert_string_equal(
        h_need_str(json_object_get(j, "auth_corp_info"), "corpid"), CORP1);
    priv = json_object_get(
        json_array_get(
            json_object_get(json_object_get(j, "auth_info"), "agent"), 0),
        "privilege");
    assert_int_equal(json_array_size(json_object_get(priv, "allow_party")), 1);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(priv, "allow_user"), 0)),
                        "u00003");
    assert_int_equal(json_integer_value(
                         json_array_get(json_object_get(priv, "allow_tag"), 0)),
                     1);
    assert_non_null(json_object_get(j, "edition_info"));
    json_decref(j);
}

static void
test_get_auth_info_foreign_code(void **state)
{
    struct sess a;
    char satB[128];
    json_t *j;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &a);
    suite_token(Port, SUITE_B, SECRET_B, satB, sizeof(satB));
    /* suite A's code with suite B's token */
    j = with_permanent(Port, "get_auth_info", satB, CORP1, a.pc);
    assert_int_equal(h_errcode(j), 40084);
    json_decref(j);
    /* the right code for another corp */
    j = with_permanent(Port, "get_auth_info", a.sat, CORP2, a.pc);
    assert_int_equal(h_errcode(j), 40084);
    json_decref(j);
    j = with_permanent(Port, "get_corp_token", a.sat, CORP1, "wrong");
    assert_int_equal(h_errcode(j), 40084);
    json_decref(j);
}

static void
test_corp_token_without_errcode(void **state)
{
    struct sess s;
    json_t *j, *d;
    char ct[128];

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    j = with_permanent(Port, "get_corp_token", s.sat, CORP1, s.pc);
    assert_null(json_object_get(j, "errcode"));
    assert_null(json_object_get(j, "errmsg"));
    assert_true(strlen(h_need_str(j, "access_token")) >= 40);
    assert_int_equal(json_integer_value(json_object_get(j, "expires_in")),
                     7200);
    h_copy_str(ct, sizeof(ct), h_need_str(j, "access_token"));
    json_decref(j);
    h_copy_str(s.ct, sizeof(s.ct), ct);
    d = data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00001");
    assert_int_equal(h_errcode(d), 0);
    json_decref(d);
}

static void
test_pre_auth_and_session_info(void **state)
{
    char sat[128], body[256];
    json_t *j;
    long st;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    j = h_jcall(Port, "GET", NULL, &st,
                "/cgi-bin/service/get_pre_auth_code?suite_access_token=%s",
                sat);
    assert_int_equal(h_errcode(j), 0);
    snprintf(body, sizeof(body),
             "{\"pre_auth_code\":\"%s\",\"session_info\":{\"auth_type\":1}}",
             h_need_str(j, "pre_auth_code"));
    json_decref(j);
    j = h_jcall(Port, "POST", body, &st,
                "/cgi-bin/service/set_session_info?suite_access_token=%s", sat);
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
    j = h_jcall(Port, "POST", "{\"pre_auth_code\":\"nope\"}", &st,
                "/cgi-bin/service/set_session_info?suite_access_token=%s", sat);
    assert_int_equal(h_errcode(j), 40077);
    json_decref(j);
}

/*---- token checks ----*/

static void
test_token_missing(void **state)
{
    json_t *j;

    (void)state;
    j = h_jcall(Port, "GET", NULL, NULL, "/cgi-bin/user/get?userid=u00001");
    assert_int_equal(h_errcode(j), 41001);
    json_decref(j);
    j = h_jcall(Port, "GET", NULL, NULL,
                "/cgi-bin/user/get?access_token=&userid=u00001");
    assert_int_equal(h_errcode(j), 41001);
    json_decref(j);
    j = h_jcall(Port, "POST", "{}", NULL, "/cgi-bin/service/get_corp_token");
    assert_int_equal(h_errcode(j), 41001);
    json_decref(j);
}

static void
test_token_unknown(void **state)
{
    struct sess s;
    json_t *j;

    (void)state;
    j = h_jcall(Port, "GET", NULL, NULL,
                "/cgi-bin/user/get?access_token=bogus&userid=u00001");
    assert_int_equal(h_errcode(j), 40014);
    json_decref(j);
    j = h_jcall(Port, "POST", "{}", NULL,
                "/cgi-bin/service/get_corp_token?suite_access_token=bogus");
    assert_int_equal(h_errcode(j), 40082);
    json_decref(j);
    /* a suite token is no corp token, nor the reverse */
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    j = h_jcall(Port, "GET", NULL, NULL,
                "/cgi-bin/user/get?access_token=%s&userid=u00001", s.sat);
    assert_int_equal(h_errcode(j), 40014);
    json_decref(j);
    j = with_permanent(Port, "get_corp_token", s.ct, CORP1, s.pc);
    assert_int_equal(h_errcode(j), 40082);
    json_decref(j);
}

static void
test_token_expired(void **state)
{
    static const char *const extra[] = {"--suite", SUITE_A ":" SECRET_A,
                                        "--token-lifetime", "1", NULL};
    struct sess s;
    json_t *j;
    pid_t pid;
    int port = 0;

    (void)state;
    pid = h_mock_start(Dir, extra, &port);
    assert_true(pid > 0);
    sess_open(port, SUITE_A, SECRET_A, CORP1, &s);
    j = h_jcall(port, "GET", NULL, NULL,
                "/cgi-bin/user/get?access_token=%s&userid=u00001", s.ct);
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
    /* pacing: the point is the token's 1 s lifetime passing */
    usleep(1100 * 1000);
    j = h_jcall(port, "GET", NULL, NULL,
                "/cgi-bin/user/get?access_token=%s&userid=u00001", s.ct);
    assert_int_equal(h_errcode(j), 42001);
    json_decref(j);
    j = with_permanent(port, "get_corp_token", s.sat, CORP1, s.pc);
    assert_int_equal(h_errcode(j), 42009);
    json_decref(j);
    assert_int_equal(h_stop(pid, SIGTERM), 0);
}

/*---- data API ----*/

struct data_case {
    const char *method;
    const char *path; /* printf with one %s: an id found at run time */
    const char *body;
    const char *nested; /* a member holding records with their own note */
};

static void
check_nested_note(const json_t *j, const char *member)
{
    const json_t *v = json_object_get(j, member);

    if (json_is_array(v))
        v = json_array_get(v, 0);
    if (!json_is_object(v) || json_object_get(v, "mock_internal_note") == NULL)
        fail_msg("no mock_internal_note inside %s", member);
}

/* tmpl with each "%s" replaced by arg. */
static void
subst(char *dst, size_t cap, const char *tmpl, const char *arg)
{
    size_t o = 0;

    for (; *tmpl != '\0' && o + 1 < cap; tmpl++) {
        if (tmpl[0] == '%' && tmpl[1] == 's') {
            o += (size_t)snprintf(dst + o, cap - o, "%s", arg);
            tmpl++;
        } else {
            dst[o++] = *tmpl;
        }
    }
    assert_true(o < cap);
    dst[o] = '\0';
}

static void
test_data_paths_answer_with_note(void **state)
{
    char ext[64], chat[64], path[512];
    const struct data_case cases[] = {
        {"GET", "/cgi-bin/user/get?userid=u00002", NULL, NULL},
        {"GET", "/cgi-bin/user/simplelist?department_id=1&fetch_child=1", NULL,
         "userlist"},
        {"GET", "/cgi-bin/user/list?department_id=1&fetch_child=1", NULL,
         "userlist"},
        {"POST", "/cgi-bin/user/list_id", "{\"limit\":5}", "dept_user"},
        {"GET", "/cgi-bin/department/list", NULL, "department"},
        {"GET", "/cgi-bin/department/list?id=2", NULL, "department"},
        {"GET", "/cgi-bin/department/simplelist", NULL, "department_id"},
        {"GET", "/cgi-bin/department/get?id=3", NULL, "department"},
        {"GET", "/cgi-bin/tag/list", NULL, "taglist"},
        {"GET", "/cgi-bin/tag/get?tagid=2", NULL, NULL},
        {"GET", "/cgi-bin/externalcontact/get_follow_user_list", NULL, NULL},
        {"GET", "/cgi-bin/externalcontact/list?userid=u00001", NULL, NULL},
        {"GET", "/cgi-bin/externalcontact/get?external_userid=%s", NULL,
         "external_contact"},
        {"POST", "/cgi-bin/externalcontact/batch/get_by_user",
         "{\"userid_list\":[\"u00001\",\"u00002\"],\"limit\":10}",
         "external_contact_list"},
        {"POST", "/cgi-bin/externalcontact/groupchat/list",
         "{\"status_filter\":0,\"limit\":10}", "group_chat_list"},
        {"POST", "/cgi-bin/externalcontact/groupchat/get",
         "{\"chat_id\":\"%s\",\"need_name\":1}", "group_chat"},
        {"GET", "/cgi-bin/agent/get?agentid=1000002", NULL, NULL},
        {"POST", "/cgi-bin/agent/get_permissions", NULL, NULL},
    };
    struct sess s;
    json_t *j, *g;
    size_t i;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    j = data(&s, "GET", NULL, "/cgi-bin/externalcontact/list?userid=u00001");
    h_copy_str(ext, sizeof(ext),
               json_string_value(
                   json_array_get(json_object_get(j, "external_userid"), 0)));
    json_decref(j);
    j = data(&s, "POST", "{\"limit\":10}",
             "/cgi-bin/externalcontact/groupchat/list");
    h_copy_str(
        chat, sizeof(chat),
        h_need_str(json_array_get(json_object_get(j, "group_chat_list"), 0),
                   "chat_id"));
    json_decref(j);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[256];
        const char *arg =
            strstr(cases[i].path, "external") && strstr(cases[i].path, "/get?")
                ? ext
                : chat;

        subst(path, sizeof(path), cases[i].path, arg);
        if (cases[i].body != NULL)
            subst(body, sizeof(body), cases[i].body, chat);
        j = data(&s, cases[i].method, cases[i].body ? body : NULL, "%s", path);
        if (h_errcode(j) != 0)
            fail_msg("%s: errcode %ld", path, h_errcode(j));
        assert_string_equal(h_need_str(j, "errmsg"), "ok");
        if (json_object_get(j, "mock_internal_note") == NULL)
            fail_msg("%s: no mock_internal_note", path);
        if (cases[i].nested != NULL)
            check_nested_note(j, cases[i].nested);
        json_decref(j);
    }
    /* deeper records: follow users, chat members, external_profile */
    j = data(&s, "GET", NULL, "/cgi-bin/externalcontact/get?external_userid=%s",
             ext);
    check_nested_note(j, "follow_user");
    json_decref(j);
    snprintf(path, sizeof(path), "{\"chat_id\":\"%s\"}", chat);
    j = data(&s, "POST", path, "/cgi-bin/externalcontact/groupchat/get");
    g = json_object_get(j, "group_chat");
    check_nested_note(g, "member_list");
    /* names only with need_name */
    assert_null(json_object_get(
        json_array_get(json_object_get(g, "member_list"), 0), "name"));
    json_decref(j);
    j = data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00001");
    check_nested_note(j, "external_profile");
    json_decref(j);
}

static void
test_user_has_every_documented_field(void **state)
{
    static const char *const fields[] = {"userid",          "name",
                                         "department",      "order",
                                         "position",        "mobile",
                                         "gender",          "email",
                                         "biz_mail",        "is_leader_in_dept",
                                         "direct_leader",   "avatar",
                                         "thumb_avatar",    "telephone",
                                         "alias",           "address",
                                         "open_userid",     "main_department",
                                         "extattr",         "status",
                                         "qr_code",         "external_position",
                                         "external_profile"};
    struct sess s;
    json_t *j, *u;
    size_t i;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    j = data(&s, "GET", NULL,
             "/cgi-bin/user/list?department_id=1&fetch_child=1");
    u = json_array_get(json_object_get(j, "userlist"), 5);
    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (json_object_get(u, fields[i]) == NULL)
            fail_msg("user/list record without %s", fields[i]);
    assert_true(
        json_is_array(json_object_get(json_object_get(u, "extattr"), "attrs")));
    json_decref(j);
}

/* Ids visible under the current privilege, computed as wecom-protocol §3.3
 * says, from the mock's own answers. */
static int
dept_under(const json_t *depts, long id, const long *roots, size_t nroots)
{
    size_t i, guard;

    for (guard = 0; id > 0 && guard < 100000; guard++) {
        const json_t *d;

        for (i = 0; i < nroots; i++)
            if (roots[i] == id)
                return 1;
        json_array_foreach(depts, i, d)
        {
            if (json_integer_value(json_object_get(d, "id")) == id)
                break;
        }
        if (i == json_array_size(depts))
            return 0;
        id = json_integer_value(
            json_object_get(json_array_get(depts, i), "parentid"));
    }
    return 0;
}

static void
test_user_list_has_members_outside_range(void **state)
{
    struct sess s;
    json_t *ai, *depts, *users, *tag, *u, *v;
    const json_t *priv;
    long roots[64];
    const char *tag_users[64];
    size_t nroots = 0, ntu = 0, i, k;
    int inside = 0, outside = 0;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    ai = with_permanent(Port, "get_auth_info", s.sat, CORP1, s.pc);
    priv = json_object_get(
        json_array_get(
            json_object_get(json_object_get(ai, "auth_info"), "agent"), 0),
        "privilege");
    json_array_foreach(json_object_get(priv, "allow_party"), i, v)
    {
        assert_true(nroots < 64);
        roots[nroots++] = json_integer_value(v);
    }
    tag = data(&s, "GET", NULL, "/cgi-bin/tag/get?tagid=%lld",
               json_integer_value(
                   json_array_get(json_object_get(priv, "allow_tag"), 0)));
    json_array_foreach(json_object_get(tag, "partylist"), i, v)
    {
        assert_true(nroots < 64);
        roots[nroots++] = json_integer_value(v);
    }
    json_array_foreach(json_object_get(tag, "userlist"), i, v)
    {
        assert_true(ntu < 64);
        tag_users[ntu++] = h_need_str(v, "userid");
    }
    depts = data(&s, "GET", NULL, "/cgi-bin/department/list");
    users = data(&s, "GET", NULL,
                 "/cgi-bin/user/list?department_id=1&fetch_child=1");
    assert_int_equal(json_array_size(json_object_get(users, "userlist")), 40);
    json_array_foreach(json_object_get(users, "userlist"), i, u)
    {
        const char *id = h_need_str(u, "userid");
        int vis = 0;

        json_array_foreach(json_object_get(priv, "allow_user"), k, v)
        {
            vis |= strcmp(json_string_value(v), id) == 0;
        }
        for (k = 0; k < ntu; k++)
            vis |= strcmp(tag_users[k], id) == 0;
        json_array_foreach(json_object_get(u, "department"), k, v)
        {
            vis |= dept_under(json_object_get(depts, "department"),
                              json_integer_value(v), roots, nroots);
        }
        if (vis)
            inside++;
        else
            outside++;
        if (strcmp(id, "u00002") == 0)
            assert_false(vis);
        if (strcmp(id, "u00001") == 0 || strcmp(id, "u00003") == 0)
            assert_true(vis);
    }
    assert_true(inside > 0);
    assert_true(outside > 0);
    json_decref(ai);
    json_decref(tag);
    json_decref(depts);
    json_decref(users);
}

static void
test_unknown_ids(void **state)
{
    static const struct {
        const char *method, *path, *body;
        long code;
    } cases[] = {
        {"GET", "/cgi-bin/user/get?userid=u99999", NULL, 60111},
        {"GET", "/cgi-bin/user/get?userid=u1", NULL, 60111},
        {"GET", "/cgi-bin/user/list?department_id=999", NULL, 60123},
        {"GET", "/cgi-bin/user/simplelist?department_id=999", NULL, 60123},
        {"GET", "/cgi-bin/department/get?id=999", NULL, 60123},
        {"GET", "/cgi-bin/department/list?id=999", NULL, 60123},
        {"GET", "/cgi-bin/tag/get?tagid=99", NULL, 40068},
        {"GET", "/cgi-bin/externalcontact/list?userid=u99999", NULL, 60111},
        {"GET",
         "/cgi-bin/externalcontact/get?external_userid="
         "wmAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
         NULL, 84061},
        {"GET", "/cgi-bin/externalcontact/get?external_userid=zzz", NULL,
         40096},
        {"POST", "/cgi-bin/externalcontact/groupchat/get",
         "{\"chat_id\":\"wrnope\"}", 40050},
        {"GET", "/cgi-bin/agent/get?agentid=1", NULL, 40056},
        {"GET", "/cgi-bin/user/get", NULL, 40058},
        {"GET", "/cgi-bin/user/list?department_id=abc", NULL, 40058},
        {"POST", "/cgi-bin/user/list_id", "{\"cursor\":\"bogus\"}", 40058},
        {"POST", "/cgi-bin/user/list_id", "{\"limit\":0}", 40058},
        {"POST", "/cgi-bin/user/list_id", "not json", 40058},
        {"POST", "/cgi-bin/user/list_id", "{\"limit\":1,\"limit\":2}", 40058},
        {"GET", "/cgi-bin/user/list_id", NULL, 43002},
        {"POST", "/cgi-bin/user/get?userid=u00001", "{}", 43001},
        {"POST", "/cgi-bin/externalcontact/batch/get_by_user", "{}", 40031},
        {"POST", "/cgi-bin/externalcontact/groupchat/list", "{}", 40058},
    };
    struct sess s;
    size_t i;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *j =
            data(&s, cases[i].method, cases[i].body, "%s", cases[i].path);

        if (h_errcode(j) != cases[i].code)
            fail_msg("%s: errcode %ld, want %ld", cases[i].path, h_errcode(j),
                     cases[i].code);
        assert_non_null(strstr(h_need_str(j, "errmsg"), "hint"));
        json_decref(j);
    }
}

static void
test_unknown_path_404(void **state)
{
    long st;
    json_t *j;

    (void)state;
    j = h_jcall(Port, "GET", NULL, &st, "/cgi-bin/user/delete?userid=u00001");
    assert_int_equal(st, 404);
    assert_int_equal(h_errcode(j), -1);
    assert_string_equal(h_need_str(j, "errmsg"), "mock: unknown path");
    json_decref(j);
    j = h_jcall(Port, "GET", NULL, &st, "/__mock/nothing");
    assert_int_equal(st, 404);
    json_decref(j);
}

static void
test_list_id_pages_cover_every_row(void **state)
{
    char cursor[64] = "", body[128];
    struct sess s;
    json_t *j, *u;
    size_t want = 0, got = 0, pages = 0, i;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    j = data(&s, "GET", NULL,
             "/cgi-bin/user/list?department_id=1&fetch_child=1");
    json_array_foreach(json_object_get(j, "userlist"), i, u)
    {
        want += json_array_size(json_object_get(u, "department"));
    }
    json_decref(j);
    do {
        snprintf(body, sizeof(body), "{\"cursor\":\"%s\",\"limit\":7}", cursor);
        j = data(&s, "POST", body, "/cgi-bin/user/list_id");
        assert_int_equal(h_errcode(j), 0);
        got += json_array_size(json_object_get(j, "dept_user"));
        assert_true(json_array_size(json_object_get(j, "dept_user")) <= 7);
        h_copy_str(cursor, sizeof(cursor), h_need_str(j, "next_cursor"));
        json_decref(j);
        assert_true(++pages < 100);
    } while (cursor[0] != '\0');
    assert_int_equal(got, want);
    assert_true(pages > 1);
}

static void
test_batch_and_groupchat_pagination(void **state)
{
    char cursor[64] = "", body[4096];
    struct sess s;
    json_t *j, *f, *v;
    size_t want = 0, got = 0, n, i, o;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    f = data(&s, "GET", NULL, "/cgi-bin/externalcontact/get_follow_user_list");
    o = (size_t)snprintf(body, sizeof(body), "{\"userid_list\":[");
    json_array_foreach(json_object_get(f, "follow_user"), i, v)
    {
        json_t *l =
            data(&s, "GET", NULL, "/cgi-bin/externalcontact/list?userid=%s",
                 json_string_value(v));

        want += json_array_size(json_object_get(l, "external_userid"));
        json_decref(l);
        o += (size_t)snprintf(body + o, sizeof(body) - o, "%s\"%s\"",
                              i ? "," : "", json_string_value(v));
    }
    json_decref(f);
    o += (size_t)snprintf(body + o, sizeof(body) - o, "],\"limit\":4");
    do {
        char page[4200];

        snprintf(page, sizeof(page), "%s,\"cursor\":\"%s\"}", body, cursor);
        j = data(&s, "POST", page,
                 "/cgi-bin/externalcontact/batch/get_by_user");
        assert_int_equal(h_errcode(j), 0);
        n = json_array_size(json_object_get(j, "external_contact_list"));
        assert_true(n <= 4);
        got += n;
        h_copy_str(cursor, sizeof(cursor), h_need_str(j, "next_cursor"));
        json_decref(j);
    } while (cursor[0] != '\0');
    assert_int_equal(got, want);

    /* five chats, two per page */
    got = 0;
    do {
        snprintf(body, sizeof(body), "{\"limit\":2,\"cursor\":\"%s\"}", cursor);
        j = data(&s, "POST", body, "/cgi-bin/externalcontact/groupchat/list");
        got += json_array_size(json_object_get(j, "group_chat_list"));
        h_copy_str(cursor, sizeof(cursor), h_need_str(j, "next_cursor"));
        json_decref(j);
    } while (cursor[0] != '\0');
    assert_int_equal(got, 5);
    /* chat 1 is owned by u00001 */
    j = data(&s, "POST",
             "{\"limit\":100,\"owner_filter\":{\"userid_list\":[\"u00001\"]}}",
             "/cgi-bin/externalcontact/groupchat/list");
    assert_true(json_array_size(json_object_get(j, "group_chat_list")) >= 1);
    json_decref(j);
}

/*---- faults ----*/

static void
test_fault_delay(void **state)
{
    struct sess s;
    long t0;
    json_t *j;

    (void)state;
    clear_faults();
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    post_ok("/__mock/faults", "{\"path\":\"/cgi-bin/tag/list\","
                              "\"delay_ms\":400}");
    t0 = h_now_ms();
    j = data(&s, "GET", NULL, "/cgi-bin/tag/list");
    assert_true(h_now_ms() - t0 >= 380);
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
    t0 = h_now_ms();
    j = data(&s, "GET", NULL, "/cgi-bin/tag/list");
    assert_true(h_now_ms() - t0 < 300);
    json_decref(j);
}

static void
test_fault_status_keeps_body(void **state)
{
    struct sess s;
    long st;
    json_t *j;

    (void)state;
    clear_faults();
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    post_ok("/__mock/faults", "{\"path\":\"/cgi-bin/tag/list\","
                              "\"status\":503}");
    j = h_jcall(Port, "GET", NULL, &st, "/cgi-bin/tag/list?access_token=%s",
                s.ct);
    assert_int_equal(st, 503);
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
}

static void
test_fault_errcode_count(void **state)
{
    struct sess s;
    json_t *j;
    int i;

    (void)state;
    clear_faults();
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    post_ok("/__mock/faults", "{\"path\":\"/cgi-bin/user/get\","
                              "\"errcode\":45009,\"count\":2}");
    /* another path is untouched */
    j = data(&s, "GET", NULL, "/cgi-bin/tag/list");
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
    for (i = 0; i < 3; i++) {
        j = data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00001");
        assert_int_equal(h_errcode(j), i < 2 ? 45009 : 0);
        json_decref(j);
    }
}

static void
test_fault_malformed_nonjson_empty(void **state)
{
    struct sess s;
    json_error_t err;
    char *out = NULL;
    json_t *j;
    long st;

    (void)state;
    clear_faults();
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    post_ok("/__mock/faults", "{\"path\":\"/cgi-bin/user/list\","
                              "\"body\":\"malformed\"}");
    post_ok("/__mock/faults", "{\"path\":\"/cgi-bin/user/list\","
                              "\"body\":\"nonjson\"}");
    post_ok("/__mock/faults", "{\"path\":\"/cgi-bin/user/list\","
                              "\"body\":\"empty\"}");
    st = h_rawf(Port, "GET", NULL, &out,
                "/cgi-bin/user/list?access_token=%s&department_id=1", s.ct);
    assert_int_equal(st, 200);
    assert_true(strlen(out) > 0 && out[0] == '{');
    j = json_loads(out, 0, &err);
    assert_null(j);
    free(out);
    st = h_rawf(Port, "GET", NULL, &out,
                "/cgi-bin/user/list?access_token=%s&department_id=1", s.ct);
    assert_int_equal(st, 200);
    assert_int_equal(out[0], '<');
    free(out);
    st = h_rawf(Port, "GET", NULL, &out,
                "/cgi-bin/user/list?access_token=%s&department_id=1", s.ct);
    assert_int_equal(st, 200);
    assert_int_equal(strlen(out), 0);
    free(out);
    /* the queue is empty again */
    j = data(&s, "GET", NULL, "/cgi-bin/user/list?department_id=1");
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
}

static void
test_fault_huge(void **state)
{
    struct sess s;
    char *out = NULL;
    size_t n;
    long st;

    (void)state;
    clear_faults();
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    post_ok("/__mock/faults", "{\"path\":\"/cgi-bin/user/list\","
                              "\"body\":\"huge\"}");
    st = h_rawf(Port, "GET", NULL, &out,
                "/cgi-bin/user/list?access_token=%s&department_id=1", s.ct);
    assert_int_equal(st, 200);
    n = strlen(out);
    assert_true(n > 70L * 1000 * 1000);
    assert_int_equal(out[0], '{');
    assert_string_equal(out + n - 2, "]}");
    free(out);
}

static void
test_fault_drop_reply_consumes_code(void **state)
{
    char sat[128], code[256];
    char *out = NULL;
    json_t *j;
    long st;

    (void)state;
    clear_faults();
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    install(Port, SUITE_A, CORP1, code, sizeof(code));
    post_ok("/__mock/faults", "{\"path\":\"/cgi-bin/service/"
                              "get_permanent_code\",\"drop_reply\":true}");
    {
        char body[512];

        snprintf(body, sizeof(body), "{\"auth_code\":\"%s\"}", code);
        st = h_rawf(Port, "POST", body, &out,
                    "/cgi-bin/service/get_permanent_code?suite_access_token=%s",
                    sat);
    }
    assert_int_equal(st, -1);
    free(out);
    j = exchange(Port, sat, code, 0);
    assert_int_equal(h_errcode(j), 40078);
    json_decref(j);
}

static void
test_fault_bad_requests_refused(void **state)
{
    static const char *const bad[] = {
        "{\"count\":1}",
        "{\"path\":\"nope\"}",
        "{\"path\":\"/x\",\"body\":\"weird\"}",
        "{\"path\":\"/x\",\"delay_ms\":-1}",
        "{\"path\":\"/x\",\"status\":42}",
        "{\"path\":\"/x\",\"count\":0}",
        "{\"path\":\"/x\",\"drop_reply\":1}",
        "{\"path\":\"/x\",\"typo\":1}",
        "[]",
    };
    size_t i;
    long st;
    json_t *j;

    (void)state;
    clear_faults();
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = h_jcall(Port, "POST", bad[i], &st, "/__mock/faults");
        if (st != 400)
            fail_msg("%s: HTTP %ld", bad[i], st);
        json_decref(j);
    }
    j = h_jcall(Port, "GET", NULL, &st, "/__mock/faults");
    assert_int_equal(json_array_size(j), 0);
    json_decref(j);
    /* DELETE clears what was queued */
    post_ok("/__mock/faults", "{\"path\":\"/cgi-bin/tag/list\","
                              "\"errcode\":1}");
    j = h_jcall(Port, "GET", NULL, &st, "/__mock/faults");
    assert_int_equal(json_array_size(j), 1);
    json_decref(j);
    clear_faults();
    j = h_jcall(Port, "GET", NULL, &st, "/__mock/faults");
    assert_int_equal(json_array_size(j), 0);
    json_decref(j);
}

/*---- control ----*/

static void
test_invalidate(void **state)
{
    char body[128];
    struct sess s;
    json_t *j;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    snprintf(body, sizeof(body), "{\"corpid\":\"%s\"}", CORP1);
    post_ok("/__mock/invalidate", body);
    j = data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00001");
    assert_int_equal(h_errcode(j), 40014);
    json_decref(j);
    /* a fresh corp token works */
    j = with_permanent(Port, "get_corp_token", s.sat, CORP1, s.pc);
    h_copy_str(s.ct, sizeof(s.ct), h_need_str(j, "access_token"));
    json_decref(j);
    j = data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00001");
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
    /* suite tokens */
    snprintf(body, sizeof(body), "{\"suite_id\":\"%s\"}", SUITE_A);
    post_ok("/__mock/invalidate", body);
    j = with_permanent(Port, "get_corp_token", s.sat, CORP1, s.pc);
    assert_int_equal(h_errcode(j), 40082);
    json_decref(j);
    /* unknown corp */
    {
        long st;

        j = h_jcall(Port, "POST", "{\"corpid\":\"wwnope\"}", &st,
                    "/__mock/invalidate");
        assert_int_equal(st, 400);
        json_decref(j);
    }
}

static void
test_privilege_change_visible(void **state)
{
    struct sess s;
    const json_t *priv;
    json_t *j;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    post_ok("/__mock/privilege",
            "{\"corpid\":\"" CORP1 "\",\"allow_party\":[3,4],"
            "\"allow_user\":[\"u00002\"],\"allow_tag\":[],"
            "\"extra_user\":[\"u00005\"]}");
    j = with_permanent(Port, "get_auth_info", s.sat, CORP1, s.pc);
    priv = json_object_get(
        json_array_get(
            json_object_get(json_object_get(j, "auth_info"), "agent"), 0),
        "privilege");
    assert_int_equal(json_array_size(json_object_get(priv, "allow_party")), 2);
    assert_int_equal(json_integer_value(json_array_get(
                         json_object_get(priv, "allow_party"), 1)),
                     4);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(priv, "allow_user"), 0)),
                        "u00002");
    assert_int_equal(json_array_size(json_object_get(priv, "allow_tag")), 0);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(priv, "extra_user"), 0)),
                        "u00005");
    json_decref(j);
    /* agent/get shows the same range */
    j = data(&s, "GET", NULL, "/cgi-bin/agent/get?agentid=1000002");
    assert_int_equal(json_array_size(json_object_get(
                         json_object_get(j, "allow_partys"), "partyid")),
                     2);
    json_decref(j);
    /* back to the default for the other tests */
    post_ok("/__mock/privilege",
            "{\"corpid\":\"" CORP1 "\",\"allow_party\":[2],"
            "\"allow_user\":[\"u00003\"],\"allow_tag\":[1]}");
    {
        long st;

        j = h_jcall(Port, "POST",
                    "{\"corpid\":\"" CORP1 "\",\"allow_party\":[\"x\"]}", &st,
                    "/__mock/privilege");
        assert_int_equal(st, 400);
        json_decref(j);
    }
}

static void
test_permissions_change_visible(void **state)
{
    struct sess s;
    json_t *j;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    j = data(&s, "POST", NULL, "/cgi-bin/agent/get_permissions");
    assert_int_equal(json_array_size(json_object_get(j, "app_permissions")), 2);
    assert_true(
        json_integer_value(json_object_get(
            json_array_get(json_object_get(j, "app_permissions_ext"), 0),
            "expire_time")) > 2000000000);
    json_decref(j);
    post_ok("/__mock/permissions",
            "{\"corpid\":\"" CORP1 "\",\"app_permissions\":"
            "[\"contact:base:base\",\"contact:sensitive:mobile\","
            "\"externalcontact:base:base\"]}");
    j = data(&s, "POST", "{}", "/cgi-bin/agent/get_permissions");
    assert_int_equal(json_array_size(json_object_get(j, "app_permissions")), 3);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(j, "app_permissions"), 1)),
                        "contact:sensitive:mobile");
    json_decref(j);
    post_ok("/__mock/permissions",
            "{\"corpid\":\"" CORP1 "\",\"app_permissions\":"
            "[\"contact:base:base\",\"externalcontact:base:base\"]}");
}

static void
test_cancel(void **state)
{
    struct sess s;
    char body[128], code[256], old_pc[128];
    json_t *j;

    (void)state;
    sess_open(Port, SUITE_B, SECRET_B, CORP2, &s);
    snprintf(body, sizeof(body), "{\"suite_id\":\"%s\",\"corpid\":\"%s\"}",
             SUITE_B, CORP2);
    post_ok("/__mock/cancel", body);
    j = with_permanent(Port, "get_corp_token", s.sat, CORP2, s.pc);
    assert_int_equal(h_errcode(j), 40084);
    json_decref(j);
    j = with_permanent(Port, "get_auth_info", s.sat, CORP2, s.pc);
    assert_int_equal(h_errcode(j), 40084);
    json_decref(j);
    j = data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00001");
    assert_int_equal(h_errcode(j), 40014);
    json_decref(j);
    /* a new install gets a new permanent code */
    h_copy_str(old_pc, sizeof(old_pc), s.pc);
    install(Port, SUITE_B, CORP2, code, sizeof(code));
    j = exchange(Port, s.sat, code, 0);
    assert_int_equal(h_errcode(j), 0);
    assert_string_not_equal(h_need_str(j, "permanent_code"), old_pc);
    json_decref(j);
}

static void
test_requests_recorded_and_masked(void **state)
{
    struct sess s;
    json_t *j, *e;
    char *dump;
    long st;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    j = h_jcall(Port, "DELETE", NULL, &st, "/__mock/requests");
    assert_int_equal(st, 200);
    json_decref(j);
    json_decref(data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00001"));
    json_decref(data(&s, "POST", "{\"limit\":3}", "/cgi-bin/user/list_id"));
    json_decref(with_permanent(Port, "get_corp_token", s.sat, CORP1, s.pc));

    j = h_jcall(Port, "GET", NULL, &st, "/__mock/requests");
    assert_int_equal(json_array_size(j), 3);
    dump = json_dumps(j, JSON_COMPACT);
    assert_null(strstr(dump, s.ct));
    assert_null(strstr(dump, s.sat));
    free(dump);
    e = json_array_get(j, 0);
    assert_string_equal(h_need_str(e, "method"), "GET");
    assert_string_equal(h_need_str(e, "path"), "/cgi-bin/user/get");
    assert_string_equal(h_need_str(e, "query"),
                        "userid=u00001&access_token=***");
    assert_true(json_is_null(json_object_get(e, "body")));
    assert_true(json_integer_value(json_object_get(e, "ts_ms")) >
                1600000000000LL);
    e = json_array_get(j, 1);
    assert_string_equal(h_need_str(e, "method"), "POST");
    assert_int_equal(json_integer_value(
                         json_object_get(json_object_get(e, "body"), "limit")),
                     3);
    e = json_array_get(j, 2);
    assert_string_equal(h_need_str(e, "query"), "suite_access_token=***");
    assert_string_equal(h_need_str(json_object_get(e, "body"), "auth_corpid"),
                        CORP1);
    json_decref(j);

    j = h_jcall(Port, "GET", NULL, &st,
                "/__mock/requests?path=/cgi-bin/user/list_id");
    assert_int_equal(json_array_size(j), 1);
    json_decref(j);
    /* control calls are not API requests */
    j = h_jcall(Port, "GET", NULL, &st,
                "/__mock/requests?path=/__mock/requests");
    assert_int_equal(json_array_size(j), 0);
    json_decref(j);
}

static void
test_corps_listed(void **state)
{
    long st;
    json_t *j;

    (void)state;
    j = h_jcall(Port, "GET", NULL, &st, "/__mock/corps");
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(j), 2);
    assert_string_equal(h_need_str(json_array_get(j, 0), "corpid"), CORP1);
    assert_string_equal(h_need_str(json_array_get(j, 1), "corpid"), CORP2);
    assert_non_null(
        strstr(h_need_str(json_array_get(j, 1), "corp_name"), "模拟企业2"));
    json_decref(j);
}

static void
test_install_refuses_unknown(void **state)
{
    long st;
    json_t *j;

    (void)state;
    j = h_jcall(Port, "POST",
                "{\"suite_id\":\"" SUITE_A "\",\"corpid\":\"wwnotgenerated\"}",
                &st, "/__mock/install");
    assert_int_equal(st, 400);
    json_decref(j);
    j = h_jcall(Port, "POST",
                "{\"suite_id\":\"wwnope\",\"corpid\":\"" CORP1 "\"}", &st,
                "/__mock/install");
    assert_int_equal(st, 400);
    json_decref(j);
    j = h_jcall(Port, "GET", NULL, &st, "/__mock/suite_ticket?suite_id=wwnope");
    assert_int_equal(st, 404);
    json_decref(j);
}

/*---- what WeCom refuses (strict, the default) ----*/

/* errcode of a data call, the reply freed. */
static long __attribute__((format(printf, 4, 5)))
code_of(const struct sess *s, const char *method, const char *body,
        const char *fmt, ...)
{
    char pq[1024];
    va_list ap;
    json_t *j;
    long e;

    va_start(ap, fmt);
    vsnprintf(pq, sizeof(pq), fmt, ap);
    va_end(ap);
    j = data(s, method, body, "%s", pq);
    e = h_errcode(j);
    if (e != 0)
        assert_non_null(strstr(h_need_str(j, "errmsg"), "hint"));
    json_decref(j);
    return e;
}

/* The agent object of get_auth_info (new reference). */
static json_t *
auth_agent(const struct sess *s, const char *corpid)
{
    json_t *j = with_permanent(Port, "get_auth_info", s->sat, corpid, s->pc);
    json_t *a = json_array_get(
        json_object_get(json_object_get(j, "auth_info"), "agent"), 0);

    assert_int_equal(h_errcode(j), 0);
    json_incref(a);
    json_decref(j);
    return a;
}

/* The keys of o are exactly want (NULL-terminated). */
static void
exact_keys(const json_t *o, const char *const *want)
{
    size_t n = 0, i;

    for (i = 0; want[i] != NULL; i++)
        if (json_object_get(o, want[i]) == NULL)
            fail_msg("no member %s", want[i]);
    n = i;
    assert_int_equal(json_object_size(o), n);
}

/* The first customer id and chat id that follow / belong to userid, read
 * from a leaky corp (restored to strict after). */
static void
records_of(const struct sess *s, const char *userid, char *ext, size_t ecap,
           char *chat, size_t ccap)
{
    char body[256];
    json_t *j;

    post_ok("/__mock/leaky", "{\"leaky\":true}");
    j = data(s, "GET", NULL, "/cgi-bin/externalcontact/list?userid=%s", userid);
    h_copy_str(ext, ecap,
               json_string_value(
                   json_array_get(json_object_get(j, "external_userid"), 0)));
    json_decref(j);
    snprintf(body, sizeof(body),
             "{\"limit\":100,\"owner_filter\":{\"userid_list\":[\"%s\"]}}",
             userid);
    j = data(s, "POST", body, "/cgi-bin/externalcontact/groupchat/list");
    h_copy_str(
        chat, ccap,
        h_need_str(json_array_get(json_object_get(j, "group_chat_list"), 0),
                   "chat_id"));
    json_decref(j);
    post_ok("/__mock/leaky", "{\"leaky\":false}");
}

static void
test_strict_is_the_default(void **state)
{
    struct sess s;
    json_t *j;
    long st;

    (void)state;
    j = h_jcall(Port, "GET", NULL, &st, "/__mock/leaky");
    assert_int_equal(st, 200);
    assert_true(
        json_is_false(json_object_get(json_object_get(j, "leaky"), CORP1)));
    assert_true(
        json_is_false(json_object_get(json_object_get(j, "leaky"), CORP2)));
    json_decref(j);
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    j = data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00002");
    assert_int_equal(h_errcode(j), 60011);
    assert_non_null(strstr(h_need_str(j, "errmsg"), "no privilege to access"));
    assert_null(json_object_get(j, "userid"));
    json_decref(j);
}

/* The read-only app's install called user/list_id and the tests were
 * green: WeCom refuses it without contacts edit. */
static void
test_list_id_needs_edit(void **state)
{
    static const char *const row_keys[] = {"open_userid", "department",
                                           "mock_internal_note", NULL};
    char cursor[64] = "", body[128];
    struct sess s;
    json_t *j, *a, *r, *opens;
    size_t got = 0, want = 0, i, pages = 0;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    assert_int_equal(code_of(&s, "POST", "{}", "/cgi-bin/user/list_id"), 48002);
    /* contacts edit, through the level */
    post_ok("/__mock/privilege",
            "{\"corpid\":\"" CORP1 "\",\"level\":3,\"allow_party\":[1]}");
    a = auth_agent(&s, CORP1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(a, "privilege"), "level")),
                     3);
    json_decref(a);
    j = data(&s, "POST", NULL, "/cgi-bin/agent/get_permissions");
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(j, "app_permissions"), 1)),
                        "contact:edit:all");
    json_decref(j);
    /* the whole corp is in range: one row per (member, department) */
    post_ok("/__mock/leaky", "{\"leaky\":true}");
    j = data(&s, "GET", NULL,
             "/cgi-bin/user/list?department_id=1&fetch_child=1");
    opens = json_object();
    json_array_foreach(json_object_get(j, "userlist"), i, r)
    {
        want += json_array_size(json_object_get(r, "department"));
        json_object_set(opens, h_need_str(r, "open_userid"), json_true());
    }
    json_decref(j);
    post_ok("/__mock/leaky", "{\"leaky\":false}");
    do {
        snprintf(body, sizeof(body), "{\"cursor\":\"%s\",\"limit\":9}", cursor);
        j = data(&s, "POST", body, "/cgi-bin/user/list_id");
        assert_int_equal(h_errcode(j), 0);
        json_array_foreach(json_object_get(j, "dept_user"), i, r)
        {
            exact_keys(r, row_keys);
            assert_non_null(
                json_object_get(opens, h_need_str(r, "open_userid")));
        }
        got += json_array_size(json_object_get(j, "dept_user"));
        h_copy_str(cursor, sizeof(cursor), h_need_str(j, "next_cursor"));
        json_decref(j);
        assert_true(++pages < 100);
    } while (cursor[0] != '\0');
    assert_int_equal(got, want);
    assert_true(pages > 1);
    json_decref(opens);
    /* the permission alone carries the level too */
    post_ok("/__mock/permissions",
            "{\"corpid\":\"" CORP1 "\",\"app_permissions\":"
            "[\"contact:base:base\",\"externalcontact:base:base\"]}");
    assert_int_equal(code_of(&s, "POST", "{}", "/cgi-bin/user/list_id"), 48002);
    a = auth_agent(&s, CORP1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(a, "privilege"), "level")),
                     1);
    json_decref(a);
}

static const struct {
    const char *method, *path, *body;
} contacts_calls[] =
    {
        {"GET", "/cgi-bin/user/get?userid=u00001", NULL},
        {"GET", "/cgi-bin/user/simplelist?department_id=2", NULL},
        {"GET", "/cgi-bin/user/list?department_id=2", NULL},
        {"GET", "/cgi-bin/tag/list", NULL},
        {"GET", "/cgi-bin/tag/get?tagid=1", NULL},
},
  dept_calls[] =
      {
          {"GET", "/cgi-bin/department/list", NULL},
          {"GET", "/cgi-bin/department/simplelist", NULL},
          {"GET", "/cgi-bin/department/get?id=2", NULL},
},
  external_calls[] = {
      {"GET", "/cgi-bin/externalcontact/get_follow_user_list", NULL},
      {"GET", "/cgi-bin/externalcontact/list?userid=u00001", NULL},
      {"GET", "/cgi-bin/externalcontact/get?external_userid=%s", NULL},
      {"POST", "/cgi-bin/externalcontact/batch/get_by_user",
       "{\"userid_list\":[\"u00001\"]}"},
      {"POST", "/cgi-bin/externalcontact/groupchat/list", "{\"limit\":10}"},
      {"POST", "/cgi-bin/externalcontact/groupchat/get",
       "{\"chat_id\":\"%s\"}"},
};

/* Run calls[0..n) expecting code; %s in a path is ext, in a body chat. */
static void
expect_all(const struct sess *s, const char *ext, const char *chat, size_t n,
           const char *const method[], const char *const path[],
           const char *const body[], long code)
{
    char p[512], b[256];
    size_t i;
    long got;

    for (i = 0; i < n; i++) {
        subst(p, sizeof(p), path[i], ext);
        if (body[i] != NULL)
            subst(b, sizeof(b), body[i], chat);
        got = code_of(s, method[i], body[i] ? b : NULL, "%s", p);
        if (got != code)
            fail_msg("%s: errcode %ld, want %ld", p, got, code);
    }
}

#define EXPECT(s, ext, chat, calls, code)                                      \
    do {                                                                       \
        const char *m_[16], *p_[16], *b_[16];                                  \
        size_t i_;                                                             \
        for (i_ = 0; i_ < sizeof(calls) / sizeof(calls[0]); i_++) {            \
            m_[i_] = calls[i_].method;                                         \
            p_[i_] = calls[i_].path;                                           \
            b_[i_] = calls[i_].body;                                           \
        }                                                                      \
        expect_all(s, ext, chat, i_, m_, p_, b_, code);                        \
    } while (0)

static void
test_permissions_gate_the_apis(void **state)
{
    char ext[64], chat[64];
    struct sess s;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    records_of(&s, "u00001", ext, sizeof(ext), chat, sizeof(chat));
    EXPECT(&s, ext, chat, contacts_calls, 0);
    EXPECT(&s, ext, chat, dept_calls, 0);
    EXPECT(&s, ext, chat, external_calls, 0);
    /* customers only */
    post_ok("/__mock/permissions",
            "{\"corpid\":\"" CORP1 "\",\"app_permissions\":"
            "[\"externalcontact:base:base\"]}");
    EXPECT(&s, ext, chat, contacts_calls, 48002);
    EXPECT(&s, ext, chat, dept_calls, 48002);
    EXPECT(&s, ext, chat, external_calls, 0);
    /* 组织架构信息 opens the department APIs, not the members */
    post_ok("/__mock/permissions",
            "{\"corpid\":\"" CORP1 "\",\"app_permissions\":"
            "[\"corp_arch:base:base\"]}");
    EXPECT(&s, ext, chat, contacts_calls, 48002);
    EXPECT(&s, ext, chat, dept_calls, 0);
    EXPECT(&s, ext, chat, external_calls, 48002);
    /* contacts only */
    post_ok("/__mock/permissions",
            "{\"corpid\":\"" CORP1 "\",\"app_permissions\":"
            "[\"contact:base:base\"]}");
    EXPECT(&s, ext, chat, contacts_calls, 0);
    EXPECT(&s, ext, chat, external_calls, 48002);
    /* nothing at all; a leaky corp answers anyway */
    post_ok("/__mock/permissions",
            "{\"corpid\":\"" CORP1 "\",\"app_permissions\":[]}");
    EXPECT(&s, ext, chat, dept_calls, 48002);
    post_ok("/__mock/leaky", "{\"leaky\":true,\"corpid\":\"" CORP1 "\"}");
    EXPECT(&s, ext, chat, contacts_calls, 0);
    EXPECT(&s, ext, chat, dept_calls, 0);
    EXPECT(&s, ext, chat, external_calls, 0);
}

static void
test_range_refusals(void **state)
{
    char ext2[64], chat2[64], ext1[64], chat1[64], body[256];
    struct sess s;
    json_t *j, *r;
    size_t i;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    records_of(&s, "u00002", ext2, sizeof(ext2), chat2, sizeof(chat2));
    records_of(&s, "u00001", ext1, sizeof(ext1), chat1, sizeof(chat1));
    /* u00001 in department 2, u00003 named in allow_user; u00002 out */
    assert_int_equal(
        code_of(&s, "GET", NULL, "/cgi-bin/user/get?userid=%s", "u00001"), 0);
    assert_int_equal(
        code_of(&s, "GET", NULL, "/cgi-bin/user/get?userid=%s", "u00003"), 0);
    assert_int_equal(
        code_of(&s, "GET", NULL, "/cgi-bin/user/get?userid=%s", "u00002"),
        60011);
    assert_int_equal(
        code_of(&s, "GET", NULL, "/cgi-bin/user/simplelist?department_id=3"),
        60011);
    assert_int_equal(
        code_of(&s, "GET", NULL, "/cgi-bin/user/list?department_id=3"), 60011);
    assert_int_equal(code_of(&s, "GET", NULL, "/cgi-bin/department/get?id=3"),
                     60011);
    assert_int_equal(code_of(&s, "GET", NULL, "/cgi-bin/department/list?id=3"),
                     60011);
    assert_int_equal(
        code_of(&s, "GET", NULL, "/cgi-bin/department/simplelist?id=3"), 60011);
    /* tags: the range's, or the app's own */
    assert_int_equal(code_of(&s, "GET", NULL, "/cgi-bin/tag/get?tagid=2"),
                     60011);
    post_ok("/__mock/app_tags", "{\"corpid\":\"" CORP1 "\",\"tagids\":[2]}");
    assert_int_equal(code_of(&s, "GET", NULL, "/cgi-bin/tag/get?tagid=2"), 0);
    /* customers and chats of a member outside the range */
    assert_int_equal(
        code_of(&s, "GET", NULL, "/cgi-bin/externalcontact/list?userid=u00002"),
        60011);
    j = data(&s, "GET", NULL, "/cgi-bin/externalcontact/get?external_userid=%s",
             ext2);
    assert_int_equal(h_errcode(j), 60011);
    /* WeCom keeps the empty members in this refusal */
    assert_int_equal(json_object_size(json_object_get(j, "external_contact")),
                     0);
    assert_int_equal(json_array_size(json_object_get(j, "follow_user")), 0);
    json_decref(j);
    assert_int_equal(code_of(&s, "POST", "{\"userid_list\":[\"u00002\"]}",
                             "/cgi-bin/externalcontact/batch/get_by_user"),
                     60011);
    /* per member: the rows of the member in range only */
    j = data(&s, "POST", "{\"userid_list\":[\"u00002\",\"u00001\"]}",
             "/cgi-bin/externalcontact/batch/get_by_user");
    assert_int_equal(h_errcode(j), 0);
    assert_true(json_array_size(json_object_get(j, "external_contact_list")) >
                0);
    json_array_foreach(json_object_get(j, "external_contact_list"), i, r)
    {
        assert_string_equal(
            h_need_str(json_object_get(r, "follow_info"), "userid"), "u00001");
    }
    json_decref(j);
    assert_int_equal(code_of(&s, "POST",
                             "{\"limit\":10,\"owner_filter\":{\"userid_list\":"
                             "[\"u00001\",\"u00002\"]}}",
                             "/cgi-bin/externalcontact/groupchat/list"),
                     60011);
    snprintf(body, sizeof(body), "{\"chat_id\":\"%s\"}", chat2);
    assert_int_equal(
        code_of(&s, "POST", body, "/cgi-bin/externalcontact/groupchat/get"),
        60011);
    snprintf(body, sizeof(body), "{\"chat_id\":\"%s\"}", chat1);
    assert_int_equal(
        code_of(&s, "POST", body, "/cgi-bin/externalcontact/groupchat/get"), 0);
    /* unfiltered: the chats of owners in range, not u00002's */
    j = data(&s, "POST", "{\"limit\":100}",
             "/cgi-bin/externalcontact/groupchat/list");
    json_array_foreach(json_object_get(j, "group_chat_list"), i, r)
    {
        assert_string_not_equal(h_need_str(r, "chat_id"), chat2);
    }
    json_decref(j);
}

static void
test_groupchat_list_too_wide(void **state)
{
    static const char *const extra[] = {"--suite", SUITE_A ":" SECRET_A,
                                        "--members", "1100", NULL};
    struct sess s;
    pid_t pid;
    int port = 0;
    json_t *j;
    long st;

    (void)state;
    pid = h_mock_start(Dir, extra, &port);
    assert_true(pid > 0);
    sess_open(port, SUITE_A, SECRET_A, CORP1, &s);
    j = h_jcall(port, "POST", "{\"corpid\":\"" CORP1 "\",\"allow_party\":[1]}",
                &st, "/__mock/privilege");
    assert_int_equal(st, 200);
    json_decref(j);
    j = h_jcall(port, "POST", "{\"limit\":10}", &st,
                "/cgi-bin/externalcontact/groupchat/list?access_token=%s",
                s.ct);
    assert_int_equal(h_errcode(j), 81017);
    json_decref(j);
    j = h_jcall(
        port, "POST",
        "{\"limit\":10,\"owner_filter\":{\"userid_list\":[\"u00001\"]}}", &st,
        "/cgi-bin/externalcontact/groupchat/list?access_token=%s", s.ct);
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
    assert_int_equal(h_stop(pid, SIGTERM), 0);
}

static void
test_departments_in_range_or_all_with_corp_arch(void **state)
{
    struct sess s;
    json_t *j, *d;
    size_t i, n_range, n_all;
    char id[24];

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    j = data(&s, "GET", NULL, "/cgi-bin/department/list");
    n_range = json_array_size(json_object_get(j, "department"));
    json_array_foreach(json_object_get(j, "department"), i, d)
    {
        /* no names for third-party apps: the id in their place */
        snprintf(id, sizeof(id), "%lld",
                 json_integer_value(json_object_get(d, "id")));
        assert_string_equal(h_need_str(d, "name"), id);
        assert_null(json_object_get(d, "name_en"));
        assert_null(json_object_get(d, "department_leader"));
        assert_int_not_equal(json_integer_value(json_object_get(d, "id")), 3);
    }
    json_decref(j);
    j = data(&s, "GET", NULL, "/cgi-bin/department/get?id=2");
    exact_keys(json_object_get(j, "department"),
               (const char *const[]){"id", "parentid", "order",
                                     "mock_internal_note", NULL});
    json_decref(j);
    post_ok("/__mock/permissions",
            "{\"corpid\":\"" CORP1 "\",\"app_permissions\":"
            "[\"contact:base:base\",\"corp_arch:base:base\"]}");
    j = data(&s, "GET", NULL, "/cgi-bin/department/simplelist");
    n_all = json_array_size(json_object_get(j, "department_id"));
    json_decref(j);
    assert_int_equal(n_all, 12);
    assert_true(n_range < n_all);
    assert_int_equal(code_of(&s, "GET", NULL, "/cgi-bin/department/get?id=3"),
                     0);
    /* every department id, but not their members */
    assert_int_equal(
        code_of(&s, "GET", NULL, "/cgi-bin/user/simplelist?department_id=3"),
        60011);
}

static const char *const ro_user_keys[] = {"errcode",
                                           "errmsg",
                                           "userid",
                                           "name",
                                           "department",
                                           "order",
                                           "gender",
                                           "open_userid",
                                           "main_department",
                                           "status",
                                           "mock_internal_note",
                                           NULL};

static void
test_read_only_user_shape(void **state)
{
    static const char *const simple_keys[] = {
        "userid", "name", "department", "open_userid", "mock_internal_note",
        NULL};
    struct sess s;
    json_t *j, *u;
    size_t i;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    j = data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00001");
    exact_keys(j, ro_user_keys);
    assert_string_equal(h_need_str(j, "name"), "u00001");
    assert_string_equal(h_need_str(j, "gender"), "0");
    json_decref(j);
    /* member-sensitive permissions open OAuth, not user/get */
    post_ok("/__mock/permissions",
            "{\"corpid\":\"" CORP1 "\",\"app_permissions\":"
            "[\"contact:base:base\",\"contact:sensitive:avatar\","
            "\"contact:sensitive:gender\",\"contact:sensitive:mobile\","
            "\"contact:sensitive:qrcode\",\"contact:sensitive:email\"]}");
    j = data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00001");
    exact_keys(j, ro_user_keys);
    json_decref(j);
    j = data(&s, "GET", NULL, "/cgi-bin/user/list?department_id=2");
    assert_true(json_array_size(json_object_get(j, "userlist")) > 0);
    json_array_foreach(json_object_get(j, "userlist"), i, u)
    {
        assert_string_equal(h_need_str(u, "name"), h_need_str(u, "userid"));
        assert_null(json_object_get(u, "mobile"));
        assert_null(json_object_get(u, "avatar"));
        assert_null(json_object_get(u, "position"));
    }
    json_decref(j);
    j = data(&s, "GET", NULL, "/cgi-bin/user/simplelist?department_id=2");
    json_array_foreach(json_object_get(j, "userlist"), i, u)
    {
        exact_keys(u, simple_keys);
        assert_string_equal(h_need_str(u, "name"), h_need_str(u, "userid"));
    }
    json_decref(j);
    j = data(&s, "GET", NULL, "/cgi-bin/tag/get?tagid=1");
    json_array_foreach(json_object_get(j, "userlist"), i, u)
    {
        assert_null(json_object_get(u, "name"));
    }
    json_decref(j);
}

static void
test_contacts_app_user_shape(void **state)
{
    static const char *const never[] = {"mobile", "email",   "biz_mail",
                                        "avatar", "qr_code", "address"};
    struct sess s;
    json_t *j, *d;
    size_t i;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    j = data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00001");
    assert_string_not_equal(h_need_str(j, "name"), "u00001");
    assert_non_null(json_object_get(j, "position"));
    assert_non_null(json_object_get(j, "extattr"));
    assert_non_null(json_object_get(j, "is_leader_in_dept"));
    assert_string_equal(h_need_str(j, "gender"), "0");
    for (i = 0; i < sizeof(never) / sizeof(never[0]); i++)
        if (json_object_get(j, never[i]) != NULL)
            fail_msg("%s without its contact:sensitive permission", never[i]);
    json_decref(j);
    post_ok("/__mock/permissions",
            "{\"corpid\":\"" CORP1 "\",\"app_permissions\":"
            "[\"contact:edit:all\",\"contact:sensitive:avatar\","
            "\"contact:sensitive:gender\",\"contact:sensitive:mobile\"]}");
    j = data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00001");
    assert_non_null(json_object_get(j, "mobile"));
    assert_non_null(json_object_get(j, "avatar"));
    assert_string_not_equal(h_need_str(j, "gender"), "0");
    assert_null(json_object_get(j, "email"));
    assert_null(json_object_get(j, "qr_code"));
    json_decref(j);
    /* department/list names for the contacts app; department/get never */
    j = data(&s, "GET", NULL, "/cgi-bin/department/list");
    d = json_array_get(json_object_get(j, "department"), 0);
    assert_non_null(json_object_get(d, "name_en"));
    assert_non_null(json_object_get(d, "department_leader"));
    json_decref(j);
    j = data(&s, "GET", NULL, "/cgi-bin/department/get?id=1");
    assert_null(json_object_get(json_object_get(j, "department"), "name"));
    json_decref(j);
}

static void
test_customer_shape(void **state)
{
    char ext[64], chat[64], body[256];
    struct sess s;
    json_t *j, *m;
    size_t i;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    records_of(&s, "u00001", ext, sizeof(ext), chat, sizeof(chat));
    j = data(&s, "GET", NULL, "/cgi-bin/externalcontact/get?external_userid=%s",
             ext);
    m = json_object_get(j, "external_contact");
    assert_null(json_object_get(m, "avatar"));
    assert_null(json_object_get(m, "unionid"));
    assert_int_equal(json_integer_value(json_object_get(m, "gender")), 0);
    json_decref(j);
    snprintf(body, sizeof(body), "{\"chat_id\":\"%s\"}", chat);
    j = data(&s, "POST", body, "/cgi-bin/externalcontact/groupchat/get");
    json_array_foreach(
        json_object_get(json_object_get(j, "group_chat"), "member_list"), i, m)
    {
        assert_null(json_object_get(m, "unionid"));
    }
    json_decref(j);
}

static void
test_fetch_child_is_gone(void **state)
{
    struct sess s;
    json_t *j, *u, *v;
    size_t i, k, strict_n;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    post_ok("/__mock/privilege",
            "{\"corpid\":\"" CORP1 "\",\"allow_party\":[1]}");
    j = data(&s, "GET", NULL,
             "/cgi-bin/user/simplelist?department_id=1&fetch_child=1");
    strict_n = json_array_size(json_object_get(j, "userlist"));
    json_array_foreach(json_object_get(j, "userlist"), i, u)
    {
        int in1 = 0;

        json_array_foreach(json_object_get(u, "department"), k, v)
        {
            in1 |= json_integer_value(v) == 1;
        }
        assert_true(in1);
    }
    json_decref(j);
    assert_true(strict_n > 0 && strict_n < 40);
}

static void
test_member_authorization(void **state)
{
    char code[256], sat[128], open5[128];
    struct sess s;
    json_t *j, *a, *r;
    size_t i;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    assert_int_equal(
        code_of(&s, "POST", "{}", "/cgi-bin/user/list_member_auth"), 48002);
    post_ok("/__mock/auth_mode",
            "{\"corpid\":\"" CORP1 "\",\"auth_mode\":1,"
            "\"members\":[\"u00005\",\"u00007\",\"u00005\"]}");
    a = auth_agent(&s, CORP1);
    assert_int_equal(json_integer_value(json_object_get(a, "auth_mode")), 1);
    json_decref(a);
    /* a new install says so too */
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    install(Port, SUITE_A, CORP1, code, sizeof(code));
    j = exchange(Port, sat, code, 0);
    assert_int_equal(
        json_integer_value(json_object_get(
            json_array_get(
                json_object_get(json_object_get(j, "auth_info"), "agent"), 0),
            "auth_mode")),
        1);
    json_decref(j);
    /* the members who authorized are the range; departments are [1] */
    assert_int_equal(
        code_of(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00001"), 60011);
    j = data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00005");
    assert_int_equal(h_errcode(j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "department")), 1);
    assert_int_equal(
        json_integer_value(json_array_get(json_object_get(j, "department"), 0)),
        1);
    assert_null(json_object_get(j, "order"));
    h_copy_str(open5, sizeof(open5), h_need_str(j, "open_userid"));
    json_decref(j);
    j = data(&s, "GET", NULL, "/cgi-bin/user/simplelist?department_id=1");
    assert_int_equal(json_array_size(json_object_get(j, "userlist")), 2);
    json_array_foreach(json_object_get(j, "userlist"), i, r)
    {
        assert_int_equal(json_integer_value(json_array_get(
                             json_object_get(r, "department"), 0)),
                         1);
    }
    json_decref(j);
    /* two pages of one row of open_userid */
    j = data(&s, "POST", "{\"limit\":1}", "/cgi-bin/user/list_member_auth");
    assert_int_equal(h_errcode(j), 0);
    r = json_array_get(json_object_get(j, "member_auth_list"), 0);
    exact_keys(
        r, (const char *const[]){"open_userid", "mock_internal_note", NULL});
    assert_string_equal(h_need_str(r, "open_userid"), open5);
    assert_string_not_equal(h_need_str(j, "next_cursor"), "");
    {
        char body[128];

        snprintf(body, sizeof(body), "{\"limit\":1,\"cursor\":\"%s\"}",
                 h_need_str(j, "next_cursor"));
        json_decref(j);
        j = data(&s, "POST", body, "/cgi-bin/user/list_member_auth");
    }
    assert_int_equal(json_array_size(json_object_get(j, "member_auth_list")),
                     1);
    assert_string_equal(h_need_str(j, "next_cursor"), "");
    json_decref(j);
    /* the other reading of the unconfirmed shape */
    post_ok("/__mock/member_auth_shape", "{\"shape\":\"userid\"}");
    j = data(&s, "POST", "{}", "/cgi-bin/user/list_member_auth");
    r = json_array_get(json_object_get(j, "member_auth_list"), 1);
    exact_keys(r, (const char *const[]){"userid", "mock_internal_note", NULL});
    assert_string_equal(h_need_str(r, "userid"), "u00007");
    json_decref(j);
    assert_int_equal(code_of(&s, "POST", "{\"cursor\":\"bogus\"}",
                             "/cgi-bin/user/list_member_auth"),
                     40058);
    assert_int_equal(code_of(&s, "GET", NULL, "/cgi-bin/user/list_member_auth"),
                     43002);
}

static void
test_admin_list(void **state)
{
    struct sess s;
    json_t *j, *a, *u;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    j = data(&s, "POST", "{}", "/cgi-bin/agent/get_admin_list");
    assert_int_equal(h_errcode(j), 0);
    assert_int_equal(json_array_size(json_object_get(j, "admin")), 1);
    a = json_array_get(json_object_get(j, "admin"), 0);
    exact_keys(
        a, (const char *const[]){"userid", "open_userid", "auth_type", NULL});
    assert_string_equal(h_need_str(a, "userid"), "u00001");
    assert_int_equal(json_integer_value(json_object_get(a, "auth_type")), 1);
    u = data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00001");
    assert_string_equal(h_need_str(a, "open_userid"),
                        h_need_str(u, "open_userid"));
    json_decref(u);
    json_decref(j);
    post_ok("/__mock/admins",
            "{\"corpid\":\"" CORP1 "\",\"admins\":[{\"userid\":\"u00002\","
            "\"auth_type\":0},{\"userid\":\"u00009\"}]}");
    j = data(&s, "POST", "{\"agentid\":1000002}",
             "/cgi-bin/agent/get_admin_list");
    assert_int_equal(json_array_size(json_object_get(j, "admin")), 2);
    a = json_array_get(json_object_get(j, "admin"), 0);
    assert_string_equal(h_need_str(a, "userid"), "u00002");
    assert_int_equal(json_integer_value(json_object_get(a, "auth_type")), 0);
    a = json_array_get(json_object_get(j, "admin"), 1);
    assert_int_equal(json_integer_value(json_object_get(a, "auth_type")), 1);
    json_decref(j);
    assert_int_equal(code_of(&s, "POST", "{\"agentid\":1000003}",
                             "/cgi-bin/agent/get_admin_list"),
                     301002);
    assert_int_equal(code_of(&s, "GET", NULL, "/cgi-bin/agent/get_admin_list"),
                     43002);
}

/* The simulator's change_app_admin: a data callback sealed for the corp. */
static void
test_change_app_admin_callback(void **state)
{
    const char *argv[] = {"bin/mock-wecom",
                          "callback",
                          "--print",
                          "--url",
                          "http://127.0.0.1:1/wecom/suite/" SUITE_A "/data",
                          "--token",
                          H_TOKEN,
                          "--aes-key",
                          H_AESKEY,
                          "--corp",
                          CORP1,
                          "--agentid",
                          "1000002",
                          "change_app_admin",
                          NULL};
    const char *nocorp[] = {
        "bin/mock-wecom", "callback",         "--print", "--url",
        "http://x/",      "--token",          H_TOKEN,   "--aes-key",
        H_AESKEY,         "change_app_admin", NULL};
    const char *badagent[] = {
        "bin/mock-wecom", "callback",         "--print", "--url",
        "http://x/",      "--token",          H_TOKEN,   "--aes-key",
        H_AESKEY,         "--corp",           CORP1,     "--agentid",
        "10000020000",    "change_app_admin", NULL};
    struct wecom_crypto *wc = NULL;
    char *out = NULL, *enc, *end, *msg = NULL, *rid = NULL;
    size_t mlen;

    (void)state;
    assert_int_equal(h_run(argv, &out), 0);
    assert_non_null(strstr(out, "/data?msg_signature="));
    assert_non_null(
        strstr(out, "<ToUserName><![CDATA[" CORP1 "]]></ToUserName><Encrypt>"));
    assert_non_null(
        strstr(out, "<AgentID><![CDATA[1000002]]></AgentID></xml>"));
    enc = strstr(out, "<Encrypt><![CDATA[");
    assert_non_null(enc);
    enc += strlen("<Encrypt><![CDATA[");
    end = strstr(enc, "]]>");
    assert_non_null(end);
    assert_int_equal(wecom_crypto_new(H_TOKEN, H_AESKEY, &wc), BRK_OK);
    assert_int_equal(
        wecom_crypto_decrypt(wc, enc, (size_t)(end - enc), &msg, &mlen, &rid),
        BRK_OK);
    /* receiveid: the corp, as for every data callback */
    assert_string_equal(rid, CORP1);
    assert_non_null(
        strstr(msg, "<FromUserName><![CDATA[sys]]></FromUserName>"));
    assert_non_null(strstr(msg, "<MsgType><![CDATA[event]]></MsgType>"));
    assert_non_null(strstr(msg, "<Event><![CDATA[change_app_admin]]></Event>"));
    assert_non_null(strstr(msg, "<ToUserName><![CDATA[" CORP1 "]]>"));
    assert_non_null(strstr(msg, "<AgentID><![CDATA[1000002]]></AgentID>"));
    assert_non_null(strstr(msg, "<CreateTime>"));
    assert_null(strstr(msg, "InfoType"));
    assert_null(strstr(msg, "SuiteId"));
    brk_free(msg);
    brk_free(rid);
    wecom_crypto_free(wc);
    free(out);
    assert_int_equal(h_run(nocorp, &out), 2);
    assert_non_null(strstr(out, "needs --corp"));
    free(out);
    assert_int_equal(h_run(badagent, &out), 2);
    assert_non_null(strstr(out, "--agentid wants a number"));
    free(out);
}

/*---- leaky mode and latency ----*/

static void
test_leaky_per_corp_and_global(void **state)
{
    struct sess s1, s2;
    json_t *j;
    long st;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s1);
    sess_open(Port, SUITE_A, SECRET_A, CORP2, &s2);
    post_ok("/__mock/leaky", "{\"corpid\":\"" CORP2 "\",\"leaky\":true}");
    j = h_jcall(Port, "GET", NULL, &st, "/__mock/leaky");
    assert_true(
        json_is_false(json_object_get(json_object_get(j, "leaky"), CORP1)));
    assert_true(
        json_is_true(json_object_get(json_object_get(j, "leaky"), CORP2)));
    json_decref(j);
    assert_int_equal(
        code_of(&s1, "GET", NULL, "/cgi-bin/user/get?userid=u00002"), 60011);
    /* leaky: outside the range, every field, the real name */
    j = data(&s2, "GET", NULL, "/cgi-bin/user/get?userid=u00002");
    assert_int_equal(h_errcode(j), 0);
    assert_non_null(json_object_get(j, "mobile"));
    assert_non_null(json_object_get(j, "email"));
    assert_string_not_equal(h_need_str(j, "name"), "u00002");
    json_decref(j);
    j = data(&s2, "POST", "{\"limit\":1}", "/cgi-bin/user/list_id");
    assert_int_equal(h_errcode(j), 0);
    assert_non_null(json_object_get(
        json_array_get(json_object_get(j, "dept_user"), 0), "userid"));
    json_decref(j);
    /* every corp at once, and back */
    post_ok("/__mock/leaky", "{\"leaky\":true}");
    assert_int_equal(
        code_of(&s1, "GET", NULL, "/cgi-bin/user/get?userid=u00002"), 0);
    post_ok("/__mock/leaky", "{\"leaky\":false}");
    assert_int_equal(
        code_of(&s1, "GET", NULL, "/cgi-bin/user/get?userid=u00002"), 60011);
    assert_int_equal(
        code_of(&s2, "GET", NULL, "/cgi-bin/user/get?userid=u00002"), 60011);
}

static void
test_leaky_flag(void **state)
{
    static const char *const extra[] = {"--suite", SUITE_A ":" SECRET_A,
                                        "--leaky", NULL};
    struct sess s;
    json_t *j;
    pid_t pid;
    int port = 0;
    long st;

    (void)state;
    pid = h_mock_start(Dir, extra, &port);
    assert_true(pid > 0);
    j = h_jcall(port, "GET", NULL, &st, "/__mock/leaky");
    assert_true(
        json_is_true(json_object_get(json_object_get(j, "leaky"), CORP1)));
    json_decref(j);
    sess_open(port, SUITE_A, SECRET_A, CORP1, &s);
    j = h_jcall(port, "GET", NULL, &st,
                "/cgi-bin/user/get?userid=u00002&access_token=%s", s.ct);
    assert_int_equal(h_errcode(j), 0);
    assert_non_null(json_object_get(j, "mobile"));
    json_decref(j);
    assert_int_equal(h_stop(pid, SIGTERM), 0);
}

/* n concurrent GETs of url; returns the milliseconds until all ended. */
static long
concurrent_ms(const char *url, int n)
{
    CURLM *m = curl_multi_init();
    CURL *e[8];
    long t0 = h_now_ms(), status;
    int running = 0, i, done = 0;
    CURLMsg *msg;
    FILE *null = fopen("/dev/null", "w");

    assert_true(n <= 8);
    assert_non_null(null);
    for (i = 0; i < n; i++) {
        e[i] = curl_easy_init();
        curl_easy_setopt(e[i], CURLOPT_URL, url);
        curl_easy_setopt(e[i], CURLOPT_WRITEDATA, null);
        curl_easy_setopt(e[i], CURLOPT_TIMEOUT_MS, 10000L);
        curl_multi_add_handle(m, e[i]);
    }
    do {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
        while ((msg = curl_multi_info_read(m, &i)) != NULL)
            if (msg->msg == CURLMSG_DONE) {
                assert_int_equal(msg->data.result, CURLE_OK);
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE,
                                  &status);
                assert_int_equal(status, 200);
                done++;
            }
    } while (running);
    t0 = h_now_ms() - t0;
    assert_int_equal(done, n);
    for (i = 0; i < n; i++) {
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
    }
    curl_multi_cleanup(m);
    fclose(null);
    return t0;
}

static void
test_latency(void **state)
{
    static const char *const extra[] = {"--suite", SUITE_A ":" SECRET_A,
                                        "--latency", "250", NULL};
    char url[512];
    struct sess s;
    json_t *j;
    pid_t pid;
    int port = 0;
    long t0, t, st;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    post_ok("/__mock/latency", "{\"ms\":400}");
    j = h_jcall(Port, "GET", NULL, &st, "/__mock/latency");
    assert_int_equal(json_integer_value(json_object_get(j, "ms")), 400);
    json_decref(j);
    t0 = h_now_ms();
    j = data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00001");
    t = h_now_ms() - t0;
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
    if (t < 390)
        fail_msg("an API reply came after %ld ms", t);
    /* refusals wait too: every API call */
    t0 = h_now_ms();
    assert_int_equal(
        code_of(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00002"), 60011);
    assert_true(h_now_ms() - t0 >= 390);
    /* control calls do not */
    t0 = h_now_ms();
    j = h_jcall(Port, "GET", NULL, &st, "/__mock/latency");
    json_decref(j);
    assert_true(h_now_ms() - t0 < 390);
    /* the loop keeps serving: five at once take far less than five times */
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/cgi-bin/user/get?userid=u00001&"
             "access_token=%s",
             Port, s.ct);
    t = concurrent_ms(url, 5);
    if (t < 390 || t > 1500)
        fail_msg("five concurrent calls took %ld ms", t);
    post_ok("/__mock/latency", "{\"ms\":0}");
    t0 = h_now_ms();
    json_decref(data(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00001"));
    assert_true(h_now_ms() - t0 < 390);
    /* from the command line */
    pid = h_mock_start(Dir, extra, &port);
    assert_true(pid > 0);
    j = h_jcall(port, "GET", NULL, &st, "/__mock/latency");
    assert_int_equal(json_integer_value(json_object_get(j, "ms")), 250);
    json_decref(j);
    t0 = h_now_ms();
    j = h_jcall(port, "GET", NULL, &st, "/cgi-bin/tag/list?access_token=nope");
    assert_int_equal(h_errcode(j), 40014);
    json_decref(j);
    assert_true(h_now_ms() - t0 >= 240);
    assert_int_equal(h_stop(pid, SIGTERM), 0);
}

/* Every grant control refuses malformed input with 400 and changes
 * nothing. */
static void
test_grant_controls_refuse_hostile_input(void **state)
{
    static const struct {
        const char *path, *body;
    } bad[] = {
        {"/__mock/leaky", "{\"leaky\":1}"},
        {"/__mock/leaky", "{\"leaky\":\"true\"}"},
        {"/__mock/leaky", "{}"},
        {"/__mock/leaky", "{\"leaky\":true,\"corpid\":\"wwnope\"}"},
        {"/__mock/leaky", "{\"leaky\":true,\"corpid\":7}"},
        {"/__mock/leaky", "{\"leaky\":true,\"typo\":1}"},
        {"/__mock/leaky", "[true]"},
        {"/__mock/latency", "{\"ms\":-1}"},
        {"/__mock/latency", "{\"ms\":60001}"},
        {"/__mock/latency", "{\"ms\":1.5}"},
        {"/__mock/latency", "{\"ms\":\"10\"}"},
        {"/__mock/latency", "{\"ms\":99999999999999999999}"},
        {"/__mock/latency", "not json"},
        {"/__mock/member_auth_shape", "{\"shape\":\"name\"}"},
        {"/__mock/member_auth_shape", "{}"},
        {"/__mock/auth_mode", "{\"corpid\":\"" CORP1 "\",\"auth_mode\":2}"},
        {"/__mock/auth_mode", "{\"corpid\":\"" CORP1 "\"}"},
        {"/__mock/auth_mode", "{\"corpid\":\"wwnope\",\"auth_mode\":1}"},
        {"/__mock/auth_mode",
         "{\"corpid\":\"" CORP1 "\",\"auth_mode\":1,\"members\":[\"u99999\"]}"},
        {"/__mock/auth_mode",
         "{\"corpid\":\"" CORP1 "\",\"auth_mode\":1,\"members\":[5]}"},
        {"/__mock/auth_mode",
         "{\"corpid\":\"" CORP1 "\",\"auth_mode\":1,\"members\":\"u00001\"}"},
        {"/__mock/auth_mode",
         "{\"corpid\":\"" CORP1 "\",\"auth_mode\":0,\"members\":[\"u00001\"]}"},
        {"/__mock/app_tags", "{\"corpid\":\"" CORP1 "\",\"tagids\":[99]}"},
        {"/__mock/app_tags", "{\"corpid\":\"" CORP1 "\",\"tagids\":[0]}"},
        {"/__mock/app_tags", "{\"corpid\":\"" CORP1 "\",\"tagids\":[\"1\"]}"},
        {"/__mock/app_tags", "{\"corpid\":\"" CORP1 "\"}"},
        {"/__mock/admins", "{\"corpid\":\"" CORP1 "\",\"admins\":{}}"},
        {"/__mock/admins",
         "{\"corpid\":\"" CORP1 "\",\"admins\":[{\"userid\":\"u99999\"}]}"},
        {"/__mock/admins",
         "{\"corpid\":\"" CORP1 "\",\"admins\":[{\"userid\":\"u00002\","
         "\"auth_type\":2}]}"},
        {"/__mock/admins",
         "{\"corpid\":\"" CORP1 "\",\"admins\":[{\"userid\":\"u00002\","
         "\"role\":1}]}"},
        {"/__mock/admins",
         "{\"corpid\":\"" CORP1 "\",\"admins\":[\"u00002\"]}"},
        {"/__mock/admins", "{\"corpid\":\"" CORP1 "\",\"admins\":[{}]}"},
        {"/__mock/privilege", "{\"corpid\":\"" CORP1 "\",\"level\":9}"},
        {"/__mock/privilege", "{\"corpid\":\"" CORP1 "\",\"level\":\"3\"}"},
        {"/__mock/privilege", "{\"corpid\":\"" CORP1 "\",\"level\":-1}"},
        {"/__mock/permissions",
         "{\"corpid\":\"" CORP1 "\",\"app_permissions\":[1]}"},
    };
    char big[64 * 1024];
    struct sess s;
    size_t i, o;
    json_t *j, *a;
    long st;

    (void)state;
    sess_open(Port, SUITE_A, SECRET_A, CORP1, &s);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = h_jcall(Port, "POST", bad[i].body, &st, "%s", bad[i].path);
        if (st != 400)
            fail_msg("%s %s: HTTP %ld", bad[i].path, bad[i].body, st);
        assert_int_equal(h_errcode(j), -1);
        json_decref(j);
    }
    /* too many admins */
    o = (size_t)snprintf(big, sizeof(big),
                         "{\"corpid\":\"" CORP1 "\",\"admins\":[");
    for (i = 0; i < 101; i++)
        o += (size_t)snprintf(big + o, sizeof(big) - o,
                              "%s{\"userid\":\"u00001\"}", i ? "," : "");
    snprintf(big + o, sizeof(big) - o, "]}");
    j = h_jcall(Port, "POST", big, &st, "/__mock/admins");
    assert_int_equal(st, 400);
    json_decref(j);
    /* wrong methods */
    j = h_jcall(Port, "DELETE", NULL, &st, "/__mock/leaky");
    assert_int_equal(st, 400);
    json_decref(j);
    j = h_jcall(Port, "GET", NULL, &st, "/__mock/auth_mode");
    assert_int_equal(st, 400);
    json_decref(j);
    /* nothing changed */
    j = h_jcall(Port, "GET", NULL, &st, "/__mock/latency");
    assert_int_equal(json_integer_value(json_object_get(j, "ms")), 0);
    json_decref(j);
    j = h_jcall(Port, "GET", NULL, &st, "/__mock/leaky");
    assert_true(
        json_is_false(json_object_get(json_object_get(j, "leaky"), CORP1)));
    json_decref(j);
    a = auth_agent(&s, CORP1);
    assert_int_equal(json_integer_value(json_object_get(a, "auth_mode")), 0);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(a, "privilege"), "level")),
                     1);
    json_decref(a);
    j = data(&s, "POST", "{}", "/cgi-bin/agent/get_admin_list");
    assert_int_equal(json_array_size(json_object_get(j, "admin")), 1);
    json_decref(j);
    j = data(&s, "GET", NULL, "/cgi-bin/tag/list");
    assert_int_equal(json_array_size(json_object_get(j, "taglist")), 0);
    json_decref(j);
    assert_int_equal(
        code_of(&s, "GET", NULL, "/cgi-bin/user/get?userid=u00002"), 60011);
}

/* getuserdetail3rd hands over what the corp granted, gender "0" without. */
static void
test_userdetail_needs_sensitive_permissions(void **state)
{
    char sat[128], url[1024], code[128], body[256], *loc = NULL, *out = NULL;
    const char *p;
    json_t *j;
    long st;
    int round;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    post_ok("/__mock/oauth_user",
            "{\"corpid\":\"" CORP1 "\",\"userid\":\"u00001\"}");
    for (round = 0; round < 2; round++) {
        if (round == 1)
            post_ok("/__mock/permissions",
                    "{\"corpid\":\"" CORP1 "\",\"app_permissions\":"
                    "[\"contact:base:base\",\"contact:sensitive:gender\","
                    "\"contact:sensitive:avatar\"]}");
        snprintf(url, sizeof(url),
                 "http://127.0.0.1:%d/connect/oauth2/authorize?appid=" SUITE_A
                 "&redirect_uri=https%%3A%%2F%%2Fapp.example.com%%2Fcb&"
                 "response_type=code&scope=snsapi_privateinfo&state=s1",
                 Port);
        assert_int_equal(h_http_loc(url, &out, &loc), 302);
        free(out);
        p = strstr(loc, "code=");
        assert_non_null(p);
        p += 5;
        assert_true(strcspn(p, "&") < sizeof(code));
        memcpy(code, p, strcspn(p, "&"));
        code[strcspn(p, "&")] = '\0';
        free(loc);
        j = h_jcall(
            Port, "GET", NULL, &st,
            "/cgi-bin/service/auth/getuserinfo3rd?suite_access_token=%s&"
            "code=%s",
            sat, code);
        snprintf(body, sizeof(body), "{\"user_ticket\":\"%s\"}",
                 h_need_str(j, "user_ticket"));
        json_decref(j);
        j = h_jcall(
            Port, "POST", body, &st,
            "/cgi-bin/service/auth/getuserdetail3rd?suite_access_token=%s",
            sat);
        assert_int_equal(h_errcode(j), 0);
        assert_string_equal(h_need_str(j, "name"), "u00001");
        if (round == 0) {
            assert_string_equal(h_need_str(j, "gender"), "0");
            assert_null(json_object_get(j, "avatar"));
            assert_null(json_object_get(j, "qr_code"));
        } else {
            assert_string_not_equal(h_need_str(j, "gender"), "0");
            assert_non_null(json_object_get(j, "avatar"));
            assert_null(json_object_get(j, "qr_code"));
        }
        json_decref(j);
    }
    post_ok("/__mock/oauth_user", "{}");
}

/*---- determinism and command line ----*/

static char *
user_list_bytes(int port)
{
    struct sess s;
    char *out = NULL;

    sess_open(port, SUITE_A, SECRET_A, CORP1, &s);
    assert_int_equal(h_rawf(port, "GET", NULL, &out,
                            "/cgi-bin/user/list?access_token=%s&department_id=1"
                            "&fetch_child=1",
                            s.ct),
                     200);
    return out;
}

static void
test_same_seed_same_bytes(void **state)
{
    static const char *const a[] = {"--suite",   SUITE_A ":" SECRET_A,
                                    "--seed",    "42",
                                    "--members", "60",
                                    "--leaky",   NULL};
    static const char *const b[] = {"--suite",   SUITE_A ":" SECRET_A,
                                    "--seed",    "43",
                                    "--members", "60",
                                    "--leaky",   NULL};
    char *one, *two, *three;
    pid_t p1, p2, p3;
    int port1, port2, port3;

    (void)state;
    p1 = h_mock_start(Dir, a, &port1);
    p2 = h_mock_start(Dir, a, &port2);
    p3 = h_mock_start(Dir, b, &port3);
    assert_true(p1 > 0 && p2 > 0 && p3 > 0);
    one = user_list_bytes(port1);
    two = user_list_bytes(port2);
    three = user_list_bytes(port3);
    assert_true(strlen(one) > 1000);
    assert_string_equal(one, two);
    assert_string_not_equal(one, three);
    free(one);
    free(two);
    free(three);
    assert_int_equal(h_stop(p1, SIGTERM), 0);
    assert_int_equal(h_stop(p2, SIGINT), 0);
    assert_int_equal(h_stop(p3, SIGTERM), 0);
}

static void
test_command_line(void **state)
{
    static const char *const help[] = {"bin/mock-wecom", "serve", "--help",
                                       NULL};
    static const char *const nosuite[] = {"bin/mock-wecom", "serve", NULL};
    static const char *const badsize[] = {
        "bin/mock-wecom", "serve", "--suite", "a:b", "--members", "2", NULL};
    static const char *const badlisten[] = {
        "bin/mock-wecom", "serve", "--suite", "a:b", "--listen", "nope", NULL};
    static const char *const top[] = {"bin/mock-wecom", "--help", NULL};
    static const char *const badlat[] = {
        "bin/mock-wecom", "serve", "--suite", "a:b",
        "--latency",      "60001", NULL};
    static const char *const neglat[] = {
        "bin/mock-wecom", "serve", "--suite", "a:b", "--latency", "-5", NULL};
    char *out = NULL;

    (void)state;
    assert_int_equal(h_run(help, &out), 0);
    assert_non_null(strstr(out, "Strict by default"));
    assert_non_null(strstr(out, "does not apply"));
    assert_non_null(strstr(out, "/__mock/faults"));
    assert_non_null(strstr(out, "--leaky"));
    assert_non_null(strstr(out, "--latency MS"));
    assert_non_null(strstr(out, "/__mock/leaky"));
    assert_non_null(strstr(out, "/__mock/auth_mode"));
    assert_non_null(strstr(out, "/__mock/member_auth_shape"));
    free(out);
    assert_int_equal(h_run(nosuite, &out), 2);
    free(out);
    assert_int_equal(h_run(badsize, &out), 2);
    free(out);
    assert_int_equal(h_run(badlisten, &out), 2);
    free(out);
    assert_int_equal(h_run(badlat, &out), 2);
    free(out);
    assert_int_equal(h_run(neglat, &out), 2);
    free(out);
    assert_int_equal(h_run(top, &out), 0);
    assert_non_null(strstr(out, "serve"));
    free(out);
}

static void
test_suites_from_broker_config(void **state)
{
    char conf[400];
    const char *extra[] = {"-c", conf, NULL};
    char tk[128];
    FILE *f;
    json_t *j;
    pid_t pid;
    int port;

    (void)state;
    snprintf(conf, sizeof(conf), "%s/broker.conf", Dir);
    f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f, "[broker]\n"
               "[suite wwconfsuite]\n"
               "token = QDG6eK3hXn2Ls8bVtEo\n"
               "encoding_aes_key = "
               "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2A\n"
               "secret = conf-secret\n");
    fclose(f);
    pid = h_mock_start(Dir, extra, &port);
    unlink(conf);
    assert_true(pid > 0);
    ticket(port, "wwconfsuite", tk, sizeof(tk));
    j = suite_token_call(port, "wwconfsuite", "conf-secret", tk);
    assert_null(json_object_get(j, "errcode"));
    json_decref(j);
    assert_int_equal(h_stop(pid, SIGTERM), 0);
}

#define S(f) cmocka_unit_test_setup(f, reset)
#define L(f) cmocka_unit_test_setup(f, leaky)
#define E(f) cmocka_unit_test_setup(f, edit)
#define A(f) cmocka_unit_test_setup(f, everything)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        S(test_ticket_to_suite_token_without_errcode),
        S(test_suite_token_wrong_secret),
        S(test_suite_token_unknown_suite),
        S(test_suite_token_old_ticket),
        S(test_permanent_code_v1_shape),
        S(test_permanent_code_second_exchange),
        S(test_auth_code_of_other_suite),
        S(test_permanent_code_v2_shape),
        S(test_get_auth_info_privilege),
        S(test_get_auth_info_foreign_code),
        S(test_corp_token_without_errcode),
        S(test_pre_auth_and_session_info),
        S(test_token_missing),
        S(test_token_unknown),
        S(test_token_expired),
        L(test_data_paths_answer_with_note),
        A(test_data_paths_answer_with_note),
        L(test_user_has_every_documented_field),
        L(test_user_list_has_members_outside_range),
        L(test_unknown_ids),
        E(test_unknown_ids),
        S(test_unknown_path_404),
        L(test_list_id_pages_cover_every_row),
        L(test_batch_and_groupchat_pagination),
        A(test_batch_and_groupchat_pagination),
        S(test_fault_delay),
        S(test_fault_status_keeps_body),
        S(test_fault_errcode_count),
        L(test_fault_malformed_nonjson_empty),
        S(test_fault_huge),
        S(test_fault_drop_reply_consumes_code),
        S(test_fault_bad_requests_refused),
        S(test_invalidate),
        S(test_privilege_change_visible),
        S(test_permissions_change_visible),
        S(test_cancel),
        S(test_requests_recorded_and_masked),
        S(test_corps_listed),
        S(test_install_refuses_unknown),
        S(test_strict_is_the_default),
        S(test_list_id_needs_edit),
        S(test_permissions_gate_the_apis),
        S(test_range_refusals),
        S(test_groupchat_list_too_wide),
        S(test_departments_in_range_or_all_with_corp_arch),
        S(test_read_only_user_shape),
        E(test_contacts_app_user_shape),
        S(test_customer_shape),
        S(test_fetch_child_is_gone),
        S(test_member_authorization),
        S(test_admin_list),
        S(test_change_app_admin_callback),
        S(test_leaky_per_corp_and_global),
        S(test_leaky_flag),
        S(test_latency),
        S(test_grant_controls_refuse_hostile_input),
        S(test_userdetail_needs_sensitive_permissions),
        S(test_same_seed_same_bytes),
        S(test_command_line),
        S(test_suites_from_broker_config),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
