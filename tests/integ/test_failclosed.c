/*
 * Failing closed, end to end: real redis-server, the WeCom simulator and
 * the broker over loopback. Stored records that do not parse or have the
 * wrong shape refuse the request instead of widening it; member OAuth
 * answers only for members in range; integer subjects reach WeCom in the
 * form that was checked; return URLs cannot preset what the broker
 * appends; per-address budgets on the browser routes; slow and numerous
 * clients on the public listener leave the internal one working.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "codec.h"
#include "harness.h"
#include "service.h"
#include "simclient.h"
#include "svcclient.h"
#include "tenantclient.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#define S1          H_SUITE
#define CORP1       "wwmockcorp0001" /* the tenant the services read */
#define CORP2       "wwmockcorp0002" /* its records get damaged */
#define CORP3       "wwmockcorp0003" /* never installed */
#define IN_DEPT     "u00001"         /* in department 2, the default range */
#define OUT_DEPT    "u00003"         /* allow_user, in department 3 */
#define OUT_RANGE   "u00002"         /* department 3, outside the range */
#define RET         "https://app.example/return/x"
#define RET_ENC     "https%3A%2F%2Fapp.example%2Freturn%2Fx"
#define NOTICE_CHAN "wb:inval"

static struct harness H;
static pid_t Mock, Flood; /* Flood: a broker with few descriptors */
static pid_t Proxied;     /* a broker behind a trusted proxy */
static int MockPort;
static char *Reader_secret, *Reader_tok;

/*---- HTTP ----*/

/* The single value of name in url's query (owned, decoded), or NULL. */
static char *
param(const char *url, const char *name)
{
    const char *q = strchr(url, '?'), *p;
    size_t n = strlen(name), len;
    char *raw, *out;

    for (p = q; p != NULL; p = strchr(p + 1, '&')) {
        if (strncmp(p + 1, name, n) != 0 || p[1 + n] != '=')
            continue;
        len = strcspn(p + 2 + n, "&#");
        raw = strndup(p + 2 + n, len);
        out = malloc(len + 1);
        assert_int_equal(codec_pct_decode(raw, len, out, &len), BRK_OK);
        out[len] = '\0';
        free(raw);
        return out;
    }
    return NULL;
}

/*---- Callbacks, as WeCom sends them ----*/

/*---- brokerctl and Redis ----*/

/* A Redis command; the reply (freeReplyObject it). */
static redisReply *
rcmd(const char *fmt, ...)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    va_list ap;

    assert_non_null(c);
    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(r);
    return r;
}

static void
rcmd_ok(const char *fmt, ...)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    va_list ap;

    assert_non_null(c);
    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

