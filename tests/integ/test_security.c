/*
 * Security end to end: real redis-server, the WeCom simulator behind a
 * recording relay, and two broker instances over loopback. Tokens bound
 * to their tenant and ended by revoke on every instance, hostile requests
 * on both listeners (each its own test), slow clients, the callback
 * listener's routes, the browser routes under a flood, and a full flow
 * after which no secret may be found in logs, metrics, CLI output or
 * Redis.
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
#include "simclient.h"
#include "svcclient.h"
#include "tenantclient.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#define S1     H_SUITE
#define CORP1  "wwmockcorp0001" /* installed by create_auth */
#define CORP2  "wwmockcorp0002" /* installed from the provider site */
#define CORP3  "wwmockcorp0003" /* never installed */
#define MEMBER "u00003"         /* in the default visible range */
#define RET    "https://app.example/return/x"

static struct harness H;
static struct wecom_crypto *C;
static struct h_relay *Relay;
static pid_t Mock, Bpid, Cpid;
static int MockPort, RelayPort, Bport;
static char Blog[400];
static char *Reader_secret, *Reader_tok, *Narrow_secret, *Member_secret;

/* Every secret seen during the run: must never show up where it should
 * not. A JSON array of {"what":…, "value":…}. */
static json_t *Secrets;

static void
secret_add(const char *what, const char *value)
{
    size_t i;
    json_t *e;

    if (value == NULL || strlen(value) < 8)
        return;
    json_array_foreach(
        Secrets, i,
        e) if (strcmp(json_string_value(json_object_get(e, "value")), value) ==
               0) return;
    json_array_append_new(Secrets,
                          json_pack("{s:s,s:s}", "what", what, "value", value));
}

/*---- HTTP ----*/

/* realloc that never returns NULL: a test out of memory just stops. */
static void *
xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);

    if (q == NULL)
        abort();
    return q;
}

/* The single value of name in url's query (owned), or NULL. */
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

/*---- The simulator ----*/

/*---- Callbacks, as WeCom sends them ----*/

/* The shared helpers, each secret they see remembered to look for. */
static void
push_ticket(void)
{
    secret_add("suite_ticket", tc_push_ticket(S1));
}

static char *
svc_add(const char *name, const char *scopes, const char *opt, const char *val)
{
    char *s = tc_svc_add(name, scopes, opt, val);

    /* the part after the id is the secret */
    secret_add("service secret", strchr(s, '.') + 1);
    return s;
}

static char *
token_for(int port, const char *secret, const char *corp)
{
    char *t = tc_token_for(port, secret, corp);

    secret_add("broker token", t);
    return t;
}

/* create_auth with code (NULL: a fresh one from the simulator for corp). */
static void
create_auth(const char *corp, const char *code)
{
    char body[256], tsb[24];
    json_t *r = NULL;
    const char *kv[10];

    if (code == NULL) {
        snprintf(body, sizeof(body), "{\"suite_id\":\"%s\",\"corpid\":\"%s\"}",
                 S1, corp);
        r = h_sim_json(MockPort, "POST", "/__mock/install", body);
        code = h_str(r, "auth_code");
    }
    secret_add("AuthCode", code);
    snprintf(tsb, sizeof(tsb), "%ld", h_next_ts());
    kv[0] = "SuiteId";
    kv[1] = S1;
    kv[2] = "AuthCode";
    kv[3] = code;
    kv[4] = "InfoType";
    kv[5] = "create_auth";
    kv[6] = "TimeStamp";
    kv[7] = tsb;
    kv[8] = "State";
    kv[9] = "";
    tc_post_event(S1, kv, 5);
    json_decref(r);
}

/*---- brokerctl and Redis ----*/

/* brokerctl -c CONF ARGS... (NULL-terminated); the whole output (owned)
 * and the exit status. */
static char *
ctl_text(int *rc, const char *const *args)
{
    const char *argv[24];
    char *out = NULL;
    size_t n = 0, i;

    argv[n++] = "bin/brokerctl";
    argv[n++] = "-c";
    argv[n++] = H.conf;
    for (i = 0; args[i] != NULL && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    *rc = h_run(argv, &out);
    return out;
}

static json_t *
ctl(int *rc, ...)
{
    const char *args[20];
    char *out;
    json_error_t e;
    json_t *v;
    size_t n = 0;
    va_list ap;
    const char *a;

    args[n++] = "--json";
    va_start(ap, rc);
    while ((a = va_arg(ap, const char *)) != NULL && n < 19)
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    out = ctl_text(rc, args);
    v = json_loads(out, JSON_DISABLE_EOF_CHECK, &e);
    free(out);
    return v;
}

static size_t
redis_count_keys(const char *pattern)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    size_t n = 0;

    assert_non_null(c);
    r = redisCommand(c, "KEYS %s", pattern);
    if (r != NULL && r->type == REDIS_REPLY_ARRAY)
        n = r->elements;
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return n;
}

/*---- Raw HTTP ----*/

/* A connection to 127.0.0.1:port from the loopback address src. */
static int
tcp_connect_from(const char *src, int port)
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

static int
tcp_connect(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Send len bytes (the server may close early: that is an answer too),
 * optionally close our side, and read until the server closes or stays
 * silent for 300 ms after answering (3 s before). Returns what came back
 * (owned, NUL-terminated). */
static char *
raw_exchange(int port, const char *data, size_t len, int half_close,
             size_t *outlen)
{
    int fd = tcp_connect(port);
    size_t cap = 4096, n = 0;
    char *out = malloc(cap);
    struct pollfd p;
    ssize_t w;
    long deadline;

    while (len > 0) {
        w = send(fd, data, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        data += w;
        len -= (size_t)w;
    }
    if (half_close)
        shutdown(fd, SHUT_WR);
    deadline = h_now_ms() + 3000;
    for (;;) {
        long left = deadline - h_now_ms();

        if (left <= 0)
            break;
        p.fd = fd;
        p.events = POLLIN;
        if (poll(&p, 1, (int)left) <= 0)
            break;
        if (n + 4096 + 1 > cap)
            out = xrealloc(out, cap *= 2);
        w = recv(fd, out + n, 4096, 0);
        if (w <= 0)
            break;
        n += (size_t)w;
        deadline = h_now_ms() + 300;
    }
    close(fd);
    out[n] = '\0';
    *outlen = n;
    return out;
}

/* Status codes of every response in a raw reply, in order; returns how
 * many (at most max). */
static size_t
statuses(const char *raw, size_t len, int *st, size_t max)
{
    size_t n = 0;
    const char *p = raw, *end = raw + len;

    while (n < max && p < end &&
           (p = memmem(p, (size_t)(end - p), "HTTP/1.", 7)) != NULL) {
        if (end - p > 12 && p[8] == ' ')
            st[n++] = (int)strtol(p + 9, NULL, 10);
        p += 7;
    }
    return n;
}

/* The body of the first response (after the blank line), or "". */
static const char *
raw_body(const char *raw)
{
    const char *b = strstr(raw, "\r\n\r\n");

    return b ? b + 4 : "";
}

static int
alive_and_healthy(void)
{
    char *url, *body = NULL;
    long st;

    if (waitpid(H.broker_pid, NULL, WNOHANG) == H.broker_pid) {
        fprintf(stderr, "# the broker died; see %s\n", H.log);
        H.broker_pid = 0;
        return 0;
    }
    url = h_int_url(&H, "/healthz");
    st = h_http("GET", url, NULL, 0, &body);
    free(url);
    if (st != 200 || strcmp(body, "ok") != 0) {
        free(body);
        return 0;
    }
    free(body);
    /* and the callback listener still answers (its 404 for /healthz) */
    url = h_cb_url(&H, "/healthz");
    st = h_http("GET", url, NULL, 0, &body);
    free(url);
    free(body);
    return st == 404;
}

/*---- Fixtures ----*/

static const char *
broker_extra(int api_port)
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
             api_port, MockPort, MockPort);
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

static int
b_ready(void *arg)
{
    char url[64], *body = NULL;
    long st;

    (void)arg;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", Bport);
    st = h_http("GET", url, NULL, 0, &body);
    free(body);
    return st == 200;
}

/* The provider-site install of corp from client address src: the
 * AuthCode WeCom hands the browser (owned). */
static char *
browser_install(const char *corp, const char *src)
{
    char body[128], url[600], *code;
    struct sc_resp r;

    snprintf(body, sizeof(body), "{\"corpid\":\"%s\"}", corp);
    h_sim_ok(MockPort, "POST", "/__mock/oauth_corp", body);
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/wecom/suite/" S1
             "/install?return=https%%3A%%2F%%2Fapp.example%%2Freturn%%2Fx",
             H.cb_port);
    sc_fetch(&r, "GET", url, NULL, src, NULL);
    assert_int_equal(r.status, 302);
    assert_non_null(r.loc);
    snprintf(url, sizeof(url), "%s", r.loc);
    sc_resp_free(&r);
    /* WeCom's page: the admin approves */
    sc_fetch(&r, "GET", url, NULL, src, NULL);
    assert_int_equal(r.status, 302);
    code = param(r.loc, "auth_code");
    assert_non_null(code);
    secret_add("AuthCode (provider site)", code);
    snprintf(url, sizeof(url), "%s", r.loc);
    sc_resp_free(&r);
    sc_fetch(&r, "GET", url, NULL, src, NULL);
    assert_true(r.status == 302 || r.status == 200);
    sc_resp_free(&r);
    return code;
}

/* The tenants (one installed from the browser) and the services: the
 * group's starting point. */
static void tenants_ready(void);

