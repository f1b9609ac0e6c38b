/*
 * mock-wecom serve, OAuth side: pre-auth codes and session info, the
 * install and authorize pages (302 with single-use codes), getuserinfo3rd
 * in both shapes, getuserdetail3rd and user_ticket expiry, and the
 * control endpoints that pick who approves or logs in.
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
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"
#include "simclient.h"

#define SUITE_A  "wwsuiteA"
#define SECRET_A "secretA"
#define SUITE_B  "wwsuiteB"
#define SECRET_B "secretB"
#define CORP1    "wwmockcorp0001"
#define CORP2    "wwmockcorp0002"
#define CB       "http://app.example/cb"
#define CB_ENC   "http%3A%2F%2Fapp.example%2Fcb"

static char Dir[256];
static pid_t Pid;
static int Port;

/*---- helpers ----*/

/* The object has exactly these keys (NULL-terminated). */
static void
exact_keys(const json_t *j, const char *const *keys)
{
    size_t n = 0;

    for (; keys[n] != NULL; n++)
        if (json_object_get(j, keys[n]) == NULL)
            fail_msg("missing key %s", keys[n]);
    assert_int_equal(json_object_size(j), n);
}

static void
post_ok(int port, const char *path, const char *body)
{
    long st;
    json_t *j = h_jcall(port, "POST", body, &st, "%s", path);

    if (st != 200)
        fail_msg("%s %s: HTTP %ld", path, body, st);
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
}

static void
post_refused(int port, const char *path, const char *body)
{
    long st;
    json_t *j = h_jcall(port, "POST", body, &st, "%s", path);

    if (st != 400)
        fail_msg("%s %s: HTTP %ld, want 400", path, body, st);
    json_decref(j);
}

static void
suite_token(int port, const char *suite, const char *secret, char *out,
            size_t cap)
{
    json_t *j, *b;
    char *body;
    char tk[128];
    long st;

    j = h_jcall(port, "GET", NULL, &st, "/__mock/suite_ticket?suite_id=%s",
                suite);
    assert_int_equal(st, 200);
    h_copy_str(tk, sizeof(tk), h_need_str(j, "suite_ticket"));
    json_decref(j);
    b = json_pack("{s:s,s:s,s:s}", "suite_id", suite, "suite_secret", secret,
                  "suite_ticket", tk);
    body = json_dumps(b, JSON_COMPACT);
    j = h_jcall(port, "POST", body, NULL, "/cgi-bin/service/get_suite_token");
    free(body);
    json_decref(b);
    h_copy_str(out, cap, h_need_str(j, "suite_access_token"));
    json_decref(j);
}

static void
pre_auth(int port, const char *sat, char *out, size_t cap)
{
    long st;
    json_t *j = h_jcall(
        port, "GET", NULL, &st,
        "/cgi-bin/service/get_pre_auth_code?suite_access_token=%s", sat);

    assert_int_equal(st, 200);
    assert_int_equal(h_errcode(j), 0);
    h_copy_str(out, cap, h_need_str(j, "pre_auth_code"));
    json_decref(j);
}

struct page {
    long status;
    char location[4096];
};

static size_t
on_header(char *buf, size_t size, size_t n, void *arg)
{
    struct page *p = arg;
    size_t len = size * n, v;

    if (len > 9 && strncasecmp(buf, "Location:", 9) == 0) {
        for (v = 9; v < len && buf[v] == ' '; v++)
            ;
        while (len > v && (buf[len - 1] == '\r' || buf[len - 1] == '\n'))
            len--;
        if (len - v < sizeof(p->location)) {
            memcpy(p->location, buf + v, len - v);
            p->location[len - v] = '\0';
        }
    }
    return size * n;
}

static size_t
discard(char *buf, size_t size, size_t n, void *arg)
{
    (void)buf;
    (void)arg;
    return size * n;
}

/* A browser page, redirects not followed; the Location is kept. */
static void __attribute__((format(printf, 4, 5)))
page_call(int port, const char *method, struct page *p, const char *fmt, ...)
{
    va_list ap;
    CURL *c = curl_easy_init();
    char pq[4096], u[4200];

    memset(p, 0, sizeof(*p));
    p->status = -1;
    assert_non_null(c);
    va_start(ap, fmt);
    vsnprintf(pq, sizeof(pq), fmt, ap);
    va_end(ap);
    snprintf(u, sizeof(u), "http://127.0.0.1:%d%s", port, pq);
    curl_easy_setopt(c, CURLOPT_URL, u);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, p);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &p->status);
    curl_easy_cleanup(c);
}

/* The value of name in the query of url; 0 when found. */
static int
loc_param(const char *url, const char *name, char *out, size_t cap)
{
    const char *q = strchr(url, '?');
    size_t nl = strlen(name);

    while (q != NULL) {
        const char *p = q + 1, *end = p + strcspn(p, "&");

        if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t vl = (size_t)(end - p - nl - 1);

            if (vl >= cap)
                return -1;
            memcpy(out, p + nl + 1, vl);
            out[vl] = '\0';
            return 0;
        }
        q = *end ? end : NULL;
    }
    return -1;
}