/* Tell the broker a record changed, as brokerctl and the workers do. */
static void __attribute__((format(printf, 1, 2))) notice(const char *fmt, ...)
{
    char msg[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    rcmd_ok("PUBLISH %s %s", NOTICE_CHAN, msg);
}

/* The id of a service from its secret "ID.SECRET" (static). */
static const char *
svc_id(const char *secret)
{
    static char id[32];

    snprintf(id, sizeof(id), "%.*s", (int)(strchr(secret, '.') - secret),
             secret);
    return id;
}

/* HSET a field of a service and tell the broker it changed. */
static void
svc_field_set(const char *secret, const char *field, const char *value)
{
    rcmd_ok("HSET wb:svc:{%s} %s %s", svc_id(secret), field, value);
    notice("svc %s", svc_id(secret));
}

/* The tenant's hash key, or one of its sub-keys. */
static void
tenant_key(char *out, size_t len, const char *corp, const char *what)
{
    snprintf(out, len, "wb:{%s}:" S1 ":%s", corp, what ? what : "tenant");
}

/* Poll a request until its errcode is code (the broker's caches may still
 * hold the record for a moment). */
struct poll_req {
    char path[1024];
    long code, got, status;
};

static int
poll_one(void *arg)
{
    struct poll_req *p = arg;
    struct sc_resp r;

    sc_call(&r, H.int_port, "GET", NULL, "%s", p->path);
    p->got = sc_ecode(&r);
    p->status = r.status;
    sc_resp_free(&r);
    return p->got == p->code;
}

/* Assert that GET path answers errcode code within 3 s. */
static void __attribute__((format(printf, 2, 3)))
expect_code(long code, const char *fmt, ...)
{
    struct poll_req p;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(p.path, sizeof(p.path), fmt, ap);
    va_end(ap);
    p.code = code;
    if (!h_wait(poll_one, &p, 3000)) {
        fprintf(stderr, "# %s: want errcode %ld, got %ld (HTTP %ld)\n", p.path,
                code, p.got, p.status);
        fail();
    }
}

/*---- Fixtures ----*/

static const char *
broker_extra(void)
{
    static char extra[1024];

    snprintf(extra, sizeof(extra),
             "wecom_api_base = http://127.0.0.1:%d\n"
             "wecom_install_url = http://127.0.0.1:%d/3rdapp/install\n"
             "wecom_oauth_url = http://127.0.0.1:%d/connect/oauth2/"
             "authorize\n"
             "event_claim_idle = 3\n"
             "event_max_attempts = 2\n"
             "upstream_timeout_ms = 3000\n",
             MockPort, MockPort, MockPort);
    return extra;
}

/* public_base_url names the callback port h_write_conf picked; the
 * suite's redirect_allow goes at the end (its section is the last). */
static int
finish_conf(const char *conf, int cb_port)
{
    char *txt = h_slurp(conf), *p = strstr(txt, "[broker]\n");
    FILE *f = fopen(conf, "w");

    if (p == NULL || f == NULL) {
        free(txt);
        return -1;
    }
    p += strlen("[broker]\n");
    fwrite(txt, 1, (size_t)(p - txt), f);
    fprintf(f, "public_base_url = http://127.0.0.1:%d\n", cb_port);
    fputs(p, f);
    fprintf(f, "auth_type = 1\nredirect_allow = https://app.example/return\n");
    free(txt);
    return fclose(f) == 0 ? 0 : -1;
}

/* The tenants installed, a service and its token: the group's starting
 * point. */
static void tenants_ready(void);

static int
setup(void **state)
{
    const char *extra[] = {"--suite", S1 ":" H_SECRET, "--corps",
                           "3",       "--quiet",       NULL};

    (void)state;
    if (h_setup(&H) != 0)
        return -1;
    if (getenv("KEEP_TEST_DIR") != NULL)
        fprintf(stderr, "# test directory: %s\n", H.dir);
    Mock = h_mock_start(H.dir, extra, &MockPort);
    if (Mock == 0)
        return -1;
    if (h_write_conf(&H, 0, broker_extra()) != 0 ||
        finish_conf(H.conf, H.cb_port) != 0 || h_broker_start(&H) != 0)
        return -1;
    tc_init(&H, MockPort);
    tenants_ready();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    tc_done();
    if (H.broker_pid > 0)
        h_broker_stop(&H, SIGKILL);
    if (Flood > 0)
        h_stop(Flood, SIGKILL);
    if (Proxied > 0)
        h_stop(Proxied, SIGKILL);
    if (Mock > 0)
        h_stop(Mock, SIGTERM);
    free(Reader_secret);
    free(Reader_tok);
    h_teardown(&H);
    return 0;
}

/*---- Installs (set up once for the group) ----*/

static void
tenants_ready(void)
{
    tc_push_ticket(S1);
    tc_install(S1, CORP1, h_next_ts());
    tc_install(S1, CORP2, h_next_ts());
    tc_wait_status(S1, CORP1, "active", 30000);
    tc_wait_status(S1, CORP2, "active", 30000);
    Reader_secret = tc_svc_add("reader", "contacts.read", NULL, NULL);
    Reader_tok = tc_token_for(0, Reader_secret, CORP1);
}

/*---- 1. Stored records that do not parse refuse ----*/

#define USER_GET  "/cgi-bin/user/get?access_token=%s&userid=%s"
#define DEPT_LIST "/cgi-bin/department/list?access_token=%s%s"

/* A service limited to CORP1 whose stored corps field is replaced by bad:
 * gettoken for CORP2 is refused with -1, never a token. */
static void
corps_refused(const char *name, const char *bad)
{
    char *sec = tc_svc_add(name, "contacts.read", "--corps", CORP1);
    struct sc_resp r;

    svc_field_set(sec, "corps", bad);
    sc_call(&r, H.int_port, "GET", NULL,
            "/cgi-bin/gettoken?corpid=" CORP2 "&corpsecret=%s", sec);
    SC_EXPECT(&r, 503, -1);
    assert_null(json_object_get(r.json, "access_token"));
    sc_resp_free(&r);
    /* nor for the corp it names */
    sc_call(&r, H.int_port, "GET", NULL,
            "/cgi-bin/gettoken?corpid=" CORP1 "&corpsecret=%s", sec);
    SC_EXPECT(&r, 503, -1);
    sc_resp_free(&r);
    free(sec);
}

static void
test_corps_truncated(void **state)
{
    (void)state;
    corps_refused("corps-cut", "[\"" CORP1 "\"");
}

static void
test_corps_wrong_shape(void **state)
{
    (void)state;
    corps_refused("corps-null", "null");
    corps_refused("corps-object", "{\"" CORP1 "\":true}");
    corps_refused("corps-number", "[1]");
}

/* A service narrowed to department 2 of CORP1: with its parties damaged,
 * a member outside department 2 is refused, not served. */
static void
parties_refused(const char *name, const char *bad)
{
    char *sec = tc_svc_add(name, "contacts.read", "--parties", CORP1 ":2");
    char *tok = tc_token_for(0, sec, CORP1);
    struct sc_resp r;

    sc_call(&r, H.int_port, "GET", NULL, USER_GET, tok, OUT_DEPT);
    SC_EXPECT(&r, 200, 60011);
    sc_resp_free(&r);
    svc_field_set(sec, "parties", bad);
    expect_code(-1, USER_GET, tok, OUT_DEPT);
    sc_call(&r, H.int_port, "GET", NULL, USER_GET, tok, IN_DEPT);
    SC_EXPECT(&r, 503, -1);
    assert_null(json_object_get(r.json, "userid"));
    sc_resp_free(&r);
    free(tok);
    free(sec);
}

static void
test_parties_truncated(void **state)
{
    (void)state;
    parties_refused("parties-cut", "{\"" CORP1 "\":[2");
}

static void
test_parties_wrong_shape(void **state)
{
    (void)state;
    parties_refused("parties-array", "[2]");
    parties_refused("parties-case", "{\"WWMOCKCORP0001\":[2]}");
    parties_refused("parties-string", "{\"" CORP1 "\":\"2\"}");
    parties_refused("parties-dupe", "{\"" CORP1 "\":[2],\"" CORP1 "\":[1]}");
}

/* A damaged field of CORP2's tenant record (or of its directory) refuses
 * every data call for it with -1, then all is well again once restored. */
static void
tenant_refused(const char *what, const char *field, const char *bad)
{
    char key[200], *old;
    redisReply *x;
    struct sc_resp r;
    char *tok = tc_token_for(0, Reader_secret, CORP2);

    tenant_key(key, sizeof(key), CORP2, what);
    expect_code(0, DEPT_LIST, tok, "");
    x = rcmd("HGET %s %s", key, field);
    assert_int_equal(x->type, REDIS_REPLY_STRING);
    old = strdup(x->str);
    freeReplyObject(x);
    rcmd_ok("HSET %s %s %s", key, field, bad);
    notice("%s", S1 " " CORP2);
    expect_code(-1, DEPT_LIST, tok, "");
    sc_call(&r, H.int_port, "GET", NULL, DEPT_LIST, tok, "");
    SC_EXPECT(&r, 503, -1);
    assert_null(json_object_get(r.json, "department"));
    sc_resp_free(&r);
    sc_call(&r, H.int_port, "GET", NULL, USER_GET, tok, IN_DEPT);
    SC_EXPECT(&r, 503, -1);
    sc_resp_free(&r);
    rcmd_ok("HSET %s %s %s", key, field, old);
    notice("%s", S1 " " CORP2);
    expect_code(0, DEPT_LIST, tok, "");
    free(old);
    free(tok);
}

static void
test_tenant_privilege_damaged(void **state)
{
    (void)state;
    tenant_refused(NULL, "privilege", "{\"allow_party\":[2");
    tenant_refused(NULL, "privilege", "[]");
    tenant_refused(NULL, "privilege", "{\"allow_party\":\"2\"}");
}

static void
test_tenant_grant_damaged(void **state)
{
    (void)state;
    tenant_refused(NULL, "permissions", "[{\"name\":\"contact:base:base\"");
    tenant_refused(NULL, "permissions", "{}");
    tenant_refused(NULL, "permissions", "[\"contact:base:base\"]");
}

static void
test_directory_damaged(void **state)
{
    (void)state;
    /* a member's departments and a department's parent */
    tenant_refused("dir:users", IN_DEPT, "2,x");
    tenant_refused("dir:parents", "2", "-1");
}

/* A broker token or a service whose generation does not parse. */
static void
test_generation_damaged(void **state)
{
    char *sec = tc_svc_add("gen-damaged", "contacts.read", NULL, NULL);
    char *tok = tc_token_for(0, sec, CORP1), h[65], key[200];
    struct sc_resp r;

    (void)state;
    sc_call(&r, H.int_port, "GET", NULL, USER_GET, tok, IN_DEPT);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    /* "0abc" read as a number is 0, the service's generation */
    service_token_hash(tok, strlen(tok), h);
    snprintf(key, sizeof(key), "wb:btok:{%s}", h);
    rcmd_ok("HSET %s gen 0abc", key);
    notice("svc %s", svc_id(sec));
    expect_code(-1, USER_GET, tok, IN_DEPT);
    rcmd_ok("HSET %s gen 0", key);
    svc_field_set(sec, "gen", "0junk");
    expect_code(-1, USER_GET, tok, IN_DEPT);
    sc_call(&r, H.int_port, "GET", NULL,
            "/cgi-bin/gettoken?corpid=" CORP1 "&corpsecret=%s", sec);
    SC_EXPECT(&r, 503, -1);
    sc_resp_free(&r);
    free(tok);
    free(sec);
}

/* A stored browser state whose return URL was changed is refused: the
 * URL is checked again when it is read back. */
static void
test_state_return_damaged(void **state)
{
    char url[1024];
    struct sc_resp r;
    redisReply *keys;
    size_t i;

    (void)state;
    rcmd_ok("DEL wb:{" S1 "}:oauth:live");
    keys = rcmd("KEYS wb:{" S1 "}:oauth:state:*");
    for (i = 0; i < keys->elements; i++)
        rcmd_ok("DEL %s", keys->element[i]->str);
    freeReplyObject(keys);
    h_sim_ok(MockPort, "POST", "/__mock/oauth_user",
             "{\"corpid\":\"" CORP1 "\",\"userid\":\"" IN_DEPT "\"}");
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/wecom/suite/" S1
             "/oauth/authorize?scope=snsapi_base&return=%s",
             H.cb_port, RET_ENC);
    sc_fetch(&r, "GET", url, NULL, "127.0.0.20", NULL);
    assert_int_equal(r.status, 302);
    snprintf(url, sizeof(url), "%s", r.loc);
    sc_resp_free(&r);
    keys = rcmd("KEYS wb:{" S1 "}:oauth:state:*");
    assert_int_equal(keys->elements, 1);
    rcmd_ok("HSET %s return https://evil.example/", keys->element[0]->str);
    freeReplyObject(keys);
    sc_fetch(&r, "GET", url, NULL, "127.0.0.20", NULL);
    assert_int_equal(r.status, 302);
    snprintf(url, sizeof(url), "%s", r.loc);
    sc_resp_free(&r);
    sc_fetch(&r, "GET", url, NULL, "127.0.0.20", NULL);
    assert_int_equal(r.status, 400);
    assert_null(r.loc);
    sc_resp_free(&r);
}