static int
setup(void **state)
{
    const char *extra[] = {"--suite", S1 ":" H_SECRET, "--corps",
                           "3",       "--quiet",       NULL};
    char bconf[400];
    int cb = 0, ip = 0;

    (void)state;
    Secrets = json_array();
    secret_add("suite secret", H_SECRET);
    secret_add("callback token", H_TOKEN);
    secret_add("EncodingAESKey", H_AESKEY);
    secret_add("master key", H_MASTER_HEX);
    secret_add("index key", H_INDEX_HEX);
    if (h_setup(&H) != 0)
        return -1;
    if (getenv("KEEP_TEST_DIR") != NULL)
        fprintf(stderr, "# test directory: %s\n", H.dir);
    Mock = h_mock_start(H.dir, extra, &MockPort);
    if (Mock == 0)
        return -1;
    /* both instances reach WeCom through the relay, which records what
     * WeCom gave them: the tokens, codes and tickets to look for */
    Relay = h_relay_start(MockPort, &RelayPort);
    if (Relay == NULL)
        return -1;
    h_relay_record(Relay, 1);
    snprintf(bconf, sizeof(bconf), "%s/broker-b.conf", H.dir);
    snprintf(Blog, sizeof(Blog), "%s/broker-b.log", H.dir);
    if (h_write_conf_to(&H, bconf, 0, broker_extra(RelayPort)) != 0 ||
        finish_conf(bconf, H.cb_port) != 0)
        return -1;
    Bport = H.int_port;
    cb = H.cb_port;
    ip = H.int_port;
    if (h_write_conf(&H, 0, broker_extra(RelayPort)) != 0 ||
        finish_conf(H.conf, H.cb_port) != 0 || H.cb_port == cb ||
        H.int_port == ip || h_broker_start(&H) != 0)
        return -1;
    Bpid = h_spawn_broker(bconf, Blog);
    if (Bpid == 0 || !h_wait(b_ready, NULL, 20000))
        return -1;
    tc_init(&H, MockPort);
    if (wecom_crypto_new(H_TOKEN, H_AESKEY, &C) != BRK_OK)
        return -1;
    tenants_ready();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    wecom_crypto_free(C);
    tc_done();
    if (Bpid > 0)
        h_stop(Bpid, SIGKILL);
    if (Cpid > 0)
        h_stop(Cpid, SIGKILL);
    if (H.broker_pid > 0)
        h_broker_stop(&H, SIGKILL);
    h_relay_stop(Relay);
    if (Mock > 0)
        h_stop(Mock, SIGTERM);
    free(Reader_secret);
    free(Reader_tok);
    free(Narrow_secret);
    free(Member_secret);
    json_decref(Secrets);
    h_teardown(&H);
    return 0;
}

/*---- Installs and services (set up once for the group) ----*/

static void
tenants_ready(void)
{
    char *code;

    push_ticket();
    create_auth(CORP1, NULL);
    tc_wait_status(S1, CORP1, "active", 30000);
    code = browser_install(CORP2, "127.0.0.2");
    tc_wait_status(S1, CORP2, "active", 30000);
    free(code);
    Reader_secret = svc_add("reader", "contacts.read", NULL, NULL);
    Narrow_secret = svc_add("narrow", "contacts.read", "--corps", CORP1);
    Member_secret =
        svc_add("member", "contacts.read,member.sensitive", NULL, NULL);
    Reader_tok = token_for(H.int_port, Reader_secret, CORP1);
}

/*---- A token is bound to its service and its tenant ----*/