/* Install through the page: the auth code from the 302. */
static void
install_page(int port, const char *suite, const char *sat, const char *state,
             char *code, size_t cap)
{
    char pre[128], got[256];
    struct page p;

    pre_auth(port, sat, pre, sizeof(pre));
    page_call(port, "GET", &p,
              "/3rdapp/install?suite_id=%s&pre_auth_code=%s&redirect_uri="
              "%s&state=%s",
              suite, pre, CB_ENC, state);
    assert_int_equal(p.status, 302);
    assert_int_equal(strncmp(p.location, CB "?auth_code=", strlen(CB) + 11), 0);
    assert_int_equal(loc_param(p.location, "auth_code", code, cap), 0);
    assert_true(strlen(code) >= 64);
    assert_int_equal(loc_param(p.location, "expires_in", got, sizeof(got)), 0);
    assert_string_equal(got, "600");
    assert_int_equal(loc_param(p.location, "state", got, sizeof(got)), 0);
    assert_string_equal(got, state);
}

/* The corpid a v1 exchange of code answers, or errcode as text. */
static void
exchange_corp(int port, const char *sat, const char *code, char *out,
              size_t cap)
{
    char body[512];
    json_t *j;

    snprintf(body, sizeof(body), "{\"auth_code\":\"%s\"}", code);
    j = h_jcall(port, "POST", body, NULL,
                "/cgi-bin/service/get_permanent_code?suite_access_token=%s",
                sat);
    if (h_errcode(j) == 0)
        h_copy_str(out, cap,
                   h_need_str(json_object_get(j, "auth_corp_info"), "corpid"));
    else
        snprintf(out, cap, "%ld", h_errcode(j));
    json_decref(j);
}

/* Log in through the authorize page: the code from the 302. */
static void
login(int port, const char *suite, const char *scope, char *code, size_t cap)
{
    char got[256];
    struct page p;

    page_call(port, "GET", &p,
              "/connect/oauth2/authorize?appid=%s&redirect_uri=%s&"
              "response_type=code&scope=%s&state=st1",
              suite, CB_ENC, scope);
    assert_int_equal(p.status, 302);
    assert_int_equal(strncmp(p.location, CB "?code=", strlen(CB) + 6), 0);
    assert_int_equal(loc_param(p.location, "code", code, cap), 0);
    assert_true(strlen(code) >= 32);
    assert_int_equal(loc_param(p.location, "state", got, sizeof(got)), 0);
    assert_string_equal(got, "st1");
}

static json_t *
userinfo(int port, const char *path, const char *sat, const char *code)
{
    long st;
    json_t *j = h_jcall(port, "GET", NULL, &st,
                        "%s?suite_access_token=%s&code=%s", path, sat, code);

    assert_int_equal(st, 200);
    return j;
}

#define NEW_PATH "/cgi-bin/service/auth/getuserinfo3rd"
#define OLD_PATH "/cgi-bin/service/getuserinfo3rd"

static json_t *
userdetail(int port, const char *sat, const char *ticket)
{
    char body[256];

    snprintf(body, sizeof(body), "{\"user_ticket\":\"%s\"}", ticket);
    return h_jcall(port, "POST", body, NULL,
                   "/cgi-bin/service/auth/getuserdetail3rd?"
                   "suite_access_token=%s",
                   sat);
}

/* user/get of userid in corpid, read with a corp token minted directly. */
static json_t *
user_get(const char *corpid, const char *userid)
{
    char ct[128];
    json_t *j;

    j = h_jcall(Port, "GET", NULL, NULL,
                "/__mock/corp_token?suite_id=%s&corpid=%s", SUITE_A, corpid);
    h_copy_str(ct, sizeof(ct), h_need_str(j, "access_token"));
    json_decref(j);
    j = h_jcall(Port, "GET", NULL, NULL,
                "/cgi-bin/user/get?access_token=%s&userid=%s", ct, userid);
    assert_int_equal(h_errcode(j), 0);
    return j;
}

static void
same_member_field(const json_t *a, const json_t *b, const char *key)
{
    assert_non_null(json_object_get(b, key));
    if (!json_equal(json_object_get(a, key), json_object_get(b, key)))
        fail_msg("%s differs from user/get", key);
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
    snprintf(Dir, sizeof(Dir), "/tmp/wbmockoauth.XXXXXX");
    if (mkdtemp(Dir) == NULL)
        return -1;
    Pid = h_mock_start(Dir, extra, &Port);
    return Pid > 0 ? 0 : -1;
}