/*---- 2. Member OAuth answers for members in range only ----*/

/* userid of CORP1 logs in with consent from src; the broker's code the
 * return URL receives (owned). */
static char *
member_login(const char *userid, const char *src)
{
    char url[2048], body[160], *code;
    struct sc_resp r;

    snprintf(body, sizeof(body), "{\"corpid\":\"" CORP1 "\",\"userid\":\"%s\"}",
             userid);
    h_sim_ok(MockPort, "POST", "/__mock/oauth_user", body);
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/wecom/suite/" S1
             "/oauth/authorize?scope=snsapi_privateinfo&return=%s",
             H.cb_port, RET_ENC);
    sc_fetch(&r, "GET", url, NULL, src, NULL);
    assert_int_equal(r.status, 302);
    snprintf(url, sizeof(url), "%s", r.loc);
    sc_resp_free(&r);
    sc_fetch(&r, "GET", url, NULL, src, NULL);
    assert_int_equal(r.status, 302);
    snprintf(url, sizeof(url), "%s", r.loc);
    sc_resp_free(&r);
    sc_fetch(&r, "GET", url, NULL, src, NULL);
    if (r.status != 302)
        fprintf(stderr, "# login of %s: %ld %s\n", userid, r.status,
                r.body ? r.body : "");
    assert_int_equal(r.status, 302);
    code = param(r.loc, "code");
    assert_non_null(code);
    sc_resp_free(&r);
    return code;
}