static void
test_token_bound_to_its_tenant(void **state)
{
    struct sc_resp r, r2;
    char *tok2, *ntok;
    json_t *mine;

    (void)state;
    /* each corp's token reads that corp's data: the same userid names
     * another person in the other corp */
    sc_call(&r, H.int_port, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", Reader_tok, MEMBER);
    SC_EXPECT(&r, 200, 0);
    tok2 = token_for(H.int_port, Reader_secret, CORP2);
    sc_call(&r2, H.int_port, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", tok2, MEMBER);
    SC_EXPECT(&r2, 200, 0);
    mine = r.json;
    assert_false(json_equal(mine, r2.json));
    sc_resp_free(&r2);
    /* naming the other corp in the request changes nothing: an
     * undeclared parameter is refused */
    sc_call(&r2, H.int_port, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s&corpid=%s", Reader_tok,
            MEMBER, CORP2);
    SC_EXPECT(&r2, 200, 40035);
    sc_resp_free(&r2);
    sc_call(&r2, H.int_port, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s&auth_corpid=%s",
            Reader_tok, MEMBER, CORP2);
    SC_EXPECT(&r2, 200, 40035);
    sc_resp_free(&r2);
    /* a tenant of nobody: no token */
    sc_call(&r2, H.int_port, "GET", NULL,
            "/cgi-bin/gettoken?corpid=%s&corpsecret=%s", CORP3, Reader_secret);
    SC_EXPECT(&r2, 200, 40013);
    assert_null(json_object_get(r2.json, "access_token"));
    sc_resp_free(&r2);
    /* outside the service's --corps: no token, on either instance */
    sc_call(&r2, H.int_port, "GET", NULL,
            "/cgi-bin/gettoken?corpid=%s&corpsecret=%s", CORP2, Narrow_secret);
    SC_EXPECT(&r2, 200, 48004);
    assert_null(json_object_get(r2.json, "access_token"));
    sc_resp_free(&r2);
    sc_call(&r2, Bport, "GET", NULL,
            "/cgi-bin/gettoken?corpid=%s&corpsecret=%s", CORP2, Narrow_secret);
    SC_EXPECT(&r2, 200, 48004);
    sc_resp_free(&r2);
    /* inside it, yes, and that token reads only its own corp */
    ntok = token_for(Bport, Narrow_secret, CORP1);
    sc_call(&r2, Bport, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", ntok, MEMBER);
    SC_EXPECT(&r2, 200, 0);
    assert_true(json_equal(r2.json, mine));
    sc_resp_free(&r2);
    /* another service's secret with this id, or this secret with another
     * id: refused */
    {
        char forged[256];
        const char *dot = strchr(Reader_secret, '.');

        snprintf(forged, sizeof(forged), "%.*s%s",
                 (int)(strchr(Narrow_secret, '.') - Narrow_secret),
                 Narrow_secret, dot);
        sc_call(&r2, H.int_port, "GET", NULL,
                "/cgi-bin/gettoken?corpid=%s&corpsecret=%s", CORP1, forged);
        SC_EXPECT(&r2, 200, 40001);
        sc_resp_free(&r2);
    }
    /* a token cut short or extended is unknown */
    {
        char t[128];

        snprintf(t, sizeof(t), "%.*s", (int)strlen(Reader_tok) - 1, Reader_tok);
        sc_call(&r2, H.int_port, "GET", NULL,
                "/cgi-bin/user/get?access_token=%s&userid=%s", t, MEMBER);
        SC_EXPECT(&r2, 200, 40014);
        sc_resp_free(&r2);
        snprintf(t, sizeof(t), "%sA", Reader_tok);
        sc_call(&r2, H.int_port, "GET", NULL,
                "/cgi-bin/user/get?access_token=%s&userid=%s", t, MEMBER);
        SC_EXPECT(&r2, 200, 40014);
        sc_resp_free(&r2);
    }
    sc_resp_free(&r);
    free(tok2);
    free(ntok);
}

/*---- Revoke ends a service's tokens on every instance ----*/

struct both {
    const char *tok;
};

static long
code_on(int port, const char *tok)
{
    struct sc_resp r;
    long c;

    sc_call(&r, port, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", tok, MEMBER);
    c = r.status == 200 ? sc_ecode(&r) : -r.status;
    if (c != 0 && strstr(r.body ? r.body : "", "\"userid\"") != NULL)
        c = -1000; /* an error with data: never */
    sc_resp_free(&r);
    return c;
}

static int
refused_on_both(void *arg)
{
    struct both *b = arg;

    return code_on(H.int_port, b->tok) == 40014 &&
           code_on(Bport, b->tok) == 40014;
}

static void
test_revoked_token_refused_on_every_instance(void **state)
{
    char *sec = svc_add("temp", "contacts.read", NULL, NULL);
    char *tok = token_for(Bport, sec, CORP1);
    char *out;
    struct both b = {tok};
    const char *args[] = {"service", "revoke", "temp", NULL};
    long t0, ms;
    int rc, i;

    (void)state;
    /* in use, and cached, on both */
    for (i = 0; i < 3; i++) {
        assert_int_equal(code_on(H.int_port, tok), 0);
        assert_int_equal(code_on(Bport, tok), 0);
    }
    out = ctl_text(&rc, args);
    assert_int_equal(rc, 0);
    free(out);
    t0 = h_now_ms();
    assert_true(h_wait(refused_on_both, &b, 5000));
    ms = h_now_ms() - t0;
    fprintf(stderr, "# revoked token refused on both instances after %ld ms\n",
            ms);
    assert_true(ms <= 1000);
    /* and it stays refused: no instance serves it from a cache */
    for (i = 0; i < 20; i++) {
        assert_int_equal(code_on(H.int_port, tok), 40014);
        assert_int_equal(code_on(Bport, tok), 40014);
    }
    /* the secret is ended too */
    {
        struct sc_resp r;

        sc_call(&r, H.int_port, "GET", NULL,
                "/cgi-bin/gettoken?corpid=%s&corpsecret=%s", CORP1, sec);
        SC_EXPECT(&r, 200, 40001);
        sc_resp_free(&r);
    }
    free(sec);
    free(tok);
}

/*---- The callback listener serves SPEC §4 and §4b only ----*/

static void
test_callback_listener_routes(void **state)
{
    static const char *const paths[] = {
        "/healthz",
        "/readyz",
        "/metrics",
        "/",
        "/cgi-bin/gettoken?corpid=" CORP1 "&corpsecret=x",
        "/cgi-bin/user/get?userid=" MEMBER,
        "/cgi-bin/auth/getuserinfo?code=x",
        "/wecom",
        "/wecom/suite/" S1,
        "/wecom/suite/" S1 "/",
        "/wecom/suite/" S1 "/callback/",
        "/wecom/suite/" S1 "/callback/x",
        "/wecom/suite/" S1 "/datax",
        "/wecom/suite/" S1 "/install/x",
        "/wecom/suite/" S1 "/oauth",
        "/wecom/suite/" S1 "/oauth/x",
        "/wecom/suite//callback",
        "/wecom/suite/" S1 "/../../healthz",
        "/WECOM/SUITE/" S1 "/CALLBACK",
        "/favicon.ico",
        "/__mock/corps",
    };
    struct sc_resp r;
    size_t i;
    char *url;

    (void)state;
    for (i = 0; i < nitems(paths); i++) {
        url = h_cb_url(&H, paths[i]);
        sc_fetch(&r, "GET", url, NULL, NULL, NULL);
        if (r.status != 404)
            fprintf(stderr, "# callback listener GET %s: %ld %.100s\n",
                    paths[i], r.status, r.body);
        assert_int_equal(r.status, 404);
        assert_null(strstr(r.body, "errcode"));
        assert_null(strstr(r.body, "# TYPE"));
        assert_string_not_equal(r.body, "ok");
        sc_resp_free(&r);
        sc_fetch(&r, "POST", url, "x", NULL, NULL);
        assert_int_equal(r.status, 404);
        sc_resp_free(&r);
        free(url);
    }
    /* and the internal listener does not serve the public routes */
    for (i = 0; i < 4; i++) {
        static const char *const pub[] = {
            "/wecom/suite/" S1 "/callback?msg_signature=a&timestamp=1"
            "&nonce=1&echostr=x",
            "/wecom/suite/" S1 "/data?msg_signature=a&timestamp=1"
            "&nonce=1&echostr=x",
            "/wecom/suite/" S1 "/install",
            "/wecom/suite/" S1 "/oauth/authorize?scope=snsapi_base&return="
            "https%3A%2F%2Fapp.example%2Freturn%2Fx",
        };

        url = h_int_url(&H, pub[i]);
        sc_fetch(&r, "GET", url, NULL, NULL, NULL);
        assert_true(r.status != 302 && r.status != -1);
        assert_null(r.loc);
        assert_true(sc_ecode(&r) != 0 && sc_ecode(&r) != -9999);
        sc_resp_free(&r);
        free(url);
    }
}

/*---- Hostile requests ----*/

enum listener { CB, INT };

struct hostile {
    const char *name;
    enum listener on;
    /* build the bytes to send (owned) */
    char *(*build)(size_t *len);
    int half_close; /* the client gives up after sending */
    int want;       /* an exact first status wanted, 0: any refusal;
                     * 200: the first request is a sound one, the
                     * garbage after it is what is hostile */
};

static char *
dup_len(const char *s, size_t *len)
{
    *len = strlen(s);
    return strdup(s);
}

static char *fmt_req(size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static char *
fmt_req(size_t *len, const char *fmt, ...)
{
    va_list ap;
    char *out = NULL;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&out, fmt, ap);
    va_end(ap);
    assert_true(n > 0);
    *len = (size_t)n;
    return out;
}

static char *
big(size_t n, char c)
{
    char *s = malloc(n + 1);

    memset(s, c, n);
    s[n] = '\0';
    return s;
}

#define CB_PATH "/wecom/suite/" S1 "/callback"
#define CB_Q                                                                   \
    "msg_signature=0123456789abcdef0123456789abcdef01234567"                   \
    "&timestamp=1700000000&nonce=n1"

static char *
b_cb_huge_url(size_t *len)
{
    char *b = big(70000, 'A'), *r;

    r = fmt_req(len,
                "GET " CB_PATH "?" CB_Q "&echostr=%s HTTP/1.1\r\n"
                "Host: x\r\nConnection: close\r\n\r\n",
                b);
    free(b);
    return r;
}

static char *
b_cb_long_url(size_t *len)
{
    /* under libevent's header limit: the handler sees it */
    char *b = big(40000, 'A'), *r;

    r = fmt_req(len,
                "GET " CB_PATH "?" CB_Q "&echostr=%s HTTP/1.1\r\n"
                "Host: x\r\nConnection: close\r\n\r\n",
                b);
    free(b);
    return r;
}

static char *
b_huge_header(size_t *len)
{
    char *b = big(70000, 'h'), *r;

    r = fmt_req(len,
                "GET " CB_PATH "?" CB_Q "&echostr=x HTTP/1.1\r\n"
                "Host: x\r\nX-Big: %s\r\nConnection: close\r\n\r\n",
                b);
    free(b);
    return r;
}

static char *
b_many_headers(size_t *len)
{
    size_t cap = 2000 * 64, n = 0, i;
    char *r = malloc(cap + 256);

    n += (size_t)snprintf(r + n, 256,
                          "GET " CB_PATH "?" CB_Q
                          "&echostr=x HTTP/1.1\r\nHost: x\r\n");
    for (i = 0; i < 2000; i++)
        n += (size_t)snprintf(r + n, 64, "X-H%zu: %040zu\r\n", i, i);
    n += (size_t)snprintf(r + n, 64, "\r\n");
    *len = n;
    return r;
}

static char *
b_cb_huge_body_declared(size_t *len)
{
    char *b = big(300000, 'x'), *r;

    r = fmt_req(len,
                "POST " CB_PATH "?" CB_Q " HTTP/1.1\r\nHost: x\r\n"
                "Content-Length: 100000000\r\n\r\n%s",
                b);
    free(b);
    return r;
}

static char *
b_cb_body_over_64k(size_t *len)
{
    /* signed and fresh, so only its size is wrong */
    char *enc = big(100000, 'A'), *r, *body, sig[WECOM_CRYPTO_SIG_SIZE];
    char ts[24];
    size_t blen;

    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    assert_int_equal(wecom_crypto_sign(C, ts, "big1", enc, sig), BRK_OK);
    body = fmt_req(&blen,
                   "<xml><ToUserName>" S1 "</ToUserName><Encrypt>%s"
                   "</Encrypt></xml>",
                   enc);
    r = fmt_req(len,
                "POST " CB_PATH "?msg_signature=%s&timestamp=%s&nonce=big1 "
                "HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n"
                "Connection: close\r\n\r\n%s",
                sig, ts, blen, body);
    free(body);
    free(enc);
    return r;
}

static char *
b_cb_bad_percent(size_t *len)
{
    return dup_len("GET " CB_PATH "?msg_signature=%zz&timestamp=%&nonce=%0"
                   "&echostr=%%%% HTTP/1.1\r\nHost: x\r\n"
                   "Connection: close\r\n\r\n",
                   len);
}

static char *
b_cb_repeated(size_t *len)
{
    return dup_len("GET " CB_PATH "?" CB_Q "&nonce=n2&echostr=x HTTP/1.1\r\n"
                   "Host: x\r\nConnection: close\r\n\r\n",
                   len);
}

static char *
b_cb_repeated_sig(size_t *len)
{
    return dup_len("POST " CB_PATH "?" CB_Q "&msg_signature=x HTTP/1.1\r\n"
                   "Host: x\r\nContent-Length: 5\r\n"
                   "Connection: close\r\n\r\n<xml>",
                   len);
}

static char *
b_nul_in_request_line(size_t *len)
{
    static const char r[] = "GET " CB_PATH "?" CB_Q "\0&echostr=x HTTP/1.1\r\n"
                            "Host: x\r\nConnection: close\r\n\r\n";
    char *out = malloc(sizeof(r));

    memcpy(out, r, sizeof(r));
    *len = sizeof(r) - 1;
    return out;
}

static char *
b_cb_pct_nul(size_t *len)
{
    return dup_len("GET " CB_PATH "?msg_signature=a%00b&timestamp=1700000000"
                   "&nonce=n%001&echostr=x%00y HTTP/1.1\r\nHost: x\r\n"
                   "Connection: close\r\n\r\n",
                   len);
}

static char *
b_cb_nul_body(size_t *len)
{
    static const char body[] = "<xml><ToUserName><![CDATA[a\0b]]></ToUserName>"
                               "<Encrypt><![CDATA[\0\0\0]]></Encrypt></xml>";
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "POST " CB_PATH "?" CB_Q " HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     sizeof(body) - 1);
    char *out = malloc((size_t)n + sizeof(body));

    memcpy(out, head, (size_t)n);
    memcpy(out + n, body, sizeof(body) - 1);
    *len = (size_t)n + sizeof(body) - 1;
    return out;
}

static char *
b_cb_non_utf8(size_t *len)
{
    static const char body[] =
        "<xml><Encrypt>\xff\xfe\xc0\xaf\xed\xa0\x80</Encrypt></xml>";

    return fmt_req(len,
                   "POST " CB_PATH "?" CB_Q " HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                   sizeof(body) - 1, body);
}

static char *
b_cb_non_utf8_path(size_t *len)
{
    return dup_len("GET /wecom/suite/\xff\xfe\xc0\xaf/callback?" CB_Q
                   " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                   len);
}

static char *
b_cb_http10(size_t *len)
{
    return dup_len("POST " CB_PATH "?" CB_Q " HTTP/1.0\r\n"
                   "Content-Length: 13\r\n\r\n<xml></xml>\r\n",
                   len);
}

static char *
b_http09(size_t *len)
{
    return dup_len("GET " CB_PATH "\r\n", len);
}

static char *
b_pipelined_garbage(size_t *len)
{
    return dup_len("GET " CB_PATH "?" CB_Q "&echostr=x HTTP/1.1\r\nHost: x"
                   "\r\n\r\n\x01\x02\x03garbage\xff\xfe\r\n\r\n"
                   "GET / HTTP/1.1\r\n\r\n",
                   len);
}

static char *
b_binary(size_t *len)
{
    char *out = malloc(4096);
    size_t i;

    for (i = 0; i < 4096; i++)
        out[i] = (char)(unsigned char)((i * 131 + 7) & 0xff);
    *len = 4096;
    return out;
}

static char *
b_unknown_method(size_t *len)
{
    return dup_len("FOO " CB_PATH " HTTP/1.1\r\nHost: x\r\n"
                   "Connection: close\r\n\r\n",
                   len);
}

static char *
b_bad_version(size_t *len)
{
    return dup_len("GET " CB_PATH " HTTP/9.9\r\nHost: x\r\n\r\n", len);
}

static char *
b_header_no_colon(size_t *len)
{
    return dup_len("GET " CB_PATH "?" CB_Q "&echostr=x HTTP/1.1\r\nHost x"
                   "\r\n\r\n",
                   len);
}

static char *
b_negative_length(size_t *len)
{
    return dup_len("POST " CB_PATH "?" CB_Q " HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: -5\r\n\r\n",
                   len);
}

static char *
b_smuggle(size_t *len)
{
    return dup_len("POST " CB_PATH "?" CB_Q " HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "0\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                   len);
}

static char *
b_bad_chunk(size_t *len)
{
    return dup_len("POST " CB_PATH "?" CB_Q " HTTP/1.1\r\nHost: x\r\n"
                   "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
                   len);
}

static char *
b_cb_truncated_body(size_t *len)
{
    return dup_len("POST " CB_PATH "?" CB_Q " HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: 1000\r\n\r\n<xml><Encrypt>",
                   len);
}

static char *
b_cb_absolute_url(size_t *len)
{
    return dup_len("GET http://evil.example/healthz HTTP/1.1\r\n"
                   "Host: evil.example\r\nConnection: close\r\n\r\n",
                   len);
}

static char *
b_cb_traversal(size_t *len)
{
    return dup_len("GET /wecom/suite/" S1 "/%2e%2e/%2e%2e/metrics HTTP/1.1\r\n"
                   "Host: x\r\nConnection: close\r\n\r\n",
                   len);
}

static char *
b_cb_long_suite(size_t *len)
{
    char *b = big(5000, 'w'), *r;

    r = fmt_req(len,
                "GET /wecom/suite/%s/callback?" CB_Q "&echostr=x "
                "HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                b);
    free(b);
    return r;
}

static char *
b_cb_doctype(size_t *len)
{
    static const char body[] =
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
        "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
        "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>"
        "<xml><ToUserName>&lol3;</ToUserName><Encrypt>&lol3;</Encrypt></xml>";

    return fmt_req(len,
                   "POST " CB_PATH "?" CB_Q " HTTP/1.1\r\nHost: x\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                   sizeof(body) - 1, body);
}

static char *
b_cb_deep_xml(size_t *len)
{
    size_t depth = 5000, i, n = 5;
    char *body = malloc(depth * 7 + 64), *r;

    memcpy(body, "<xml>", 5);
    for (i = 0; i < depth; i++) {
        memcpy(body + n, "<a>", 3);
        n += 3;
    }
    for (i = 0; i < depth; i++) {
        memcpy(body + n, "</a>", 4);
        n += 4;
    }
    memcpy(body + n, "</xml>", 7);
    n += 6;
    r = fmt_req(len,
                "POST " CB_PATH "?" CB_Q " HTTP/1.1\r\nHost: x\r\n"
                "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                n, body);
    free(body);
    return r;
}

/* The internal listener: the same abuse against the service API, with a
 * valid token, so the hostile part reaches the parameter checks. */

static char *
b_int_huge_url(size_t *len)
{
    char *b = big(70000, 'u'), *r;

    r = fmt_req(len,
                "GET /cgi-bin/user/get?access_token=%s&userid=%s "
                "HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                Reader_tok, b);
    free(b);
    return r;
}

static char *
b_int_long_param(size_t *len)
{
    char *b = big(40000, 'u'), *r;

    r = fmt_req(len,
                "GET /cgi-bin/user/get?access_token=%s&userid=%s "
                "HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                Reader_tok, b);
    free(b);
    return r;
}

static char *
b_int_huge_header(size_t *len)
{
    char *b = big(70000, 'h'), *r;

    r = fmt_req(len,
                "GET /cgi-bin/user/get?access_token=%s&userid=" MEMBER
                " HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n"
                "Connection: close\r\n\r\n",
                Reader_tok, b);
    free(b);
    return r;
}

static char *
b_int_huge_body(size_t *len)
{
    /* over the listener's 1 MiB, under what libevent buffers */
    char *b = big(2 * 1024 * 1024, ' '), *r;

    b[0] = '{';
    b[strlen(b) - 1] = '}';
    r = fmt_req(len,
                "POST /cgi-bin/user/list_id?access_token=%s HTTP/1.1\r\n"
                "Host: x\r\nContent-Length: %zu\r\n"
                "Connection: close\r\n\r\n%s",
                Reader_tok, strlen(b), b);
    free(b);
    return r;
}

static char *
b_int_huge_body_declared(size_t *len)
{
    return fmt_req(len,
                   "POST /cgi-bin/user/list_id?access_token=%s "
                   "HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000"
                   "\r\n\r\n{",
                   Reader_tok);
}

static char *
b_int_bad_percent(size_t *len)
{
    return fmt_req(len,
                   "GET /cgi-bin/user/get?access_token=%s&userid=%%zz%%"
                   " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                   Reader_tok);
}

static char *
b_int_bad_percent_token(size_t *len)
{
    return dup_len("GET /cgi-bin/user/get?access_token=%G0%&userid=" MEMBER
                   " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                   len);
}

static char *
b_int_repeated(size_t *len)
{
    return fmt_req(len,
                   "GET /cgi-bin/user/get?access_token=%s&userid=" MEMBER
                   "&userid=u00001 HTTP/1.1\r\nHost: x\r\n"
                   "Connection: close\r\n\r\n",
                   Reader_tok);
}

static char *
b_int_repeated_token(size_t *len)
{
    return fmt_req(len,
                   "GET /cgi-bin/user/get?access_token=%s&access_token="
                   "%s&userid=" MEMBER " HTTP/1.1\r\nHost: x\r\n"
                   "Connection: close\r\n\r\n",
                   Reader_tok, Reader_tok);
}

static char *
b_int_nul_line(size_t *len)
{
    char head[512];
    int n =
        snprintf(head, sizeof(head),
                 "GET /cgi-bin/user/get?access_token=%s&userid=u0", Reader_tok);
    static const char tail[] = "\0003 HTTP/1.1\r\nHost: x\r\n"
                               "Connection: close\r\n\r\n";
    char *out = malloc((size_t)n + sizeof(tail));

    memcpy(out, head, (size_t)n);
    memcpy(out + n, tail, sizeof(tail) - 1);
    *len = (size_t)n + sizeof(tail) - 1;
    return out;
}

static char *
b_int_pct_nul(size_t *len)
{
    return fmt_req(len,
                   "GET /cgi-bin/user/get?access_token=%s&userid=" MEMBER
                   "%%00x HTTP/1.1\r\nHost: x\r\nConnection: close"
                   "\r\n\r\n",
                   Reader_tok);
}

static char *
b_int_nul_json(size_t *len)
{
    char head[512];
    static const char body[] = "{\"cursor\":\"a\0b\",\"limit\":10}";
    int n = snprintf(head, sizeof(head),
                     "POST /cgi-bin/user/list_id?access_token=%s HTTP/1.1\r\n"
                     "Host: x\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     Reader_tok, sizeof(body) - 1);
    char *out = malloc((size_t)n + sizeof(body));

    memcpy(out, head, (size_t)n);
    memcpy(out + n, body, sizeof(body) - 1);
    *len = (size_t)n + sizeof(body) - 1;
    return out;
}

static char *
b_int_non_utf8(size_t *len)
{
    return fmt_req(len,
                   "GET /cgi-bin/user/get?access_token=%s&userid=%%ff%%fe"
                   "%%c0%%af HTTP/1.1\r\nHost: x\r\nConnection: close"
                   "\r\n\r\n",
                   Reader_tok);
}

static char *
b_int_non_utf8_json(size_t *len)
{
    static const char body[] = "{\"cursor\":\"\xff\xfe\xc0\xaf\",\"limit\":10}";

    return fmt_req(len,
                   "POST /cgi-bin/user/list_id?access_token=%s HTTP/1.1"
                   "\r\nHost: x\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n%s",
                   Reader_tok, sizeof(body) - 1, body);
}

static char *
b_int_deep_json(size_t *len)
{
    size_t depth = 100000;
    char *b = big(2 * depth, '['), *r;

    memset(b + depth, ']', depth);
    r = fmt_req(len,
                "POST /cgi-bin/user/list_id?access_token=%s HTTP/1.1\r\n"
                "Host: x\r\nContent-Length: %zu\r\n"
                "Connection: close\r\n\r\n%s",
                Reader_tok, strlen(b), b);
    free(b);
    return r;
}

static char *
b_int_dup_json_key(size_t *len)
{
    static const char body[] = "{\"cursor\":\"\",\"limit\":10,\"limit\":1000}";

    return fmt_req(len,
                   "POST /cgi-bin/user/list_id?access_token=%s HTTP/1.1"
                   "\r\nHost: x\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n%s",
                   Reader_tok, sizeof(body) - 1, body);
}

static char *
b_int_http10(size_t *len)
{
    return fmt_req(len,
                   "GET /cgi-bin/user/get?access_token=%s&userid=" MEMBER
                   " HTTP/1.0\r\n\r\n",
                   Reader_tok);
}

static char *
b_int_pipelined(size_t *len)
{
    return fmt_req(len,
                   "GET /cgi-bin/user/get?access_token=%s&userid=" MEMBER
                   " HTTP/1.1\r\nHost: x\r\n\r\n\x01\x02garbage\xff\r\n"
                   "\r\n",
                   Reader_tok);
}

static char *
b_int_truncated(size_t *len)
{
    return fmt_req(len,
                   "POST /cgi-bin/user/list_id?access_token=%s HTTP/1.1"
                   "\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"cur",
                   Reader_tok);
}

static char *
b_int_no_token_garbage_path(size_t *len)
{
    return dup_len("GET /cgi-bin/%2e%2e/%2e%2e/etc/passwd?access_token=x "
                   "HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                   len);
}

static char *
b_int_gettoken_hostile(size_t *len)
{
    char *b = big(5000, 'a'), *r;

    r = fmt_req(len,
                "GET /cgi-bin/gettoken?corpid=%%00%s&corpsecret="
                "%%ff.%%ff HTTP/1.1\r\nHost: x\r\nConnection: close"
                "\r\n\r\n",
                b);
    free(b);
    return r;
}

/* What the internal listener may answer a hostile request: a 4xx, a
 * JSON error of SPEC §5 (never errcode 0 with data), or a 501 for a
 * method libevent does not know (RFC 9110 §9.1). */
static void
check_internal(const struct hostile *c, const char *raw, size_t n)
{
    int st[8];
    size_t k = statuses(raw, n, st, 8), i;
    const char *body = raw_body(raw);
    json_error_t e;
    json_t *j;

    for (i = 0; i < k; i++)
        assert_true((st[i] >= 400 && st[i] < 500) || st[i] == 200 ||
                    st[i] == 501 || st[i] == 503);
    if (k == 0 || c->want == 200)
        return;
    if (st[0] == 200) {
        /* the handler answered: WeCom's shape, an error */
        j = json_loads(body, JSON_DISABLE_EOF_CHECK, &e);
        if (j == NULL)
            fprintf(stderr, "# %s: 200 without JSON: %.200s\n", c->name, body);
        assert_non_null(j);
        assert_true(json_is_integer(json_object_get(j, "errcode")));
        assert_non_null(json_object_get(j, "errmsg"));
        assert_int_not_equal(json_integer_value(json_object_get(j, "errcode")),
                             0);
        assert_null(json_object_get(j, "userid"));
        json_decref(j);
    }
}

static void
run_hostile(const struct hostile *c)
{
    size_t len, n;
    char *req = c->build(&len), *raw;
    int st[8];
    size_t k, i;
    long t0 = h_now_ms();

    raw = raw_exchange(c->on == CB ? H.cb_port : H.int_port, req, len,
                       c->half_close, &n);
    k = statuses(raw, n, st, 8);
    fprintf(stderr, "# %-28s %s %6zu bytes -> %s", c->name,
            c->on == CB ? "callback" : "internal", len, k ? "" : "no answer");
    for (i = 0; i < k; i++)
        fprintf(stderr, "%s%d", i ? ", " : "", st[i]);
    fprintf(stderr, " (%ld ms)\n", h_now_ms() - t0);
    if (!c->half_close && k == 0) {
        fprintf(stderr, "# %s: the connection closed without an answer\n",
                c->name);
        fail();
    }
    if (c->want != 0 && k > 0)
        assert_int_equal(st[0], c->want);
    if (c->want == 200) {
        /* served, then the garbage refused */
        assert_true(k >= 2);
        for (i = 1; i < k; i++)
            assert_true(st[i] >= 400 && st[i] < 500);
    }
    if (c->on == CB) {
        /* a refusal, never "success" and never anything internal */
        for (i = 0; i < k; i++)
            if (!(st[i] >= 400 && st[i] < 500) &&
                !(st[i] == 501 && c->want == 501)) {
                fprintf(stderr, "# %s: status %d: %.200s\n", c->name, st[i],
                        raw);
                fail();
            }
        assert_null(strstr(raw, "success"));
        assert_null(strstr(raw, "errcode"));
        assert_null(strstr(raw, "# TYPE"));
    } else {
        check_internal(c, raw, n);
    }
    /* never data of a member */
    if (c->want != 200)
        assert_null(strstr(raw, "\"userid\""));
    free(raw);
    free(req);
    assert_true(alive_and_healthy());
}

#define HOSTILE(fn, on, build, half, want)                                     \
    static void fn(void **state)                                               \
    {                                                                          \
        static const struct hostile c = {#fn, on, build, half, want};          \
        (void)state;                                                           \
        run_hostile(&c);                                                       \
    }

HOSTILE(cb_huge_url, CB, b_cb_huge_url, 0, 0)
HOSTILE(cb_long_url, CB, b_cb_long_url, 0, 0)
HOSTILE(cb_huge_header, CB, b_huge_header, 0, 0)
HOSTILE(cb_many_headers, CB, b_many_headers, 0, 0)
HOSTILE(cb_huge_body_declared, CB, b_cb_huge_body_declared, 0, 413)
HOSTILE(cb_body_over_64k, CB, b_cb_body_over_64k, 0, 413)
HOSTILE(cb_bad_percent, CB, b_cb_bad_percent, 0, 400)
HOSTILE(cb_repeated_param, CB, b_cb_repeated, 0, 400)
HOSTILE(cb_repeated_signature, CB, b_cb_repeated_sig, 0, 400)
HOSTILE(cb_nul_in_request_line, CB, b_nul_in_request_line, 0, 0)
HOSTILE(cb_percent_nul, CB, b_cb_pct_nul, 0, 0)
HOSTILE(cb_nul_in_body, CB, b_cb_nul_body, 0, 0)
HOSTILE(cb_non_utf8_body, CB, b_cb_non_utf8, 0, 0)
/* raw bytes >= 0x80 in a request target are not HTTP: the server refuses
 * them before any route is looked at */
HOSTILE(cb_non_utf8_path, CB, b_cb_non_utf8_path, 0, 400)
HOSTILE(cb_http10_unsigned, CB, b_cb_http10, 0, 0)
HOSTILE(cb_http09, CB, b_http09, 0, 0)
HOSTILE(cb_pipelined_garbage, CB, b_pipelined_garbage, 0, 0)
HOSTILE(cb_binary_garbage, CB, b_binary, 0, 0)
HOSTILE(cb_unknown_method, CB, b_unknown_method, 0, 501)
HOSTILE(cb_bad_version, CB, b_bad_version, 0, 0)
HOSTILE(cb_header_without_colon, CB, b_header_no_colon, 0, 0)
HOSTILE(cb_negative_length, CB, b_negative_length, 0, 0)
HOSTILE(cb_smuggling_cl_te, CB, b_smuggle, 0, 0)
HOSTILE(cb_bad_chunk, CB, b_bad_chunk, 0, 0)
HOSTILE(cb_truncated_body, CB, b_cb_truncated_body, 1, 0)
HOSTILE(cb_absolute_url, CB, b_cb_absolute_url, 0, 404)
HOSTILE(cb_encoded_traversal, CB, b_cb_traversal, 0, 404)
HOSTILE(cb_long_suite_id, CB, b_cb_long_suite, 0, 404)
HOSTILE(cb_doctype_entities, CB, b_cb_doctype, 0, 400)
HOSTILE(cb_deep_xml, CB, b_cb_deep_xml, 0, 400)

HOSTILE(int_huge_url, INT, b_int_huge_url, 0, 0)
HOSTILE(int_long_param, INT, b_int_long_param, 0, 0)
HOSTILE(int_huge_header, INT, b_int_huge_header, 0, 0)
HOSTILE(int_many_headers, INT, b_many_headers, 0, 0)
HOSTILE(int_huge_body, INT, b_int_huge_body, 0, 0)
HOSTILE(int_huge_body_declared, INT, b_int_huge_body_declared, 0, 0)
HOSTILE(int_bad_percent, INT, b_int_bad_percent, 0, 0)
HOSTILE(int_bad_percent_token, INT, b_int_bad_percent_token, 0, 0)
HOSTILE(int_repeated_param, INT, b_int_repeated, 0, 0)
HOSTILE(int_repeated_token, INT, b_int_repeated_token, 0, 0)
HOSTILE(int_nul_in_request_line, INT, b_int_nul_line, 0, 0)
HOSTILE(int_percent_nul, INT, b_int_pct_nul, 0, 0)
HOSTILE(int_nul_in_json, INT, b_int_nul_json, 0, 0)
HOSTILE(int_non_utf8_param, INT, b_int_non_utf8, 0, 0)
HOSTILE(int_non_utf8_json, INT, b_int_non_utf8_json, 0, 0)
HOSTILE(int_deep_json, INT, b_int_deep_json, 0, 0)
HOSTILE(int_duplicate_json_key, INT, b_int_dup_json_key, 0, 0)
HOSTILE(int_pipelined_garbage, INT, b_int_pipelined, 0, 200)
HOSTILE(int_binary_garbage, INT, b_binary, 0, 0)
HOSTILE(int_unknown_method, INT, b_unknown_method, 0, 501)
HOSTILE(int_smuggling_cl_te, INT, b_smuggle, 0, 0)
HOSTILE(int_bad_chunk, INT, b_bad_chunk, 0, 0)
HOSTILE(int_truncated_body, INT, b_int_truncated, 1, 0)
HOSTILE(int_encoded_traversal, INT, b_int_no_token_garbage_path, 0, 0)
HOSTILE(int_gettoken_hostile, INT, b_int_gettoken_hostile, 0, 0)

/* HTTP/1.0 is not hostile on the internal listener: an old client gets
 * its answer, filtered like any other. */
static void
test_internal_http10_served(void **state)
{
    size_t len, n;
    char *req = b_int_http10(&len), *raw;
    int st[2];
    json_t *j;
    json_error_t e;

    (void)state;
    raw = raw_exchange(H.int_port, req, len, 0, &n);
    assert_int_equal(statuses(raw, n, st, 2), 1);
    assert_int_equal(st[0], 200);
    assert_true(strncmp(raw, "HTTP/1.0 200", 12) == 0 ||
                strncmp(raw, "HTTP/1.1 200", 12) == 0);
    j = json_loads(raw_body(raw), 0, &e);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "errcode")), 0);
    assert_string_equal(h_str(j, "userid"), MEMBER);
    assert_null(json_object_get(j, "mock_internal_note"));
    json_decref(j);
    free(raw);
    free(req);
}

/*---- Slow clients ----*/

static void
test_slowloris_does_not_starve(void **state)
{
    enum { N = 200 };
    int fds[2 * N], i, round;
    long t0, worst = 0;
    struct sc_resp r;
    char *url;

    (void)state;
    /* half the connections on each listener, each sending an unfinished
     * header a byte at a time (well within the request deadline); those
     * on the public listener from 8 addresses, under its cap per address */
    for (i = 0; i < 2 * N; i++) {
        static const char head[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-a: ";
        char src[32];

        snprintf(src, sizeof(src), "127.0.2.%d", 1 + i % 16 / 2);
        fds[i] =
            i % 2 ? tcp_connect(H.int_port) : tcp_connect_from(src, H.cb_port);
        assert_int_equal(send(fds[i], head, sizeof(head) - 1, MSG_NOSIGNAL),
                         (ssize_t)(sizeof(head) - 1));
    }
    for (round = 0; round < 10; round++) {
        for (i = 0; i < 2 * N; i++)
            assert_int_equal(send(fds[i], "a", 1, MSG_NOSIGNAL), 1);
        /* meanwhile everyone else is served at once */
        t0 = h_now_ms();
        url = h_int_url(&H, "/healthz");
        sc_fetch(&r, "GET", url, NULL, NULL, NULL);
        free(url);
        assert_int_equal(r.status, 200);
        sc_resp_free(&r);
        sc_call(&r, H.int_port, "GET", NULL,
                "/cgi-bin/user/get?access_token=%s&userid=%s", Reader_tok,
                MEMBER);
        SC_EXPECT(&r, 200, 0);
        sc_resp_free(&r);
        url = h_cb_url(&H, "/wecom/suite/" S1 "/callback");
        sc_fetch(&r, "GET", url, NULL, NULL, NULL);
        free(url);
        assert_int_equal(r.status, 400);
        sc_resp_free(&r);
        if (h_now_ms() - t0 > worst)
            worst = h_now_ms() - t0;
        usleep(100000);
    }
    fprintf(stderr,
            "# %d slow clients holding connections: the three other "
            "requests took at most %ld ms\n",
            2 * N, worst);
    assert_true(worst < 1000);
    for (i = 0; i < 2 * N; i++)
        close(fds[i]);
    assert_true(alive_and_healthy());
}

/* CPU time (clock ticks) pid has used so far. */
static long
cpu_ticks(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    p = strrchr(buf, ')');
    assert_non_null(p);
    /* after the name: state ppid pgrp session tty tpgid flags minflt
     * cminflt majflt cmajflt utime stime */
    assert_int_equal(sscanf(p + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
                            "%*u %lu %lu",
                            &ut, &st),
                     2);
    return (long)(ut + st);
}

static size_t
count_lines(const char *path)
{
    char *t = h_slurp(path), *p;
    size_t n = 0;

    for (p = t; *p; p++)
        n += *p == '\n';
    free(t);
    return n;
}

struct port_wait {
    int port;
};

static int
healthz_at(void *arg)
{
    struct port_wait *w = arg;
    char url[64], *body = NULL;
    long st;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", w->port);
    st = h_http("GET", url, NULL, 0, &body);
    free(body);
    return st == 200;
}

/* More connections than the broker has descriptors: it stops accepting
 * for a while instead of spinning on accept() and writing a warning per
 * try, and serves again once they are gone. */
static void
test_descriptor_exhaustion_no_spin(void **state)
{
    /* more than it can accept, fewer than it can accept plus its listen
     * backlog (128): beyond that, connect() itself waits */
    enum { N = 200 };
    char conf[400], log[400];
    int fds[N], cb, ip, port_cb, i;
    struct rlimit old, low;
    struct port_wait w;
    long t0, ticks;
    size_t lines0, lines;
    pid_t pid;

    (void)state;
    snprintf(conf, sizeof(conf), "%s/broker-c.conf", H.dir);
    snprintf(log, sizeof(log), "%s/broker-c.log", H.dir);
    cb = H.cb_port;
    ip = H.int_port;
    assert_int_equal(h_write_conf_to(&H, conf, 0, broker_extra(RelayPort)), 0);
    port_cb = H.cb_port;
    w.port = H.int_port;
    H.cb_port = cb;
    H.int_port = ip;
    /* the new instance inherits a small descriptor limit */
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = 128;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    pid = Cpid = h_spawn_broker(conf, log);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_true(pid > 0);
    assert_true(h_wait(healthz_at, &w, 20000));
    for (i = 0; i < N; i++) {
        static const char head[] = "GET /healthz HTTP/1.1\r\nX-a: ";

        fds[i] = tcp_connect(port_cb);
        send(fds[i], head, sizeof(head) - 1, MSG_NOSIGNAL);
    }
    /* pacing: the broker has nothing to show for a half-sent request; this
     * lets every connection be accepted before the measurement */
    usleep(300000);
    lines0 = count_lines(log);
    ticks = cpu_ticks(pid);
    t0 = h_now_ms();
    /* pacing: the measurement window for CPU time and log lines */
    usleep(1000000);
    ticks = cpu_ticks(pid) - ticks;
    lines = count_lines(log) - lines0;
    fprintf(stderr,
            "# %d connections against 128 descriptors: %ld ticks of CPU and "
            "%zu log lines in %ld ms\n",
            N, ticks, lines, h_now_ms() - t0);
    assert_true(ticks < 20);
    assert_true(lines < 20);
    for (i = 0; i < N; i++)
        close(fds[i]);
    t0 = h_now_ms();
    assert_true(h_wait(healthz_at, &w, 5000));
    fprintf(stderr, "# serving again %ld ms after they closed\n",
            h_now_ms() - t0);
    assert_int_equal(h_stop(pid, SIGTERM), 0);
    Cpid = 0;
}

/*---- The browser routes under a flood ----*/

struct flood {
    int n302, n429, other;
};

/* n concurrent GETs of path on the callback listener from src. */
static void
flood(const char *path, const char *src, int n, struct flood *f)
{
    CURLM *m = curl_multi_init();
    CURL **e = calloc((size_t)n, sizeof(*e));
    struct sc_resp *rs = calloc((size_t)n, sizeof(*rs));
    char *url = h_cb_url(&H, path);
    int running = 1, i;

    memset(f, 0, sizeof(*f));
    /* one client address holds at most 64 connections to the public
     * listener: stay under it, the rate limit is what is tested here */
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 32L);
    for (i = 0; i < n; i++) {
        sc_resp_init(&rs[i]);
        e[i] = sc_easy(&rs[i], "GET", url, NULL, 0, src);
        curl_multi_add_handle(m, e[i]);
    }
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (i = 0; i < n; i++) {
        curl_easy_getinfo(e[i], CURLINFO_RESPONSE_CODE, &rs[i].status);
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
        if (rs[i].status == 302)
            f->n302++;
        else if (rs[i].status == 429)
            f->n429++;
        else {
            f->other++;
            fprintf(stderr, "# flood %s: %ld %.200s\n", path, rs[i].status,
                    rs[i].body ? rs[i].body : "");
        }
        sc_resp_free(&rs[i]);
    }
    curl_multi_cleanup(m);
    free(url);
    free(e);
    free(rs);
}

#define AUTHORIZE                                                              \
    "/wecom/suite/" S1 "/oauth/authorize?scope=snsapi_base&return="            \
    "https%3A%2F%2Fapp.example%2Freturn%2Fx"
#define INSTALL                                                                \
    "/wecom/suite/" S1 "/install?return=https%3A%2F%2Fapp.example%2Freturn"

static void
test_browser_routes_rate_limited_and_capped(void **state)
{
    struct flood f;
    long long live0, live;
    size_t states0;
    redisContext *c;
    redisReply *rep;
    int i;
    struct sc_resp r;
    char *url;

    (void)state;
    live0 = h_redis_int(&H, "ZCARD wb:{" S1 "}:oauth:live");
    states0 = redis_count_keys("wb:{" S1 "}:oauth:state:*");
    flood(AUTHORIZE, "127.0.0.3", 200, &f);
    fprintf(stderr,
            "# 200 concurrent /oauth/authorize from one address: "
            "%d redirected, %d refused with 429\n",
            f.n302, f.n429);
    assert_int_equal(f.other, 0);
    assert_true(f.n302 <= 62 && f.n302 >= 50);
    assert_int_equal(f.n302 + f.n429, 200);
    live = h_redis_int(&H, "ZCARD wb:{" S1 "}:oauth:live");
    /* one state per redirect, none for a refusal */
    assert_int_equal(live - live0, f.n302);
    assert_int_equal(redis_count_keys("wb:{" S1 "}:oauth:state:*") - states0,
                     (size_t)f.n302);
    flood(INSTALL, "127.0.0.4", 200, &f);
    fprintf(stderr,
            "# 200 concurrent /install from one address: %d "
            "redirected, %d refused with 429\n",
            f.n302, f.n429);
    assert_int_equal(f.other, 0);
    assert_true(f.n302 <= 62 && f.n302 >= 50);
    /* another address is not slowed by them */
    url = h_cb_url(&H, AUTHORIZE);
    sc_fetch(&r, "GET", url, NULL, "127.0.0.5", NULL);
    assert_int_equal(r.status, 302);
    sc_resp_free(&r);
    /* the cap on live states of the suite (a bound on memory): fill up
     * to it, then nobody gets a new one, from any address, and nothing
     * is stored */
    c = h_redis(&H);
    assert_non_null(c);
    live = h_redis_int(&H, "ZCARD wb:{" S1 "}:oauth:live");
    for (i = 0; i < 100000 - live; i++)
        redisAppendCommand(c, "ZADD wb:{" S1 "}:oauth:live %lld fill%06d",
                           (long long)time(NULL) + 600, i);
    for (i = 0; i < 100000 - live; i++) {
        assert_int_equal(redisGetReply(c, (void **)&rep), REDIS_OK);
        freeReplyObject(rep);
    }
    states0 = redis_count_keys("wb:{" S1 "}:oauth:state:*");
    sc_fetch(&r, "GET", url, NULL, "127.0.0.6", NULL);
    fprintf(stderr, "# /oauth/authorize at the cap: %ld\n", r.status);
    assert_int_equal(r.status, 429);
    assert_null(r.loc);
    sc_resp_free(&r);
    free(url);
    url = h_cb_url(&H, INSTALL);
    sc_fetch(&r, "GET", url, NULL, "127.0.0.7", NULL);
    assert_int_equal(r.status, 429);
    assert_null(r.loc);
    sc_resp_free(&r);
    free(url);
    assert_int_equal(redis_count_keys("wb:{" S1 "}:oauth:state:*"), states0);
    assert_int_equal(h_redis_int(&H, "ZCARD wb:{" S1 "}:oauth:live"), 100000);
    /* room again */
    for (i = 0; i < 100000 - live; i++)
        redisAppendCommand(c, "ZREM wb:{" S1 "}:oauth:live fill%06d", i);
    for (i = 0; i < 100000 - live; i++) {
        assert_int_equal(redisGetReply(c, (void **)&rep), REDIS_OK);
        freeReplyObject(rep);
    }
    redisFree(c);
    url = h_cb_url(&H, AUTHORIZE);
    sc_fetch(&r, "GET", url, NULL, "127.0.0.8", NULL);
    assert_int_equal(r.status, 302);
    sc_resp_free(&r);
    free(url);
}

/*---- No secret anywhere ----*/

/* The values of every "key":"value" and key=value of the given keys in
 * the relay's recording. */
static void
harvest(const char *rec, const char *key, const char *what)
{
    char pat[64], val[512];
    const char *p;
    size_t n, k;
    int form;

    for (form = 0; form < 2; form++) {
        if (form == 0)
            snprintf(pat, sizeof(pat), "\"%s\":\"", key);
        else
            snprintf(pat, sizeof(pat), "%s=", key);
        k = strlen(pat);
        for (p = strstr(rec, pat); p != NULL; p = strstr(p + 1, pat)) {
            /* whole key: not the tail of a longer one */
            if (form == 1 && p > rec &&
                (p[-1] == '_' || (p[-1] >= 'a' && p[-1] <= 'z')))
                continue;
            n = strcspn(p + k, form == 0 ? "\"" : "& \r\n");
            if (n == 0 || n >= sizeof(val) || strncmp(p + k, "***", 3) == 0)
                continue;
            memcpy(val, p + k, n);
            val[n] = '\0';
            secret_add(what, val);
        }
    }
}

static size_t
count_what(const char *what)
{
    size_t i, n = 0;
    json_t *e;

    json_array_foreach(Secrets, i, e) n += strcmp(h_str(e, "what"), what) == 0;
    return n;
}

/* How many of the secrets are in text, each named on stderr; where
 * names the place, allow a kind of secret it may hold (NULL: none). */
static int
secrets_in(const char *where, const char *text, const char *allow)
{
    size_t i;
    json_t *e;
    int n = 0;

    json_array_foreach(Secrets, i, e)
    {
        const char *v = h_str(e, "value");

        if (allow != NULL && strcmp(h_str(e, "what"), allow) == 0)
            continue;
        if (strstr(text, v) != NULL) {
            fprintf(stderr, "# %s holds a %s: %.6s...\n", where,
                    h_str(e, "what"), v);
            n++;
        }
    }
    return n;
}

static void
no_secret_in(const char *where, const char *text)
{
    assert_int_equal(secrets_in(where, text, NULL), 0);
}

/* A member login (snsapi_privateinfo) from src, then the service side:
 * getuserinfo with the broker's code, getuserdetail with its ticket. */
static void
member_login(const char *src)
{
    char url[2048], *v, *code;
    struct sc_resp r;
    char *tok;
    json_t *body;

    h_sim_ok(MockPort, "POST", "/__mock/oauth_user",
             "{\"corpid\":\"" CORP1 "\",\"userid\":\"" MEMBER "\"}");
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/wecom/suite/" S1 "/oauth/authorize?scope="
             "snsapi_privateinfo&return=https%%3A%%2F%%2Fapp.example%%2F"
             "return%%2Fx&state=caller-state-1",
             H.cb_port);
    sc_fetch(&r, "GET", url, NULL, src, NULL);
    assert_int_equal(r.status, 302);
    snprintf(url, sizeof(url), "%s", r.loc);
    sc_resp_free(&r);
    /* WeCom's page: the member logs in and consents */
    sc_fetch(&r, "GET", url, NULL, src, NULL);
    assert_int_equal(r.status, 302);
    v = param(r.loc, "code");
    secret_add("WeCom OAuth code", v);
    free(v);
    snprintf(url, sizeof(url), "%s", r.loc);
    sc_resp_free(&r);
    sc_fetch(&r, "GET", url, NULL, src, NULL);
    assert_int_equal(r.status, 302);
    assert_true(strncmp(r.loc, RET "?", strlen(RET) + 1) == 0);
    code = param(r.loc, "code");
    assert_non_null(code);
    secret_add("broker OAuth code", code);
    sc_resp_free(&r);
    tok = token_for(H.int_port, Member_secret, CORP1);
    sc_call(&r, H.int_port, "GET", NULL,
            "/cgi-bin/auth/getuserinfo?access_token=%s&code=%s", tok, code);
    SC_EXPECT(&r, 200, 0);
    assert_string_equal(h_str(r.json, "userid"), MEMBER);
    secret_add("broker user_ticket", h_str(r.json, "user_ticket"));
    body = json_pack("{s:s}", "user_ticket", h_str(r.json, "user_ticket"));
    sc_resp_free(&r);
    v = json_dumps(body, 0);
    sc_call(&r, Bport, "POST", v, "/cgi-bin/auth/getuserdetail?access_token=%s",
            tok);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    free(v);
    json_decref(body);
    free(code);
    free(tok);
}

/* Every brokerctl command that reads, human and JSON; their outputs
 * concatenated (owned). */
static char *
all_cli_output(void)
{
    static const char *const cmds[][6] = {
        {"tenants", NULL},
        {"tenant", "show", CORP1, NULL},
        {"tenant", "show", CORP2, NULL},
        {"suite", NULL},
        {"service", "list", NULL},
        {"service", "show", "reader", NULL},
        {"service", "show", "member", NULL},
        {"service", "show", "temp", NULL},
        {"audit", NULL},
        {"audit", "--corp", CORP1, NULL},
        {"audit", "--service", "member", NULL},
        {"key", "list", NULL},
        {"explain", CORP1, "reader", "/cgi-bin/user/get", NULL},
        {"explain", CORP1, "member", "/cgi-bin/user/get", NULL},
        {"explain", CORP2, "reader", "/cgi-bin/department/list", NULL},
        {"scopes", "list", NULL},
        {"scopes", "lint", NULL},
        {"help", NULL},
    };
    const char *args[10];
    size_t i, k, n, total = 0;
    char *all = calloc(1, 1), *out;
    int rc, json;

    for (i = 0; i < nitems(cmds); i++)
        for (json = 0; json < 2; json++) {
            n = 0;
            if (json)
                args[n++] = "--json";
            for (k = 0; cmds[i][k] != NULL; k++)
                args[n++] = cmds[i][k];
            args[n] = NULL;
            out = ctl_text(&rc, args);
            if (rc != 0)
                fprintf(stderr, "# brokerctl %s%s %s: exit %d\n",
                        json ? "--json " : "", cmds[i][0],
                        cmds[i][1] ? cmds[i][1] : "", rc);
            assert_int_equal(rc, 0);
            all = xrealloc(all, total + strlen(out) + 2);
            memcpy(all + total, out, strlen(out));
            total += strlen(out);
            all[total++] = '\n';
            all[total] = '\0';
            free(out);
        }
    return all;
}

static void
test_no_secret_anywhere(void **state)
{
    const char *kv[14];
    char tsb[24], *rec, *text, *cli, *url, *m;
    struct sc_resp r;
    json_t *e;
    size_t i;
    int rc;

    (void)state;
    /* leaky: the member's mobile and email must come from WeCom for the
     * harvest below to have them to look for */
    h_sim_ok(MockPort, "POST", "/__mock/leaky", "{\"leaky\":true}");
    /* what a full flow handles: data calls on both instances, a member
     * login, a contact change carrying a mobile and an email, an event
     * that dead-letters with its AuthCode still inside, a rotated
     * service secret */
    sc_call(&r, H.int_port, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=%s", Reader_tok, MEMBER);
    SC_EXPECT(&r, 200, 0);
    sc_resp_free(&r);
    sc_call(&r, Bport, "POST", "{\"cursor\":\"\",\"limit\":100}",
            "/cgi-bin/user/list_id?access_token=%s", Reader_tok);
    sc_resp_free(&r);
    sc_call(&r, Bport, "GET", NULL, "/cgi-bin/department/list?access_token=%s",
            Reader_tok);
    sc_resp_free(&r);
    member_login("127.0.0.9");
    snprintf(tsb, sizeof(tsb), "%ld", h_next_ts());
    kv[0] = "SuiteId";
    kv[1] = S1;
    kv[2] = "InfoType";
    kv[3] = "change_contact";
    kv[4] = "TimeStamp";
    kv[5] = tsb;
    kv[6] = "AuthCorpId";
    kv[7] = CORP1;
    kv[8] = "ChangeType";
    kv[9] = "update_user";
    kv[10] = "Mobile";
    kv[11] = "13912345678";
    kv[12] = "Email";
    kv[13] = "zhang.secret@corp.example";
    tc_post_event(S1, kv, 7);
    secret_add("member mobile (event)", "13912345678");
    secret_add("member email (event)", "zhang.secret@corp.example");
    /* WeCom fails every exchange of this one: it dead-letters */
    h_sim_ok(MockPort, "POST", "/__mock/faults",
             "{\"path\":\"/cgi-bin/service/get_permanent_code\","
             "\"count\":2,\"status\":502,\"body\":\"nonjson\"}");
    create_auth(CORP3, NULL);
    {
        const char *rot[] = {"--json", "service", "rotate", "reader", NULL};

        m = ctl_text(&rc, rot);
        assert_int_equal(rc, 0);
        /* the new secret is printed once, here, and nowhere else */
        e = json_loads(m, JSON_DISABLE_EOF_CHECK, NULL);
        assert_non_null(e);
        secret_add("service secret (rotated)",
                   strchr(h_str(e, "secret"), '.') + 1);
        assert_int_equal(
            secrets_in("service rotate", m, "service secret (rotated)"), 0);
        /* and the check sees a secret where there is one */
        assert_int_equal(secrets_in("(self-check)", m, NULL), 1);
        json_decref(e);
        free(m);
    }
    /* wait for the workers: the refused AuthCode dead-letters */
    for (i = 0; i < 100; i++) {
        json_t *s = ctl(&rc, "suite", (const char *)NULL);
        long dl = (long)json_integer_value(
            json_object_get(json_array_get(s, 0), "dead_letters"));

        json_decref(s);
        if (dl >= 1)
            break;
        usleep(100000);
    }
    assert_true(i < 100);
    /* what WeCom handed the broker, as the relay saw it */
    rec = h_relay_recorded(Relay);
    harvest(rec, "permanent_code", "permanent code");
    harvest(rec, "suite_access_token", "suite token");
    harvest(rec, "access_token", "corp token");
    harvest(rec, "user_ticket", "WeCom user_ticket");
    harvest(rec, "mobile", "member mobile (WeCom)");
    harvest(rec, "email", "member email (WeCom)");
    harvest(rec, "suite_ticket", "suite_ticket");
    harvest(rec, "auth_code", "AuthCode");
    free(rec);
    fprintf(stderr, "# secrets looked for: %zu (", json_array_size(Secrets));
    json_array_foreach(Secrets, i, e)
    {
        const char *w = h_str(e, "what");
        size_t k;
        int first = 1;
        json_t *o;

        json_array_foreach(Secrets, k, o)
        {
            if (k < i && strcmp(h_str(o, "what"), w) == 0)
                first = 0;
        }
        if (first)
            fprintf(stderr, "%s%s %zu", i ? ", " : "", w, count_what(w));
    }
    fprintf(stderr, ")\n");
    /* the harvest found what it should: the check below can fail */
    assert_true(count_what("permanent code") >= 2);
    assert_true(count_what("corp token") >= 2);
    assert_true(count_what("suite token") >= 1);
    assert_true(count_what("WeCom user_ticket") >= 1);
    assert_true(count_what("broker token") >= 2);
    assert_true(count_what("member mobile (WeCom)") >= 1);
    h_sim_ok(MockPort, "POST", "/__mock/leaky", "{\"leaky\":false}");
    /* logs */
    text = h_slurp(H.log);
    assert_true(strlen(text) > 1000);
    no_secret_in("broker log", text);
    free(text);
    text = h_slurp(Blog);
    no_secret_in("second broker's log", text);
    free(text);
    /* metrics */
    url = h_int_url(&H, "/metrics");
    assert_int_equal(h_http("GET", url, NULL, 0, &text), 200);
    no_secret_in("metrics", text);
    free(text);
    free(url);
    {
        char u[64];

        snprintf(u, sizeof(u), "http://127.0.0.1:%d/metrics", Bport);
        assert_int_equal(h_http("GET", u, NULL, 0, &text), 200);
        no_secret_in("second broker's metrics", text);
        free(text);
    }
    /* every brokerctl output */
    cli = all_cli_output();
    no_secret_in("brokerctl output", cli);
    free(cli);
    {
        const char *add[] = {"service",  "add",           "onemore",
                             "--scopes", "contacts.read", NULL};

        /* its own new secret, once, and nothing else */
        m = ctl_text(&rc, add);
        assert_int_equal(rc, 0);
        assert_non_null(strchr(m, '.'));
        no_secret_in("service add", m);
        free(m);
    }
    /* the commands that change things say nothing secret either */
    {
        static const char *const cmds[][6] = {
            {"key", "rotate", NULL},
            {"--json", "key", "list", NULL},
            {"tenant", "purge", CORP2, "--yes", NULL},
            {"service", "revoke", "onemore", NULL},
        };

        for (i = 0; i < nitems(cmds); i++) {
            m = ctl_text(&rc, cmds[i]);
            if (rc != 0)
                fprintf(stderr, "# brokerctl %s %s: %s\n", cmds[i][0],
                        cmds[i][1], m);
            assert_int_equal(rc, 0);
            no_secret_in("brokerctl output", m);
            free(m);
        }
    }
    /* Redis: every key and every value, streams included */
    text = tc_redis_text();
    assert_true(strlen(text) > 1000);
    no_secret_in("Redis", text);
    free(text);
}

/* Last: both instances stop cleanly. */
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
        cmocka_unit_test(test_token_bound_to_its_tenant),
        cmocka_unit_test(test_revoked_token_refused_on_every_instance),
        cmocka_unit_test(test_callback_listener_routes),
        cmocka_unit_test(cb_huge_url),
        cmocka_unit_test(cb_long_url),
        cmocka_unit_test(cb_huge_header),
        cmocka_unit_test(cb_many_headers),
        cmocka_unit_test(cb_huge_body_declared),
        cmocka_unit_test(cb_body_over_64k),
        cmocka_unit_test(cb_bad_percent),
        cmocka_unit_test(cb_repeated_param),
        cmocka_unit_test(cb_repeated_signature),
        cmocka_unit_test(cb_nul_in_request_line),
        cmocka_unit_test(cb_percent_nul),
        cmocka_unit_test(cb_nul_in_body),
        cmocka_unit_test(cb_non_utf8_body),
        cmocka_unit_test(cb_non_utf8_path),
        cmocka_unit_test(cb_http10_unsigned),
        cmocka_unit_test(cb_http09),
        cmocka_unit_test(cb_pipelined_garbage),
        cmocka_unit_test(cb_binary_garbage),
        cmocka_unit_test(cb_unknown_method),
        cmocka_unit_test(cb_bad_version),
        cmocka_unit_test(cb_header_without_colon),
        cmocka_unit_test(cb_negative_length),
        cmocka_unit_test(cb_smuggling_cl_te),
        cmocka_unit_test(cb_bad_chunk),
        cmocka_unit_test(cb_truncated_body),
        cmocka_unit_test(cb_absolute_url),
        cmocka_unit_test(cb_encoded_traversal),
        cmocka_unit_test(cb_long_suite_id),
        cmocka_unit_test(cb_doctype_entities),
        cmocka_unit_test(cb_deep_xml),
        cmocka_unit_test(int_huge_url),
        cmocka_unit_test(int_long_param),
        cmocka_unit_test(int_huge_header),
        cmocka_unit_test(int_many_headers),
        cmocka_unit_test(int_huge_body),
        cmocka_unit_test(int_huge_body_declared),
        cmocka_unit_test(int_bad_percent),
        cmocka_unit_test(int_bad_percent_token),
        cmocka_unit_test(int_repeated_param),
        cmocka_unit_test(int_repeated_token),
        cmocka_unit_test(int_nul_in_request_line),
        cmocka_unit_test(int_percent_nul),
        cmocka_unit_test(int_nul_in_json),
        cmocka_unit_test(int_non_utf8_param),
        cmocka_unit_test(int_non_utf8_json),
        cmocka_unit_test(int_deep_json),
        cmocka_unit_test(int_duplicate_json_key),
        cmocka_unit_test(int_pipelined_garbage),
        cmocka_unit_test(int_binary_garbage),
        cmocka_unit_test(int_unknown_method),
        cmocka_unit_test(int_smuggling_cl_te),
        cmocka_unit_test(int_bad_chunk),
        cmocka_unit_test(int_truncated_body),
        cmocka_unit_test(int_encoded_traversal),
        cmocka_unit_test(int_gettoken_hostile),
        cmocka_unit_test(test_internal_http10_served),
        cmocka_unit_test(test_slowloris_does_not_starve),
        cmocka_unit_test(test_descriptor_exhaustion_no_spin),
        cmocka_unit_test(test_browser_routes_rate_limited_and_capped),
        cmocka_unit_test(test_no_secret_anywhere),
        cmocka_unit_test(test_brokers_stop_cleanly),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