static int
teardown(void **state)
{
    char f[400];
    int i, rc = 0;

    (void)state;
    /* a clean stop: under the sanitizers, leaks fail the exit status */
    if (Pid > 0 && h_stop(Pid, SIGTERM) != 0)
        rc = -1;
    if (getenv("KEEP_TEST_DIR") == NULL) {
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

/* Each test starts from the default choices. */
static int
reset(void **state)
{
    (void)state;
    post_ok(Port, "/__mock/oauth_corp", "{}");
    post_ok(Port, "/__mock/oauth_user", "{}");
    post_ok(Port, "/__mock/oauth_shape", "{\"shape\":\"new\"}");
    post_ok(Port, "/__mock/leaky", "{\"leaky\":false}");
    return 0;
}

/*---- pre-auth code and session info ----*/

static void
test_pre_auth_code_shape(void **state)
{
    static const char *const keys[] = {"errcode", "errmsg", "pre_auth_code",
                                       "expires_in", NULL};
    char sat[128];
    json_t *j;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    j = h_jcall(Port, "GET", NULL, NULL,
                "/cgi-bin/service/get_pre_auth_code?suite_access_token=%s",
                sat);
    exact_keys(j, keys);
    assert_int_equal(h_errcode(j), 0);
    assert_string_equal(h_need_str(j, "errmsg"), "ok");
    assert_true(strlen(h_need_str(j, "pre_auth_code")) >= 32);
    assert_int_equal(json_integer_value(json_object_get(j, "expires_in")),
                     1200);
    json_decref(j);
}

static void
test_pre_auth_code_bad_token(void **state)
{
    json_t *j;

    (void)state;
    j = h_jcall(Port, "GET", NULL, NULL,
                "/cgi-bin/service/get_pre_auth_code?suite_access_token=nope");
    assert_int_equal(h_errcode(j), 40082);
    json_decref(j);
    j = h_jcall(Port, "GET", NULL, NULL, "/cgi-bin/service/get_pre_auth_code");
    assert_int_equal(h_errcode(j), 41001);
    json_decref(j);
}

static json_t *
session_info(const char *sat, const char *body)
{
    return h_jcall(Port, "POST", body, NULL,
                   "/cgi-bin/service/set_session_info?suite_access_token=%s",
                   sat);
}

/* The auth_type recorded on pre (-1: null). */
static long
recorded_auth_type(const char *pre)
{
    long st, v;
    json_t *j = h_jcall(Port, "GET", NULL, &st,
                        "/__mock/pre_auth_code?pre_auth_code=%s", pre);
    const json_t *at = json_object_get(j, "auth_type");

    assert_int_equal(st, 200);
    assert_string_equal(h_need_str(j, "suite_id"), SUITE_A);
    assert_non_null(at);
    v = json_is_null(at) ? -1 : (long)json_integer_value(at);
    json_decref(j);
    return v;
}

static void
test_session_info_records_auth_type(void **state)
{
    char sat[128], pre[128], pre2[128], body[512];
    json_t *j;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    pre_auth(Port, sat, pre, sizeof(pre));
    pre_auth(Port, sat, pre2, sizeof(pre2));
    assert_int_equal(recorded_auth_type(pre), -1);
    snprintf(body, sizeof(body),
             "{\"pre_auth_code\":\"%s\",\"session_info\":{\"auth_type\":1}}",
             pre);
    j = session_info(sat, body);
    assert_int_equal(h_errcode(j), 0);
    assert_string_equal(h_need_str(j, "errmsg"), "ok");
    json_decref(j);
    assert_int_equal(recorded_auth_type(pre), 1);
    /* per code: the other one is untouched */
    assert_int_equal(recorded_auth_type(pre2), -1);
    snprintf(body, sizeof(body),
             "{\"pre_auth_code\":\"%s\",\"session_info\":{\"auth_type\":0}}",
             pre);
    j = session_info(sat, body);
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
    assert_int_equal(recorded_auth_type(pre), 0);
    /* without session_info: formal (0), WeCom's default */
    snprintf(body, sizeof(body), "{\"pre_auth_code\":\"%s\"}", pre2);
    j = session_info(sat, body);
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
    assert_int_equal(recorded_auth_type(pre2), 0);
}

static void
test_session_info_refusals(void **state)
{
    char sat[128], satb[128], pre[128], body[512];
    json_t *j;
    long st;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    suite_token(Port, SUITE_B, SECRET_B, satb, sizeof(satb));
    pre_auth(Port, sat, pre, sizeof(pre));
    snprintf(body, sizeof(body),
             "{\"pre_auth_code\":\"%s\",\"session_info\":{\"auth_type\":2}}",
             pre);
    j = session_info(sat, body);
    assert_int_equal(h_errcode(j), 40058);
    json_decref(j);
    snprintf(body, sizeof(body),
             "{\"pre_auth_code\":\"%s\",\"session_info\":[1]}", pre);
    j = session_info(sat, body);
    assert_int_equal(h_errcode(j), 40058);
    json_decref(j);
    assert_int_equal(recorded_auth_type(pre), -1);
    /* another suite's pre-auth code */
    snprintf(body, sizeof(body),
             "{\"pre_auth_code\":\"%s\",\"session_info\":{\"auth_type\":1}}",
             pre);
    j = session_info(satb, body);
    assert_int_equal(h_errcode(j), 40077);
    json_decref(j);
    j = session_info(sat, "{\"pre_auth_code\":\"nope\"}");
    assert_int_equal(h_errcode(j), 40077);
    json_decref(j);
    j = h_jcall(Port, "GET", NULL, &st,
                "/__mock/pre_auth_code?pre_auth_code=x");
    assert_int_equal(st, 404);
    json_decref(j);
}

/*---- install page ----*/

static void
test_install_page_default_corp(void **state)
{
    char sat[128], code[256], corp[64];

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    install_page(Port, SUITE_A, sat, "s0Ab9", code, sizeof(code));
    exchange_corp(Port, sat, code, corp, sizeof(corp));
    assert_string_equal(corp, CORP1);
}

static void
test_install_page_chosen_corp(void **state)
{
    char sat[128], code[256], corp[64];

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    post_ok(Port, "/__mock/oauth_corp", "{\"corpid\":\"" CORP2 "\"}");
    install_page(Port, SUITE_A, sat, "abc", code, sizeof(code));
    exchange_corp(Port, sat, code, corp, sizeof(corp));
    assert_string_equal(corp, CORP2);
    post_ok(Port, "/__mock/oauth_corp", "{}");
    install_page(Port, SUITE_A, sat, "abc", code, sizeof(code));
    exchange_corp(Port, sat, code, corp, sizeof(corp));
    assert_string_equal(corp, CORP1);
    post_refused(Port, "/__mock/oauth_corp", "{\"corpid\":\"wwnope\"}");
    post_refused(Port, "/__mock/oauth_corp", "{\"corp\":\"" CORP1 "\"}");
}

static void
test_install_page_code_single_use(void **state)
{
    char sat[128], code[256], corp[64];

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    install_page(Port, SUITE_A, sat, "once", code, sizeof(code));
    exchange_corp(Port, sat, code, corp, sizeof(corp));
    assert_string_equal(corp, CORP1);
    exchange_corp(Port, sat, code, corp, sizeof(corp));
    assert_string_equal(corp, "40078");
}

static void
test_install_page_redirect_with_query(void **state)
{
    char sat[128], pre[128], code[256];
    struct page p;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    pre_auth(Port, sat, pre, sizeof(pre));
    page_call(Port, "GET", &p,
              "/3rdapp/install?suite_id=%s&pre_auth_code=%s&redirect_uri="
              "%s%%3Fx%%3D1&state=q1",
              SUITE_A, pre, CB_ENC);
    assert_int_equal(p.status, 302);
    assert_int_equal(strncmp(p.location, CB "?x=1&auth_code=", strlen(CB) + 15),
                     0);
    assert_int_equal(loc_param(p.location, "auth_code", code, sizeof(code)), 0);
}

static void
test_install_page_refusals(void **state)
{
    char sat[128], satb[128], pre[128], preb[128], big[200];
    struct page p;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    suite_token(Port, SUITE_B, SECRET_B, satb, sizeof(satb));
    pre_auth(Port, sat, pre, sizeof(pre));
    pre_auth(Port, satb, preb, sizeof(preb));
    /* unknown pre_auth_code */
    page_call(Port, "GET", &p,
              "/3rdapp/install?suite_id=%s&pre_auth_code=nope&"
              "redirect_uri=%s&state=a",
              SUITE_A, CB_ENC);
    assert_int_equal(p.status, 400);
    assert_string_equal(p.location, "");
    /* missing pre_auth_code */
    page_call(Port, "GET", &p, "/3rdapp/install?suite_id=%s&redirect_uri=%s",
              SUITE_A, CB_ENC);
    assert_int_equal(p.status, 400);
    /* another suite's pre_auth_code */
    page_call(Port, "GET", &p,
              "/3rdapp/install?suite_id=%s&pre_auth_code=%s&"
              "redirect_uri=%s&state=a",
              SUITE_A, preb, CB_ENC);
    assert_int_equal(p.status, 400);
    /* unknown suite */
    page_call(Port, "GET", &p,
              "/3rdapp/install?suite_id=wwnope&pre_auth_code=%s&"
              "redirect_uri=%s&state=a",
              pre, CB_ENC);
    assert_int_equal(p.status, 400);
    /* redirect_uri missing, not http(s), with a fragment */
    page_call(Port, "GET", &p,
              "/3rdapp/install?suite_id=%s&pre_auth_code=%s&state=a", SUITE_A,
              pre);
    assert_int_equal(p.status, 400);
    page_call(Port, "GET", &p,
              "/3rdapp/install?suite_id=%s&pre_auth_code=%s&"
              "redirect_uri=javascript%%3Aalert(1)&state=a",
              SUITE_A, pre);
    assert_int_equal(p.status, 400);
    page_call(Port, "GET", &p,
              "/3rdapp/install?suite_id=%s&pre_auth_code=%s&"
              "redirect_uri=%s%%23frag&state=a",
              SUITE_A, pre, CB_ENC);
    assert_int_equal(p.status, 400);
    /* state outside WeCom's [A-Za-z0-9]{0,128} */
    page_call(Port, "GET", &p,
              "/3rdapp/install?suite_id=%s&pre_auth_code=%s&"
              "redirect_uri=%s&state=a-b",
              SUITE_A, pre, CB_ENC);
    assert_int_equal(p.status, 400);
    memset(big, 'x', 129);
    big[129] = '\0';
    page_call(Port, "GET", &p,
              "/3rdapp/install?suite_id=%s&pre_auth_code=%s&"
              "redirect_uri=%s&state=%s",
              SUITE_A, pre, CB_ENC, big);
    assert_int_equal(p.status, 400);
    big[128] = '\0';
    page_call(Port, "GET", &p,
              "/3rdapp/install?suite_id=%s&pre_auth_code=%s&"
              "redirect_uri=%s&state=%s",
              SUITE_A, pre, CB_ENC, big);
    assert_int_equal(p.status, 302);
    page_call(Port, "POST", &p,
              "/3rdapp/install?suite_id=%s&pre_auth_code=%s&"
              "redirect_uri=%s&state=a",
              SUITE_A, pre, CB_ENC);
    assert_int_equal(p.status, 405);
}

/*---- authorize page and getuserinfo3rd ----*/

static void
test_authorize_default_member_base(void **state)
{
    static const char *const keys[] = {"errcode", "errmsg",      "corpid",
                                       "userid",  "open_userid", NULL};
    char sat[128], code[256];
    json_t *j, *u;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    login(Port, SUITE_A, "snsapi_base", code, sizeof(code));
    j = userinfo(Port, NEW_PATH, sat, code);
    /* snsapi_base: identity only, no user_ticket */
    exact_keys(j, keys);
    assert_int_equal(h_errcode(j), 0);
    assert_string_equal(h_need_str(j, "errmsg"), "ok");
    assert_string_equal(h_need_str(j, "corpid"), CORP1);
    assert_string_equal(h_need_str(j, "userid"), "u00001");
    u = user_get(CORP1, "u00001");
    same_member_field(u, j, "open_userid");
    json_decref(u);
    json_decref(j);
}

static void
test_authorize_privateinfo_new_shape(void **state)
{
    static const char *const keys[] = {
        "errcode",     "errmsg",     "corpid",      "userid",
        "user_ticket", "expires_in", "open_userid", NULL};
    char sat[128], code[256];
    json_t *j;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    post_ok(Port, "/__mock/oauth_user",
            "{\"corpid\":\"" CORP2 "\",\"userid\":\"u00003\"}");
    login(Port, SUITE_A, "snsapi_privateinfo", code, sizeof(code));
    j = userinfo(Port, NEW_PATH, sat, code);
    exact_keys(j, keys);
    assert_string_equal(h_need_str(j, "corpid"), CORP2);
    assert_string_equal(h_need_str(j, "userid"), "u00003");
    assert_true(strlen(h_need_str(j, "user_ticket")) >= 32);
    assert_int_equal(json_integer_value(json_object_get(j, "expires_in")),
                     1800);
    json_decref(j);
}

static void
test_authorize_non_member(void **state)
{
    static const char *const keys[] = {"errcode", "errmsg", "openid", NULL};
    static const char *const old[] = {"errcode", "errmsg", "OpenId", "DeviceId",
                                      NULL};
    char sat[128], code[256];
    json_t *j;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    post_ok(Port, "/__mock/oauth_user", "{\"openid\":\"oMockVisitor_1\"}");
    login(Port, SUITE_A, "snsapi_privateinfo", code, sizeof(code));
    j = userinfo(Port, NEW_PATH, sat, code);
    exact_keys(j, keys);
    assert_int_equal(h_errcode(j), 0);
    assert_string_equal(h_need_str(j, "openid"), "oMockVisitor_1");
    json_decref(j);
    login(Port, SUITE_A, "snsapi_base", code, sizeof(code));
    j = userinfo(Port, OLD_PATH, sat, code);
    exact_keys(j, old);
    assert_string_equal(h_need_str(j, "OpenId"), "oMockVisitor_1");
    json_decref(j);
}

static void
test_old_path_old_shape(void **state)
{
    static const char *const priv[] = {"errcode",    "errmsg",   "CorpId",
                                       "UserId",     "DeviceId", "user_ticket",
                                       "expires_in", NULL};
    static const char *const base[] = {"errcode", "errmsg",   "CorpId",
                                       "UserId",  "DeviceId", NULL};
    char sat[128], code[256];
    json_t *j;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    post_ok(Port, "/__mock/oauth_user",
            "{\"corpid\":\"" CORP1 "\",\"userid\":\"u00002\"}");
    login(Port, SUITE_A, "snsapi_privateinfo", code, sizeof(code));
    j = userinfo(Port, OLD_PATH, sat, code);
    exact_keys(j, priv);
    assert_int_equal(h_errcode(j), 0);
    assert_string_equal(h_need_str(j, "CorpId"), CORP1);
    assert_string_equal(h_need_str(j, "UserId"), "u00002");
    json_decref(j);
    login(Port, SUITE_A, "snsapi_base", code, sizeof(code));
    j = userinfo(Port, OLD_PATH, sat, code);
    exact_keys(j, base);
    json_decref(j);
}

static void
test_oauth_shape_switch(void **state)
{
    char sat[128], code[256];
    json_t *j;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    post_ok(Port, "/__mock/oauth_shape", "{\"shape\":\"old\"}");
    login(Port, SUITE_A, "snsapi_privateinfo", code, sizeof(code));
    j = userinfo(Port, NEW_PATH, sat, code);
    assert_string_equal(h_need_str(j, "UserId"), "u00001");
    assert_string_equal(h_need_str(j, "CorpId"), CORP1);
    assert_non_null(json_object_get(j, "user_ticket"));
    assert_null(json_object_get(j, "userid"));
    assert_null(json_object_get(j, "open_userid"));
    json_decref(j);
    post_ok(Port, "/__mock/oauth_shape", "{\"shape\":\"new\"}");
    login(Port, SUITE_A, "snsapi_base", code, sizeof(code));
    j = userinfo(Port, NEW_PATH, sat, code);
    assert_string_equal(h_need_str(j, "userid"), "u00001");
    assert_null(json_object_get(j, "UserId"));
    json_decref(j);
    post_refused(Port, "/__mock/oauth_shape", "{\"shape\":\"older\"}");
    post_refused(Port, "/__mock/oauth_shape", "{}");
}

static void
test_code_single_use(void **state)
{
    char sat[128], code[256];
    json_t *j;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    login(Port, SUITE_A, "snsapi_base", code, sizeof(code));
    j = userinfo(Port, NEW_PATH, sat, code);
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
    j = userinfo(Port, NEW_PATH, sat, code);
    assert_int_equal(h_errcode(j), 40029);
    json_decref(j);
    /* the old path shares the codes */
    j = userinfo(Port, OLD_PATH, sat, code);
    assert_int_equal(h_errcode(j), 40029);
    json_decref(j);
}

static void
test_code_unknown_foreign_missing(void **state)
{
    char sat[128], satb[128], code[256];
    json_t *j;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    suite_token(Port, SUITE_B, SECRET_B, satb, sizeof(satb));
    j = userinfo(Port, NEW_PATH, sat, "nope");
    assert_int_equal(h_errcode(j), 40029);
    json_decref(j);
    j = h_jcall(Port, "GET", NULL, NULL, NEW_PATH "?suite_access_token=%s",
                sat);
    assert_int_equal(h_errcode(j), 40029);
    json_decref(j);
    /* a code for suite A is not suite B's */
    login(Port, SUITE_A, "snsapi_base", code, sizeof(code));
    j = userinfo(Port, NEW_PATH, satb, code);
    assert_int_equal(h_errcode(j), 40029);
    json_decref(j);
    login(Port, SUITE_B, "snsapi_base", code, sizeof(code));
    j = userinfo(Port, NEW_PATH, satb, code);
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
}

static void
test_userinfo_bad_token(void **state)
{
    char code[256];
    json_t *j;

    (void)state;
    login(Port, SUITE_A, "snsapi_base", code, sizeof(code));
    j = userinfo(Port, NEW_PATH, "nope", code);
    assert_int_equal(h_errcode(j), 40082);
    json_decref(j);
    j = h_jcall(Port, "POST", "{}", NULL,
                NEW_PATH "?suite_access_token=nope&code=%s", code);
    assert_int_equal(h_errcode(j), 43001);
    json_decref(j);
}

static void
test_authorize_state_absent(void **state)
{
    char got[64];
    struct page p;

    (void)state;
    page_call(Port, "GET", &p,
              "/connect/oauth2/authorize?appid=%s&redirect_uri=%s&"
              "response_type=code&scope=snsapi_base",
              SUITE_A, CB_ENC);
    assert_int_equal(p.status, 302);
    assert_int_equal(loc_param(p.location, "state", got, sizeof(got)), 0);
    assert_string_equal(got, "");
}

static void
test_authorize_refusals(void **state)
{
    struct page p;

    (void)state;
    page_call(Port, "GET", &p,
              "/connect/oauth2/authorize?appid=wwnope&redirect_uri=%s&"
              "response_type=code&scope=snsapi_base&state=a",
              CB_ENC);
    assert_int_equal(p.status, 400);
    assert_string_equal(p.location, "");
    page_call(Port, "GET", &p,
              "/connect/oauth2/authorize?appid=%s&redirect_uri=%s&"
              "response_type=token&scope=snsapi_base&state=a",
              SUITE_A, CB_ENC);
    assert_int_equal(p.status, 400);
    page_call(Port, "GET", &p,
              "/connect/oauth2/authorize?appid=%s&redirect_uri=%s&"
              "scope=snsapi_base&state=a",
              SUITE_A, CB_ENC);
    assert_int_equal(p.status, 400);
    page_call(Port, "GET", &p,
              "/connect/oauth2/authorize?appid=%s&redirect_uri=%s&"
              "response_type=code&scope=snsapi_userinfo&state=a",
              SUITE_A, CB_ENC);
    assert_int_equal(p.status, 400);
    page_call(Port, "GET", &p,
              "/connect/oauth2/authorize?appid=%s&"
              "response_type=code&scope=snsapi_base&state=a",
              SUITE_A);
    assert_int_equal(p.status, 400);
    page_call(Port, "GET", &p,
              "/connect/oauth2/authorize?appid=%s&redirect_uri=%s&"
              "response_type=code&scope=snsapi_base&state=a_b",
              SUITE_A, CB_ENC);
    assert_int_equal(p.status, 400);
    page_call(Port, "GET", &p,
              "/connect/oauth2/authorize?appid=%s&redirect_uri=%%2Fcb&"
              "response_type=code&scope=snsapi_base&state=a",
              SUITE_A);
    assert_int_equal(p.status, 400);
    page_call(Port, "POST", &p,
              "/connect/oauth2/authorize?appid=%s&redirect_uri=%s&"
              "response_type=code&scope=snsapi_base&state=a",
              SUITE_A, CB_ENC);
    assert_int_equal(p.status, 405);
}

static void
test_oauth_user_refusals(void **state)
{
    (void)state;
    post_refused(Port, "/__mock/oauth_user",
                 "{\"corpid\":\"wwnope\",\"userid\":\"u00001\"}");
    post_refused(Port, "/__mock/oauth_user",
                 "{\"corpid\":\"" CORP1 "\",\"userid\":\"nobody\"}");
    post_refused(Port, "/__mock/oauth_user", "{\"corpid\":\"" CORP1 "\"}");
    post_refused(Port, "/__mock/oauth_user", "{\"userid\":\"u00001\"}");
    post_refused(Port, "/__mock/oauth_user",
                 "{\"corpid\":\"" CORP1 "\",\"openid\":\"o1\"}");
    post_refused(Port, "/__mock/oauth_user", "{\"openid\":\"\"}");
    post_refused(Port, "/__mock/oauth_user", "{\"openid\":\"a b\"}");
    post_refused(Port, "/__mock/oauth_user", "{\"who\":\"x\"}");
}

/*---- getuserdetail3rd ----*/

static void
privateinfo_ticket(const char *sat, char *ticket, size_t cap)
{
    char code[256];
    json_t *j;

    login(Port, SUITE_A, "snsapi_privateinfo", code, sizeof(code));
    j = userinfo(Port, NEW_PATH, sat, code);
    h_copy_str(ticket, cap, h_need_str(j, "user_ticket"));
    json_decref(j);
}

static void
test_userdetail_shape(void **state)
{
    static const char *const keys[] = {
        "errcode", "errmsg",  "corpid",
        "userid",  "name",    "gender",
        "avatar",  "qr_code", "mock_internal_note",
        NULL};
    char sat[128], ticket[128];
    json_t *j, *u;

    (void)state;
    /* every field of the member, to compare with; the strict simulator
     * withholds what the corp did not grant (test_mock_serve.c) */
    post_ok(Port, "/__mock/leaky", "{\"leaky\":true}");
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    post_ok(Port, "/__mock/oauth_user",
            "{\"corpid\":\"" CORP2 "\",\"userid\":\"u00004\"}");
    privateinfo_ticket(sat, ticket, sizeof(ticket));
    j = userdetail(Port, sat, ticket);
    exact_keys(j, keys);
    assert_int_equal(h_errcode(j), 0);
    assert_string_equal(h_need_str(j, "corpid"), CORP2);
    assert_string_equal(h_need_str(j, "userid"), "u00004");
    /* for third-party apps name is the userid */
    assert_string_equal(h_need_str(j, "name"), "u00004");
    u = user_get(CORP2, "u00004");
    same_member_field(u, j, "gender");
    same_member_field(u, j, "avatar");
    same_member_field(u, j, "qr_code");
    json_decref(u);
    json_decref(j);
    /* a ticket is not single use */
    j = userdetail(Port, sat, ticket);
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
}

static void
test_userdetail_unknown_ticket(void **state)
{
    char sat[128], satb[128], ticket[128];
    json_t *j;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    suite_token(Port, SUITE_B, SECRET_B, satb, sizeof(satb));
    j = userdetail(Port, sat, "nope");
    assert_int_equal(h_errcode(j), 84015);
    json_decref(j);
    j = h_jcall(Port, "POST", "{}", NULL,
                "/cgi-bin/service/auth/getuserdetail3rd?suite_access_token=%s",
                sat);
    assert_int_equal(h_errcode(j), 84015);
    json_decref(j);
    privateinfo_ticket(sat, ticket, sizeof(ticket));
    j = userdetail(Port, satb, ticket);
    assert_int_equal(h_errcode(j), 84015);
    json_decref(j);
    j = userdetail(Port, "nope", ticket);
    assert_int_equal(h_errcode(j), 40082);
    json_decref(j);
    j = h_jcall(Port, "POST", "{\"user_ticket\":7}", NULL,
                "/cgi-bin/service/auth/getuserdetail3rd?suite_access_token=%s",
                sat);
    assert_int_equal(h_errcode(j), 40058);
    json_decref(j);
}

static void
test_ticket_expiry(void **state)
{
    static const char *const extra[] = {"--suite", SUITE_A ":" SECRET_A,
                                        "--ticket-lifetime", "1", NULL};
    char sat[128], code[256], ticket[128];
    struct page p;
    json_t *j;
    pid_t pid;
    int port;

    (void)state;
    pid = h_mock_start(Dir, extra, &port);
    assert_true(pid > 0);
    suite_token(port, SUITE_A, SECRET_A, sat, sizeof(sat));
    page_call(port, "GET", &p,
              "/connect/oauth2/authorize?appid=%s&redirect_uri=%s&"
              "response_type=code&scope=snsapi_privateinfo&state=e",
              SUITE_A, CB_ENC);
    assert_int_equal(p.status, 302);
    assert_int_equal(loc_param(p.location, "code", code, sizeof(code)), 0);
    j = userinfo(port, NEW_PATH, sat, code);
    assert_int_equal(json_integer_value(json_object_get(j, "expires_in")), 1);
    h_copy_str(ticket, sizeof(ticket), h_need_str(j, "user_ticket"));
    json_decref(j);
    j = userdetail(port, sat, ticket);
    assert_int_equal(h_errcode(j), 0);
    json_decref(j);
    /* pacing: the point is the ticket's 1 s lifetime passing */
    usleep(1300 * 1000);
    j = userdetail(port, sat, ticket);
    assert_int_equal(h_errcode(j), 84014);
    json_decref(j);
    /* an unknown one is still "invalid", not "expired" */
    j = userdetail(port, sat, "nope");
    assert_int_equal(h_errcode(j), 84015);
    json_decref(j);
    assert_int_equal(h_stop(pid, SIGTERM), 0);
}

/*---- request log and command line ----*/

/* The recorded requests for path (new reference). */
static json_t *
requests(const char *path)
{
    return h_jcall(Port, "GET", NULL, NULL, "/__mock/requests?path=%s", path);
}

static void
test_requests_recorded(void **state)
{
    char sat[128], code[256], ticket[128], pre[128], body[256];
    json_t *j, *r;

    (void)state;
    suite_token(Port, SUITE_A, SECRET_A, sat, sizeof(sat));
    j = h_jcall(Port, "DELETE", NULL, NULL, "/__mock/requests");
    json_decref(j);
    install_page(Port, SUITE_A, sat, "rec", code, sizeof(code));
    pre_auth(Port, sat, pre, sizeof(pre));
    snprintf(body, sizeof(body),
             "{\"pre_auth_code\":\"%s\",\"session_info\":{\"auth_type\":1}}",
             pre);
    j = session_info(sat, body);
    json_decref(j);
    privateinfo_ticket(sat, ticket, sizeof(ticket));
    j = userdetail(Port, sat, ticket);
    json_decref(j);

    j = requests("/3rdapp/install");
    assert_int_equal(json_array_size(j), 1);
    r = json_array_get(j, 0);
    assert_string_equal(h_need_str(r, "method"), "GET");
    assert_non_null(strstr(h_need_str(r, "query"), "state=rec"));
    json_decref(j);
    j = requests("/connect/oauth2/authorize");
    assert_int_equal(json_array_size(j), 1);
    assert_non_null(strstr(h_need_str(json_array_get(j, 0), "query"),
                           "scope=snsapi_privateinfo"));
    json_decref(j);
    j = requests(NEW_PATH);
    assert_int_equal(json_array_size(j), 1);
    r = json_array_get(j, 0);
    assert_non_null(strstr(h_need_str(r, "query"), "suite_access_token=***"));
    assert_null(strstr(h_need_str(r, "query"), sat));
    json_decref(j);
    j = requests("/cgi-bin/service/auth/getuserdetail3rd");
    assert_int_equal(json_array_size(j), 1);
    r = json_object_get(json_array_get(j, 0), "body");
    assert_string_equal(h_need_str(r, "user_ticket"), ticket);
    json_decref(j);
    j = requests("/cgi-bin/service/set_session_info");
    assert_int_equal(json_array_size(j), 1);
    r = json_object_get(json_object_get(json_array_get(j, 0), "body"),
                        "session_info");
    assert_int_equal(json_integer_value(json_object_get(r, "auth_type")), 1);
    json_decref(j);
}

static void
test_command_line(void **state)
{
    static const char *const help[] = {"bin/mock-wecom", "serve", "--help",
                                       NULL};
    static const char *const bad[] = {
        "bin/mock-wecom",    "serve", "--suite", "a:b",
        "--ticket-lifetime", "0",     NULL};
    char *out = NULL;

    (void)state;
    assert_int_equal(h_run(help, &out), 0);
    assert_non_null(strstr(out, "--ticket-lifetime"));
    assert_non_null(strstr(out, "/__mock/oauth_user"));
    assert_non_null(strstr(out, "/__mock/oauth_corp"));
    assert_non_null(strstr(out, "/__mock/oauth_shape"));
    assert_non_null(strstr(out, "/3rdapp/install"));
    assert_non_null(strstr(out, "/connect/oauth2/authorize"));
    free(out);
    assert_int_equal(h_run(bad, &out), 2);
    free(out);
}

#define T(f) cmocka_unit_test_setup(f, reset)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_pre_auth_code_shape),
        T(test_pre_auth_code_bad_token),
        T(test_session_info_records_auth_type),
        T(test_session_info_refusals),
        T(test_install_page_default_corp),
        T(test_install_page_chosen_corp),
        T(test_install_page_code_single_use),
        T(test_install_page_redirect_with_query),
        T(test_install_page_refusals),
        T(test_authorize_default_member_base),
        T(test_authorize_privateinfo_new_shape),
        T(test_authorize_non_member),
        T(test_old_path_old_shape),
        T(test_oauth_shape_switch),
        T(test_code_single_use),
        T(test_code_unknown_foreign_missing),
        T(test_userinfo_bad_token),
        T(test_authorize_state_absent),
        T(test_authorize_refusals),
        T(test_oauth_user_refusals),
        T(test_userdetail_shape),
        T(test_userdetail_unknown_ticket),
        T(test_ticket_expiry),
        T(test_requests_recorded),
        T(test_command_line),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