/* getuserinfo with code for tok: the reply (resp_free it). */
static void
userinfo(struct sc_resp *r, const char *tok, const char *code)
{
    sc_call(r, H.int_port, "GET", NULL,
            "/cgi-bin/auth/getuserinfo?access_token=%s&code=%s", tok, code);
}

static void
userdetail(struct sc_resp *r, const char *tok, const char *ticket)
{
    char body[200];

    snprintf(body, sizeof(body), "{\"user_ticket\":\"%s\"}", ticket);
    sc_call(r, H.int_port, "POST", body,
            "/cgi-bin/auth/getuserdetail?access_token=%s", tok);
}

static void
test_oauth_service_range(void **state)
{
    char *wide =
        tc_svc_add("oauth-wide", "contacts.read,member.sensitive", NULL, NULL);
    char *narrow = tc_svc_add("oauth-narrow", "contacts.read,member.sensitive",
                              "--parties", CORP1 ":2");
    char *wtok = tc_token_for(0, wide, CORP1),
         *ntok = tc_token_for(0, narrow, CORP1);
    char *code, *ticket;
    struct sc_resp r;

    (void)state;
    /* in department 2: both services */
    code = member_login(IN_DEPT, "127.0.0.21");
    userinfo(&r, ntok, code);
    SC_EXPECT(&r, 200, 0);
    assert_string_equal(h_str(r.json, "userid"), IN_DEPT);
    ticket = strdup(h_str(r.json, "user_ticket"));
    sc_resp_free(&r);
    userdetail(&r, ntok, ticket);
    SC_EXPECT(&r, 200, 0);
    assert_string_equal(h_str(r.json, "userid"), IN_DEPT);
    sc_resp_free(&r);
    free(ticket);
    free(code);
    /* in the tenant's range, outside the narrowed service's: that
     * service learns nothing, neither with the code nor the ticket */
    code = member_login(OUT_DEPT, "127.0.0.21");
    userinfo(&r, ntok, code);
    SC_EXPECT(&r, 200, 60011);
    assert_null(json_object_get(r.json, "userid"));
    assert_null(json_object_get(r.json, "user_ticket"));
    sc_resp_free(&r);
    free(code);
    code = member_login(OUT_DEPT, "127.0.0.21");
    userinfo(&r, wtok, code);
    SC_EXPECT(&r, 200, 0);
    assert_string_equal(h_str(r.json, "userid"), OUT_DEPT);
    ticket = strdup(h_str(r.json, "user_ticket"));
    sc_resp_free(&r);
    userdetail(&r, ntok, ticket);
    SC_EXPECT(&r, 200, 60011);
    assert_null(json_object_get(r.json, "userid"));
    assert_null(json_object_get(r.json, "mobile"));
    sc_resp_free(&r);
    userdetail(&r, wtok, ticket);
    SC_EXPECT(&r, 200, 0);
    assert_string_equal(h_str(r.json, "userid"), OUT_DEPT);
    sc_resp_free(&r);
    free(ticket);
    free(code);
    /* outside the tenant's own range: no service learns anything */
    code = member_login(OUT_RANGE, "127.0.0.21");
    userinfo(&r, wtok, code);
    SC_EXPECT(&r, 200, 60011);
    assert_null(json_object_get(r.json, "userid"));
    sc_resp_free(&r);
    free(code);
    free(wtok);
    free(ntok);
    free(wide);
    free(narrow);
}

/*---- 4. Slow and numerous clients ----*/

/* A connection to 127.0.0.1:port from the loopback address src. */
static int
tcp_from(const char *src, int port)
{
    struct sockaddr_in sa, me;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&me, 0, sizeof(me));
    me.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, src, &me.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&me, sizeof(me)), 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* An unfinished request: a header line that never ends. */
static void
send_partial(int fd)
{
    static const char head[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-a: ";

    (void)send(fd, head, sizeof(head) - 1, MSG_NOSIGNAL);
}

/* Nonzero when the server has closed fd (EOF or reset), waiting up to
 * ms. */
static int
closed_by_server(int fd, long ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    char buf[256];
    ssize_t n;

    if (poll(&p, 1, (int)ms) <= 0)
        return 0;
    n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* A client that sends a byte of its header every 500 ms is closed once
 * the request's deadline passes, however steadily it sends. */
static void
test_slow_request_has_a_deadline(void **state)
{
    long t0 = h_now_ms(), closed_at = -1;
    int fd = tcp_from("127.0.0.40", H.cb_port), fd2;

    (void)state;
    send_partial(fd);
    fd2 = tcp_from("127.0.0.40", H.int_port);
    send_partial(fd2);
    while (h_now_ms() - t0 < 20000) {
        if (send(fd, "a", 1, MSG_NOSIGNAL) != 1 || closed_by_server(fd, 500)) {
            closed_at = h_now_ms() - t0;
            break;
        }
        (void)send(fd2, "a", 1, MSG_NOSIGNAL);
    }
    fprintf(stderr, "# a byte every 500 ms: closed after %ld ms\n", closed_at);
    assert_true(closed_at > 0);
    assert_true(closed_at < 16000);
    /* the internal listener has one too */
    assert_true(closed_by_server(fd2, 3000) ||
                send(fd2, "a", 1, MSG_NOSIGNAL) != 1);
    close(fd);
    close(fd2);
}

/* One address holds at most so many connections to the public listener;
 * the ones beyond are closed at once, other addresses are served. */
static void
test_connections_per_address(void **state)
{
    enum { N = 100 };
    int fds[N], i, closed = 0;
    struct sc_resp r;
    char url[200];

    (void)state;
    for (i = 0; i < N; i++) {
        fds[i] = tcp_from("127.0.0.41", H.cb_port);
        send_partial(fds[i]);
    }
    for (i = 0; i < N; i++)
        closed += closed_by_server(fds[i], i < 2 ? 1000 : 50);
    fprintf(stderr, "# %d connections from one address: %d closed\n", N,
            closed);
    assert_true(closed >= N - 64);
    assert_true(closed < N);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", H.cb_port);
    sc_fetch(&r, "GET", url, NULL, "127.0.0.42", NULL);
    assert_int_equal(r.status, 404);
    sc_resp_free(&r);
    for (i = 0; i < N; i++)
        close(fds[i]);
    /* not on the internal listener: services share hosts */
    for (i = 0; i < N; i++) {
        fds[i] = tcp_from("127.0.0.41", H.int_port);
        send_partial(fds[i]);
    }
    closed = 0;
    for (i = 0; i < N; i++)
        closed += closed_by_server(fds[i], i < 2 ? 1000 : 20);
    assert_int_equal(closed, 0);
    for (i = 0; i < N; i++)
        close(fds[i]);
}

static int
healthz_on(void *arg)
{
    char url[64], *body = NULL;
    long st;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", *(int *)arg);
    st = h_http("GET", url, NULL, 0, &body);
    free(body);
    return st == 200;
}

/* A broker with 256 descriptors: as many unfinished requests on the
 * public listener as it has descriptors, from several addresses, leave
 * the internal listener, Redis and WeCom calls working. */
static void
test_public_flood_leaves_internal(void **state)
{
    enum { ADDRS = 8, PER = 40, N = ADDRS * PER };
    char conf[400], log[400], src[32], *tok;
    int fds[N], cb, ip, port_cb, port_int, i;
    struct rlimit old, low;
    struct sc_resp r;
    long t0;
    pid_t pid;

    (void)state;
    snprintf(conf, sizeof(conf), "%s/broker-flood.conf", H.dir);
    snprintf(log, sizeof(log), "%s/broker-flood.log", H.dir);
    cb = H.cb_port;
    ip = H.int_port;
    assert_int_equal(h_write_conf_to(&H, conf, 0, broker_extra()), 0);
    assert_int_equal(finish_conf(conf, H.cb_port), 0);
    port_cb = H.cb_port;
    port_int = H.int_port;
    H.cb_port = cb;
    H.int_port = ip;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = 256;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    pid = Flood = h_spawn_broker(conf, log);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_true(pid > 0);
    assert_true(h_wait(healthz_on, &port_int, 20000));
    for (i = 0; i < N; i++) {
        snprintf(src, sizeof(src), "127.0.1.%d", 1 + i % ADDRS);
        fds[i] = tcp_from(src, port_cb);
        send_partial(fds[i]);
    }
    /* pacing: half-sent requests show nowhere outside the broker; this
     * lets it accept them before the internal listener is timed */
    usleep(500000);
    t0 = h_now_ms();
    assert_true(h_wait(healthz_on, &port_int, 3000));
    fprintf(stderr,
            "# %d unfinished requests on the public listener: "
            "the internal one answered in %ld ms\n",
            N, h_now_ms() - t0);
    /* Redis and WeCom from that instance */
    sc_call(&r, port_int, "GET", NULL, "/readyz");
    assert_int_equal(r.status, 200);
    sc_resp_free(&r);
    sc_call(&r, port_int, "GET", NULL,
            "/cgi-bin/gettoken?corpid=" CORP1 "&corpsecret=%s", Reader_secret);
    SC_EXPECT(&r, 200, 0);
    tok = strdup(h_str(r.json, "access_token"));
    sc_resp_free(&r);
    sc_call(&r, port_int, "GET", NULL, USER_GET, tok, IN_DEPT);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    free(tok);
    for (i = 0; i < N; i++)
        close(fds[i]);
    assert_int_equal(h_stop(pid, SIGTERM), 0);
    Flood = 0;
}

/*---- 5. Per-address budgets on the browser routes ----*/

#define AUTHORIZE_PATH "/wecom/suite/" S1 "/oauth/authorize?scope=snsapi_base"

/* GET /oauth/authorize on port from src, with X-Forwarded-For xff (may be
 * NULL): the status. */
static long
authorize_from(int port, const char *src, const char *xff)
{
    char url[512], hdr[128];
    struct sc_resp r;
    long st;

    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d" AUTHORIZE_PATH "&return=%s", port, RET_ENC);
    if (xff != NULL)
        snprintf(hdr, sizeof(hdr), "X-Forwarded-For: %s", xff);
    sc_fetch(&r, "GET", url, NULL, src, xff != NULL ? hdr : NULL);
    st = r.status;
    sc_resp_free(&r);
    return st;
}

/* Live states are budgeted per client address: one address holds only
 * so many, and states held by others (here: as many as the whole suite
 * could hold before) do not refuse a new address. */
static void
test_live_states_per_address(void **state)
{
    redisContext *c;
    redisReply *rep;
    int i, ok = 0, refused = 0;

    (void)state;
    for (i = 0; i < 58; i++) {
        long st = authorize_from(H.cb_port, "127.0.0.50", NULL);

        ok += st == 302;
        refused += st == 429;
    }
    fprintf(stderr,
            "# 58 logins started from one address: %d states, "
            "%d refused\n",
            ok, refused);
    assert_int_equal(ok, 50);
    assert_int_equal(refused, 8);
    /* the suite holds 10,000 live states of other addresses */
    c = h_redis(&H);
    assert_non_null(c);
    for (i = 0; i < 10000; i++)
        redisAppendCommand(c, "ZADD wb:{" S1 "}:oauth:live %lld other%05d",
                           (long long)time(NULL) + 600, i);
    for (i = 0; i < 10000; i++) {
        assert_int_equal(redisGetReply(c, (void **)&rep), REDIS_OK);
        freeReplyObject(rep);
    }
    redisFree(c);
    assert_int_equal(authorize_from(H.cb_port, "127.0.0.51", NULL), 302);
    rcmd_ok("DEL wb:{" S1 "}:oauth:live");
}

/* Behind a trusted proxy, the client is the address the proxy appended
 * to X-Forwarded-For; from anyone else the header is ignored. */
static void
test_trusted_proxy_client_address(void **state)
{
    char conf[400], log[400], extra[1200];
    int cb, ip, port_cb, port_int, i, n429;

    (void)state;
    snprintf(conf, sizeof(conf), "%s/broker-proxied.conf", H.dir);
    snprintf(log, sizeof(log), "%s/broker-proxied.log", H.dir);
    cb = H.cb_port;
    ip = H.int_port;
    snprintf(extra, sizeof(extra), "%strusted_proxies = 127.0.0.60, ::1\n",
             broker_extra());
    assert_int_equal(h_write_conf_to(&H, conf, 0, extra), 0);
    assert_int_equal(finish_conf(conf, H.cb_port), 0);
    port_cb = H.cb_port;
    port_int = H.int_port;
    H.cb_port = cb;
    H.int_port = ip;
    Proxied = h_spawn_broker(conf, log);
    assert_true(Proxied > 0);
    assert_true(h_wait(healthz_on, &port_int, 20000));
    /* one client behind the proxy spends its own budget (60 a minute) */
    for (i = 0, n429 = 0; i < 61; i++)
        n429 += authorize_from(port_cb, "127.0.0.60",
                               "6.6.6.6, 198.51.100.1") == 429;
    assert_true(n429 >= 1);
    /* another client behind the same proxy is not slowed by it, nor by
     * what the first one wrote into the header */
    assert_int_equal(authorize_from(port_cb, "127.0.0.60", "198.51.100.2"),
                     302);
    assert_int_equal(
        authorize_from(port_cb, "127.0.0.60", "198.51.100.1, 198.51.100.3"),
        302);
    /* a proxy that sends no usable client address is refused */
    assert_int_equal(authorize_from(port_cb, "127.0.0.60", "unknown"), 400);
    /* from an untrusted peer the header is the client's own: one bucket */
    for (i = 0, n429 = 0; i < 61; i++)
        n429 += authorize_from(port_cb, "127.0.0.61",
                               i % 2 ? "198.51.100.4" : "198.51.100.5") == 429;
    assert_true(n429 >= 1);
    assert_int_equal(authorize_from(port_cb, "127.0.0.61", "198.51.100.6"),
                     429);
    assert_int_equal(h_stop(Proxied, SIGTERM), 0);
    Proxied = 0;
}

/*---- 6. What one address can queue from the provider site ----*/

/* /install from src, then /install/done with auth_code code and the
 * state the broker made: the status of the latter. */
static long
install_done_from(const char *src, const char *code)
{
    char url[1024], *st;
    struct sc_resp r;
    long status;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/wecom/suite/" S1 "/install",
             H.cb_port);
    sc_fetch(&r, "GET", url, NULL, src, NULL);
    assert_int_equal(r.status, 302);
    st = param(r.loc, "state");
    assert_non_null(st);
    sc_resp_free(&r);
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/wecom/suite/" S1
             "/install/done?auth_code=%s&state=%s",
             H.cb_port, code, st);
    free(st);
    sc_fetch(&r, "GET", url, NULL, src, NULL);
    status = r.status;
    sc_resp_free(&r);
    return status;
}

/* Installs the broker queued since byte from of its log (the workers
 * consume the stream itself as they go). */
static int
queued_since(size_t from)
{
    char *log = h_slurp(H.log), *p;
    int n = 0;

    assert_non_null(log);
    for (p = log + from;
         (p = strstr(p, "install confirmed by the browser")) != NULL; p++)
        n++;
    free(log);
    return n;
}

static void
test_installs_queued_per_address(void **state)
{
    char code[64];
    size_t before = h_file_size(H.log);
    int i, queued = 0, refused = 0;
    long st;

    (void)state;
    for (i = 0; i < 14; i++) {
        snprintf(code, sizeof(code), "junk-auth-code-%d-%ld", i,
                 (long)time(NULL));
        st = install_done_from("127.0.0.70", code);
        queued += st == 200;
        refused += st == 429;
    }
    fprintf(stderr,
            "# 14 provider-site installs from one address: %d "
            "queued, %d refused\n",
            queued, refused);
    assert_int_equal(queued, 10);
    assert_int_equal(refused, 4);
    assert_int_equal(queued_since(before), 10);
    /* another address queues its own */
    snprintf(code, sizeof(code), "junk-auth-code-x-%ld", (long)time(NULL));
    assert_int_equal(install_done_from("127.0.0.71", code), 200);
    assert_int_equal(queued_since(before), 11);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corps_truncated),
        cmocka_unit_test(test_corps_wrong_shape),
        cmocka_unit_test(test_parties_truncated),
        cmocka_unit_test(test_parties_wrong_shape),
        cmocka_unit_test(test_tenant_privilege_damaged),
        cmocka_unit_test(test_tenant_grant_damaged),
        cmocka_unit_test(test_directory_damaged),
        cmocka_unit_test(test_generation_damaged),
        cmocka_unit_test(test_state_return_damaged),
        cmocka_unit_test(test_oauth_service_range),
        cmocka_unit_test(test_slow_request_has_a_deadline),
        cmocka_unit_test(test_connections_per_address),
        cmocka_unit_test(test_public_flood_leaves_internal),
        cmocka_unit_test(test_live_states_per_address),
        cmocka_unit_test(test_trusted_proxy_client_address),
        cmocka_unit_test(test_installs_queued_per_address),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
