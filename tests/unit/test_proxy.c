/*
 * Tests for the service API's request chain (proxy.c) without a network:
 * this program defines the store, the token manager, the WeCom client and
 * the HTTP front itself, so the linker takes these instead of
 * libbroker.a's, and the test answers each Redis command and WeCom call
 * when it chooses; the shared upstream budget allows every call. Covered:
 * references to shared tenant and service records when a cache insert fails for
 * lack of memory (every allocation failing in turn, with two requests waiting
 * on one tenant load), the form in which checked subject parameters reach
 * WeCom, and a reply read before a change notice never being cached after it.
 * Then the reuse of a loop's filters and request storage: a warm request's
 * upstream call and reply make no allocation, a filter given back after a
 * failed reply serves the next exactly as a new one, large replies are
 * handed over and small ones copied, a corp token and URL longer than the
 * request's own storage still reach WeCom and the token manager whole, and
 * a query value's UTF-8 is judged as jansson judged it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "broker.h"
#include "budget.h"
#include "config.h"
#include "datakey.h"
#include "httpd.h"
#include "log.h"
#include "proxy.h"
#include "scope_map.h"
#include "store.h"
#include "tokens.h"
#include "wecom_api.h"

#define SUITE  "wwsuite0001"
#define CORP   "wwcorp0001"
#define SVC_ID "0123456789abcdef"
#define TOKEN  "tokenABCDEFGHtokenABCDEFGHtokenABCDEFGHtokenABCDEFGHtokenABCDEFG"
#define SALT   "00112233445566778899aabbccddeeff"
#define HASH   "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/*---- The upstream budget: every call allowed ----*/

static int Budget_dummy;
static long Budget_reports;

enum brk_err
budget_take(struct budget *b, const char *corpid, const char *api,
            enum budget_class cls, budget_cb *cb, void *arg)
{
    (void)b;
    (void)corpid;
    (void)api;
    (void)cls;
    cb(BUDGET_OK, arg);
    return BRK_OK;
}

void
budget_report(struct budget *b, const char *corpid, const char *api,
              long wecom_errcode)
{
    (void)b;
    (void)corpid;
    (void)api;
    (void)wecom_errcode;
    Budget_reports++;
}

long
budget_errcode(enum budget_result res)
{
    return res == BUDGET_OK ? 0 : 45009;
}

const char *
budget_result_name(enum budget_result res)
{
    return res == BUDGET_OK ? "ok" : "refused";
}

/*---- The store, answered by the test ----*/

struct cmd {
    store_reply_cb *cb;
    void *arg;
    char verb[16];
    char key[200];
    int done;
};

static struct cmd cmds[512];
static size_t ncmds;

enum brk_err
store_cmd_argv(struct store *s, store_reply_cb *cb, void *arg, int argc,
               const char **argv, const size_t *argvlen)
{
    struct cmd *c;

    (void)s;
    (void)argvlen;
    if (ncmds == nitems(cmds))
        return BRK_ERR_STORE;
    c = &cmds[ncmds++];
    memset(c, 0, sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    snprintf(c->verb, sizeof(c->verb), "%s", argv[0]);
    /* an EVAL's first key, else the command's key */
    snprintf(c->key, sizeof(c->key), "%s",
             strcmp(argv[0], "EVAL") == 0 && argc > 3 ? argv[3]
             : argc > 1                               ? argv[1]
                                                      : "");
    return BRK_OK;
}

/* the tenant load's long-timeout form: recorded like any command */
enum brk_err
store_cmd_argv_timeout(struct store *s, long timeout_ms, store_reply_cb *cb,
                       void *arg, int argc, const char **argv,
                       const size_t *argvlen)
{
    (void)timeout_ms;
    return store_cmd_argv(s, cb, arg, argc, argv, argvlen);
}

/* the audit's batch of XADDs: no audit is made here, so never called */
enum brk_err
store_batch_begin(struct store *s, store_batch_cb *cb, void *arg,
                  struct store_batch **out)
{
    (void)s;
    (void)cb;
    (void)arg;
    (void)out;
    return BRK_ERR_STORE;
}

enum brk_err
store_batch_add_resp(struct store_batch *b, const char *cmd, size_t len)
{
    (void)b;
    (void)cmd;
    (void)len;
    return BRK_ERR_STORE;
}

void
store_batch_end(struct store_batch *b)
{
    (void)b;
}

int
store_is_up(const struct store *s)
{
    (void)s;
    return 0;
}

enum brk_err
datakey_load(struct store *s, const struct keyring *kr, const char *redis_key,
             const char *context, int create, datakey_cb *cb, void *arg)
{
    (void)s;
    (void)kr;
    (void)redis_key;
    (void)context;
    (void)create;
    (void)cb;
    (void)arg;
    return BRK_ERR_STORE;
}

/* The oldest unanswered command verb on a key containing what; -1. */
static int
pending(const char *verb, const char *what)
{
    size_t i;

    for (i = 0; i < ncmds; i++)
        if (!cmds[i].done && strcmp(cmds[i].verb, verb) == 0 &&
            strstr(cmds[i].key, what) != NULL)
            return (int)i;
    return -1;
}

/* Answer command i with the reply in RESP text. */
static void
answer(int i, const char *text)
{
    redisReader *rd = redisReaderCreate();
    void *r = NULL;

    assert_true(i >= 0);
    assert_false(cmds[i].done);
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, text, strlen(text)), REDIS_OK);
    assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
    assert_non_null(r);
    redisReaderFree(rd);
    cmds[i].done = 1;
    cmds[i].cb(BRK_OK, r, cmds[i].arg);
    freeReplyObject(r);
}

/* Append the RESP of a hash of n/2 pairs to buf. */
static void
resp_hash(char *buf, size_t cap, const char *const *kv, size_t n)
{
    size_t i, len = strlen(buf);

    len += (size_t)snprintf(buf + len, cap - len, "*%zu\r\n", n);
    for (i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "$%zu\r\n%s\r\n",
                                strlen(kv[i]), kv[i]);
    assert_true(len < cap);
}

static void
answer_token(void)
{
    static const char *const kv[] = {"svc",   SVC_ID,       "gen",  "0",
                                     "suite", SUITE,        "corp", CORP,
                                     "exp",   "99999999999"};
    char buf[1024] = "";

    resp_hash(buf, sizeof(buf), kv, nitems(kv));
    answer(pending("HGETALL", "btok"), buf);
}

static void
answer_service(const char *parties)
{
    const char *kv[] = {"name", "svc", "salt",    SALT,
                        "hash", HASH,  "scopes",  "contacts.read",
                        "gen",  "0",   "parties", parties};
    char buf[2048] = "";

    resp_hash(buf, sizeof(buf), kv, nitems(kv));
    answer(pending("HGETALL", "svc:"), buf);
}

/* The tenant: department 2 under 1, 3 under 1; u1 in 2, u2 in 3; the
 * range is department 2. */
static void
answer_tenant(void)
{
    static const char *const t[] = {
        "status",
        "active",
        "permissions",
        "[{\"name\":\"contact:base:base\",\"expires_at\":0},"
        "{\"name\":\"contact:base:department\",\"expires_at\":0}]",
        "privilege",
        "{\"allow_party\":[2]}"};
    static const char *const parents[] = {"1", "0", "2", "1", "3", "1"};
    static const char *const users[] = {"u1", "2", "u2", "3"};
    char buf[4096];

    /* the load's pipeline: the tenant, its directory, the generation */
    buf[0] = '\0';
    resp_hash(buf, sizeof(buf), t, nitems(t));
    answer(pending("HGETALL", ":tenant"), buf);
    buf[0] = '\0';
    resp_hash(buf, sizeof(buf), parents, nitems(parents));
    answer(pending("HGETALL", "dir:parents"), buf);
    buf[0] = '\0';
    resp_hash(buf, sizeof(buf), users, nitems(users));
    answer(pending("HGETALL", "dir:users"), buf);
    buf[0] = '\0';
    resp_hash(buf, sizeof(buf), NULL, 0);
    answer(pending("HGETALL", "dir:tags"), buf);
    answer(pending("HGET", ":tenant"), "$-1\r\n");
}

/*---- Tokens and WeCom, answered by the test ----*/

struct corp_wait {
    tokens_cb *cb;
    void *arg;
};

static struct corp_wait corp_waits[64];
static size_t ncorp_waits;

enum brk_err
tokens_corp(struct tokens *t, const char *suite_id, const char *corpid,
            tokens_cb *cb, void *arg)
{
    (void)t;
    (void)suite_id;
    (void)corpid;
    if (ncorp_waits == nitems(corp_waits))
        return BRK_ERR_NOMEM;
    corp_waits[ncorp_waits].cb = cb;
    corp_waits[ncorp_waits].arg = arg;
    ncorp_waits++;
    return BRK_OK;
}

static char rejected_token[4096];

void
tokens_corp_rejected(struct tokens *t, const char *suite_id, const char *corpid,
                     const char *token)
{
    (void)t;
    (void)suite_id;
    (void)corpid;
    snprintf(rejected_token, sizeof(rejected_token), "%s", token);
}

int
tokens_is_corp_token_error(long errcode)
{
    return errcode == 40014 || errcode == 42001;
}

struct call {
    char url[4096];
    wecom_api_chunk_cb *on_data;
    wecom_api_cb *done;
    void *arg;
};

static struct call calls[64];
static size_t ncalls;

enum brk_err
wecom_api_stream(struct wecom_api *api, const char *method,
                 const char *path_query, const char *json_body,
                 const char *rate_key, wecom_api_chunk_cb *on_data,
                 wecom_api_cb *done, void *arg)
{
    (void)api;
    (void)method;
    (void)json_body;
    (void)rate_key;
    if (ncalls == nitems(calls))
        return BRK_ERR_NOMEM;
    snprintf(calls[ncalls].url, sizeof(calls[ncalls].url), "%s", path_query);
    calls[ncalls].on_data = on_data;
    calls[ncalls].done = done;
    calls[ncalls].arg = arg;
    ncalls++;
    return BRK_OK;
}

/* media/upload's call: recorded as any other */
enum brk_err
wecom_api_stream_body(struct wecom_api *api, const char *path_query,
                      const char *content_type, const char *body, size_t len,
                      const char *rate_key, wecom_api_chunk_cb *on_data,
                      wecom_api_cb *done, void *arg)
{
    (void)content_type;
    (void)body;
    (void)len;
    return wecom_api_stream(api, "POST", path_query, NULL, rate_key, on_data,
                            done, arg);
}

/* Hand every waiting request this corp token. */
static void
give_corp_token(const char *token)
{
    size_t i, n = ncorp_waits;

    ncorp_waits = 0;
    for (i = 0; i < n; i++)
        corp_waits[i].cb(BRK_OK, token, 0, corp_waits[i].arg);
}

static void
give_corp_tokens(void)
{
    give_corp_token("corp-token");
}

/* Finish WeCom call i with body (NULL: WeCom unreachable). */
static void
finish_call(size_t i, const char *body)
{
    struct wecom_api_result res;

    memset(&res, 0, sizeof(res));
    res.err = BRK_ERR_UPSTREAM;
    if (body != NULL) {
        res.err =
            (enum brk_err)calls[i].on_data(body, strlen(body), calls[i].arg);
        res.http_status = 200;
    }
    calls[i].done(&res, calls[i].arg);
}

/*---- The HTTP front ----*/

struct treq {
    struct httpd_req r; /* first: the proxy holds &r */
    char path[256];
    char query[1024];
    long status;
    char body[16384];
    size_t len;
    int replied;
    int taken; /* the body was handed over, not copied */
};

void
httpd_reply(struct httpd_req *r, int status, const char *content_type,
            const char *body, size_t len)
{
    struct treq *t = (struct treq *)r;

    (void)content_type;
    assert_false(t->replied);
    t->replied = 1;
    t->status = status;
    t->len = len;
    snprintf(t->body, sizeof(t->body), "%.*s", (int)len, body);
}

void
httpd_reply_take(struct httpd_req *r, int status, const char *content_type,
                 char *body, size_t len)
{
    httpd_reply(r, status, content_type, body, len);
    ((struct treq *)r)->taken = 1;
    brk_free(body);
}

void
httpd_reply_text(struct httpd_req *r, int status, const char *body)
{
    httpd_reply(r, status, "text/plain", body, strlen(body));
}

const char *
httpd_path(const struct httpd_req *r)
{
    return ((const struct treq *)r)->path;
}

const char *
httpd_raw_query(const struct httpd_req *r)
{
    return ((const struct treq *)r)->query;
}

const char *
httpd_method(const struct httpd_req *r)
{
    (void)r;
    return "GET";
}

size_t
httpd_body_len(const struct httpd_req *r)
{
    (void)r;
    return 0;
}

const char *
httpd_body(struct httpd_req *r)
{
    (void)r;
    return NULL;
}

const char *
httpd_header_next(const struct httpd_req *r, const char *name, size_t *pos)
{
    (void)r;
    (void)name;
    (void)pos;
    return NULL;
}

const char *
httpd_header(const struct httpd_req *r, const char *name)
{
    (void)r;
    (void)name;
    return NULL;
}

enum brk_err
httpd_add_header(struct httpd_req *r, const char *name, const char *value)
{
    (void)r;
    (void)name;
    (void)value;
    return BRK_OK;
}

/*---- Fixture ----*/

static struct scope_map *Scopes;
static struct config Cfg;
static struct suite_conf Suite;

static struct proxy *
proxy_for_test(void)
{
    struct proxy *p = NULL;

    assert_int_equal(proxy_new(NULL, &Cfg, NULL, NULL, NULL, NULL, NULL, &p),
                     BRK_OK);
    proxy_set_scopes(p, Scopes);
    proxy_set_budget(p, (struct budget *)&Budget_dummy);
    return p;
}

/* Start GET path?access_token=TOKEN&query on p. */
static void
start(struct proxy *p, struct treq *t, const char *path, const char *query)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->r.id, sizeof(t->r.id), "test");
    snprintf(t->path, sizeof(t->path), "%s", path);
    snprintf(t->query, sizeof(t->query), "access_token=" TOKEN "%s%s",
             query[0] ? "&" : "", query);
    proxy_handle(&t->r, p);
}

/* The errcode of a finished request's reply. */
static long
errcode_of(const struct treq *t)
{
    json_error_t e;
    json_t *v = json_loads(t->body, 0, &e);
    long code =
        v ? (long)json_integer_value(json_object_get(v, "errcode")) : -9999;

    assert_true(t->replied);
    json_decref(v);
    return code;
}

static void
reset_fakes(void)
{
    ncmds = 0;
    ncorp_waits = 0;
    ncalls = 0;
}

static int
setup(void **state)
{
    struct brk_errinfo info;

    (void)state;
    log_init(LOG_LVL_ERROR, 0);
    if (scope_map_load("scopes", &Scopes, &info) != BRK_OK) {
        fprintf(stderr, "scopes: %s\n", info.msg);
        return -1;
    }
    Suite.suite_id = (char *)(uintptr_t)SUITE;
    Cfg.key_prefix = (char *)(uintptr_t) "wb:";
    Cfg.cache_max_age = 5;
    Cfg.audit_max_len = 1000;
    Cfg.suites = &Suite;
    Cfg.nsuites = 1;
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    scope_map_free(Scopes);
    return 0;
}

/*---- 3. References when a cache insert fails ----*/

/*
 * Two requests wait on one tenant load (the service narrowed or not); the
 * Nth allocation from the
 * tenant's reply on fails, for every N until none does. Each request ends
 * in exactly one reply, and the tenant stays alive while either still
 * holds it: under the sanitizers a reference dropped twice is a
 * use-after-free when the second request ends.
 */
static void
tenant_shared(const char *parties)
{
    struct treq a, b;
    struct proxy *p;
    unsigned long n;
    int failed;
    size_t i;

    for (n = 1;; n++) {
        reset_fakes();
        p = proxy_for_test();
        start(p, &a, "/cgi-bin/user/get", "userid=u1");
        answer_token();
        answer_service(parties);
        assert_true(pending("HGETALL", ":tenant") >= 0);
        /* the second waits for the same load */
        start(p, &b, "/cgi-bin/user/get", "userid=u1");
        assert_int_equal(ncmds, 7); /* token, service, the tenant's five */
        brk_alloc_fail_at(n);
        answer_tenant();
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        give_corp_tokens();
        /* the first to finish drops its reference, then the other */
        for (i = 0; i < ncalls; i++)
            finish_call(i, NULL);
        assert_true(a.replied);
        assert_true(b.replied);
        if (!failed) {
            assert_int_equal(a.status, 502);
            assert_int_equal(errcode_of(&b), -1);
        }
        assert_int_equal(proxy_inflight(p), 0);
        proxy_free(p);
        if (!failed)
            break;
        assert_true(n < 2000);
    }
}

static void
test_tenant_shared_through_failed_cache_put(void **state)
{
    (void)state;
    tenant_shared("");
}

static void
test_narrowed_range_shared_through_failed_cache_put(void **state)
{
    (void)state;
    tenant_shared("{\"" CORP "\":[2]}");
}

/* The same for a service record shared by the cache and a request. */
static void
test_service_shared_through_failed_cache_put(void **state)
{
    struct treq a;
    struct proxy *p;
    unsigned long n;
    int failed;
    size_t i;

    (void)state;
    for (n = 1;; n++) {
        reset_fakes();
        p = proxy_for_test();
        start(p, &a, "/cgi-bin/user/get", "userid=u1");
        answer_token();
        brk_alloc_fail_at(n);
        answer_service("");
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        if (pending("HGETALL", ":tenant") >= 0)
            answer_tenant();
        give_corp_tokens();
        for (i = 0; i < ncalls; i++)
            finish_call(i, NULL);
        assert_true(a.replied);
        assert_int_equal(proxy_inflight(p), 0);
        proxy_free(p);
        if (!failed)
            break;
        assert_true(n < 2000);
    }
}

/*---- 7. Integer subjects reach WeCom as they were checked ----*/

/* GET path?query through a tenant in range; the upstream URL into url
 * (empty when WeCom was not called) and the errcode (0 when called). */
static long
upstream_of(const char *path, const char *query, char *url, size_t len)
{
    struct treq t;
    struct proxy *p;
    long code = 0;
    size_t i;

    reset_fakes();
    p = proxy_for_test();
    start(p, &t, path, query);
    if (!t.replied) {
        answer_token();
        answer_service("");
        answer_tenant();
        give_corp_tokens();
    }
    url[0] = '\0';
    if (ncalls > 0)
        snprintf(url, len, "%s", calls[0].url);
    for (i = 0; i < ncalls; i++)
        finish_call(i, NULL);
    assert_true(t.replied);
    if (ncalls == 0)
        code = errcode_of(&t);
    proxy_free(p);
    return code;
}

static void
test_integer_subjects_forwarded_as_checked(void **state)
{
    static const char *const bad[] = {
        "%202",
        "+2",
        "02",
        "2%20",
        "0x2",
        "-0",
        "%2B2",
        "00",
        "2.0",
        "",
        "99999999999999999999",
    };
    char url[4096], q[128];
    size_t i;

    (void)state;
    assert_int_equal(upstream_of("/cgi-bin/user/simplelist",
                                 "department_id=2&fetch_child=1", url,
                                 sizeof(url)),
                     0);
    assert_non_null(strstr(url, "department_id=2&fetch_child=1"));
    for (i = 0; i < nitems(bad); i++) {
        snprintf(q, sizeof(q), "department_id=%s", bad[i]);
        if (upstream_of("/cgi-bin/user/simplelist", q, url, sizeof(url)) !=
            40035)
            fail_msg("department_id=%s reached WeCom as %s", bad[i], url);
        assert_string_equal(url, "");
        snprintf(q, sizeof(q), "department_id=2&fetch_child=%s", bad[i]);
        assert_int_equal(
            upstream_of("/cgi-bin/user/simplelist", q, url, sizeof(url)),
            40035);
    }
}

/*---- 9. A reply read before a change notice is not cached after it ----*/

/* The change notice for the service (a revoke or rotate). */
static void
notice_service(struct proxy *p)
{
    static const char msg[] = "svc " SVC_ID;

    proxy_notice(p, msg, sizeof(msg) - 1);
}

/* Finish everything request t started, whatever it waits for. */
static void
drain(struct treq *t)
{
    size_t i;

    if (pending("HGETALL", ":tenant") >= 0)
        answer_tenant();
    give_corp_tokens();
    for (i = 0; i < ncalls; i++)
        finish_call(i, NULL);
    ncalls = 0;
    assert_true(t->replied);
}

static void
test_no_stale_cache_after_notice(void **state)
{
    struct treq a, b;
    struct proxy *p;

    (void)state;
    /* the service record read before its revoke */
    reset_fakes();
    p = proxy_for_test();
    start(p, &a, "/cgi-bin/user/get", "userid=u1");
    answer_token();
    assert_true(pending("HGETALL", "svc:") >= 0);
    notice_service(p);
    answer_service("");
    drain(&a);
    start(p, &b, "/cgi-bin/user/get", "userid=u1");
    /* the notice dropped the tokens too */
    answer_token();
    /* read again, not taken from the cache: and now it is revoked */
    assert_true(pending("HGETALL", "svc:") >= 0);
    {
        const char *kv[] = {"name", "svc", "salt",       SALT,
                            "hash", HASH,  "scopes",     "contacts.read",
                            "gen",  "0",   "revoked_at", "1700000000"};
        char buf[2048] = "";

        resp_hash(buf, sizeof(buf), kv, nitems(kv));
        answer(pending("HGETALL", "svc:"), buf);
    }
    assert_true(b.replied);
    assert_int_equal(errcode_of(&b), 40014);
    proxy_free(p);

    /* the token record read before the revoke deleted it */
    reset_fakes();
    p = proxy_for_test();
    start(p, &a, "/cgi-bin/user/get", "userid=u1");
    assert_true(pending("HGETALL", "btok") >= 0);
    notice_service(p);
    answer_token();
    answer_service("");
    drain(&a);
    start(p, &b, "/cgi-bin/user/get", "userid=u1");
    assert_true(pending("HGETALL", "btok") >= 0);
    answer(pending("HGETALL", "btok"), "*0\r\n");
    assert_true(b.replied);
    assert_int_equal(errcode_of(&b), 40014);
    proxy_free(p);

    /* the tenant read before it changed */
    reset_fakes();
    p = proxy_for_test();
    start(p, &a, "/cgi-bin/user/get", "userid=u1");
    answer_token();
    answer_service("");
    assert_true(pending("HGETALL", ":tenant") >= 0);
    proxy_notice(p, SUITE " " CORP, strlen(SUITE " " CORP));
    drain(&a);
    start(p, &b, "/cgi-bin/user/get", "userid=u1");
    assert_true(pending("HGETALL", ":tenant") >= 0);
    drain(&b);
    proxy_free(p);
}

/*---- 10. Filters and request storage reused ----*/

#define USER_REPLY                                                             \
    "{\"errcode\":0,\"errmsg\":\"ok\",\"userid\":\"u1\",\"name\":\"n1\","      \
    "\"mobile\":\"13800000000\",\"department\":[2],\"extattr\":{\"a\":1}}"

/* user/get of u1 on p, its token, service and tenant read if not cached,
 * WeCom answering body; the reply in *t. With no_alloc, every allocation
 * from the corp token on fails: 1 when none was tried. */
static int
get_u1(struct proxy *p, struct treq *t, const char *body, int no_alloc)
{
    int failed;

    ncalls = 0;
    start(p, t, "/cgi-bin/user/get", "userid=u1");
    if (pending("HGETALL", "btok") >= 0)
        answer_token();
    if (pending("HGETALL", "svc:") >= 0)
        answer_service("");
    if (pending("HGETALL", ":tenant") >= 0)
        answer_tenant();
    if (ncorp_waits != 1)
        fail_msg("no corp token asked for: %s", t->replied ? t->body : "-");
    brk_alloc_fail_at(no_alloc ? 1 : 0);
    give_corp_tokens();
    failed = brk_alloc_failed();
    if (failed) {
        brk_alloc_fail_at(0);
        return 0;
    }
    assert_int_equal(ncalls, 1);
    finish_call(0, body);
    failed = brk_alloc_failed();
    brk_alloc_fail_at(0);
    assert_true(t->replied);
    return !failed;
}

/*
 * Once a loop has served one data call, the next one's upstream call
 * (the URL, the corp token's copy, the filter) and its reply (the output,
 * the audit's names) take no memory at all, and answer the same.
 */
static void
test_warm_call_allocates_nothing(void **state)
{
    struct treq a, b;
    struct proxy *p;
    int none;

    (void)state;
    reset_fakes();
    p = proxy_for_test();
    (void)get_u1(p, &a, USER_REPLY, 0);
    assert_int_equal(a.status, 200);
    assert_string_equal(a.body, "{\"errcode\":0,\"errmsg\":\"ok\",\"userid\":"
                                "\"u1\",\"department\":[2]}");
    none = get_u1(p, &b, USER_REPLY, 1);
    assert_int_equal(b.status, 200);
    assert_string_equal(b.body, a.body);
    assert_false(b.taken);
    assert_true(none);
    assert_int_equal(proxy_inflight(p), 0);
    proxy_free(p);
}

/* A filter given back after a reply that failed midway (malformed, cut
 * short, a repeated key) serves the next request as a new filter would. */
static void
test_filter_reused_after_failure(void **state)
{
    static const char *const bad[] = {
        "{\"errcode\":0,\"userid\":\"u1\",\"name\":",
        "{\"errcode\":0,\"userid\":\"u1\",\"userid\":\"u1\"}",
        "{\"errcode\":0,\"department\":[2,{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[["
        "[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]}",
        "[\"not an object\"]",
    };
    struct treq a, b, fresh;
    struct proxy *p, *p2;
    size_t i;

    (void)state;
    reset_fakes();
    p2 = proxy_for_test();
    (void)get_u1(p2, &fresh, USER_REPLY, 0);
    assert_int_equal(fresh.status, 200);
    proxy_free(p2);
    for (i = 0; i < nitems(bad); i++) {
        reset_fakes();
        p = proxy_for_test();
        (void)get_u1(p, &a, bad[i], 0);
        assert_int_equal(a.status, 502);
        (void)get_u1(p, &b, USER_REPLY, 0);
        assert_int_equal(b.status, 200);
        assert_string_equal(b.body, fresh.body);
        proxy_free(p);
    }
}

/* A reply over 8 KiB is handed to the front as written; the next, small
 * one is copied, whole. */
static void
test_large_reply_handed_over(void **state)
{
    static char body[12000];
    struct treq a, b;
    struct proxy *p;
    size_t n;

    (void)state;
    n = (size_t)snprintf(body, sizeof(body),
                         "{\"errcode\":0,\"name\":\"n\",\"errmsg\":\"");
    memset(body + n, 'x', 10000);
    n += 10000;
    snprintf(body + n, sizeof(body) - n, "\"}");
    reset_fakes();
    p = proxy_for_test();
    (void)get_u1(p, &a, body, 0);
    assert_int_equal(a.status, 200);
    assert_true(a.taken);
    /* all but the name, which a third-party app does not see */
    assert_int_equal(a.len, strlen(body) - strlen(",\"name\":\"n\""));
    assert_int_equal(a.len, strlen(a.body));
    assert_non_null(strstr(a.body, "{\"errcode\":0,\"errmsg\":\"xxxx"));
    (void)get_u1(p, &b, USER_REPLY, 0);
    assert_int_equal(b.status, 200);
    assert_false(b.taken);
    assert_string_equal(b.body, "{\"errcode\":0,\"errmsg\":\"ok\",\"userid\":"
                                "\"u1\",\"department\":[2]}");
    proxy_free(p);
}

/* A corp token longer than a request keeps by itself (and a URL longer
 * than the stack's first kilobyte) reaches WeCom percent-encoded and, when
 * WeCom refuses it, the token manager whole; the retry uses the next. */
static void
test_long_corp_token(void **state)
{
    static char token[701], enc[2200];
    struct treq t;
    struct proxy *p;
    size_t i;

    (void)state;
    for (i = 0; i < 700; i++)
        token[i] = "ab+/"[i % 4];
    token[700] = '\0';
    for (i = 0; i < 700; i++)
        snprintf(enc + strlen(enc), sizeof(enc) - strlen(enc), "%s",
                 token[i] == '+'   ? "%2B"
                 : token[i] == '/' ? "%2F"
                                   : (char[2]){token[i], 0});
    reset_fakes();
    rejected_token[0] = '\0';
    p = proxy_for_test();
    start(p, &t, "/cgi-bin/user/get", "userid=u1");
    answer_token();
    answer_service("");
    answer_tenant();
    give_corp_token(token);
    assert_int_equal(ncalls, 1);
    assert_int_equal(
        strncmp(calls[0].url, "/cgi-bin/user/get?access_token=", 31), 0);
    assert_string_equal(calls[0].url + 31 + strlen(enc), "&userid=u1");
    assert_int_equal(strncmp(calls[0].url + 31, enc, strlen(enc)), 0);
    finish_call(0, "{\"errcode\":42001,\"errmsg\":\"expired\"}");
    assert_false(t.replied);
    assert_string_equal(rejected_token, token);
    give_corp_tokens();
    assert_int_equal(ncalls, 2);
    assert_string_equal(calls[1].url,
                        "/cgi-bin/user/get?access_token=corp-token&userid=u1");
    finish_call(1, USER_REPLY);
    assert_int_equal(t.status, 200);
    proxy_free(p);
}

/* The UTF-8 a string parameter must be: whatever json_string accepted
 * (the check before), over every one- and two-byte value and every
 * three- and four-byte one at the edges of the continuation ranges. */
static void
test_query_utf8_as_jansson(void **state)
{
    static const unsigned char edge[] = {
        0x01, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0,
        0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
    unsigned char v[4];
    char q[64];
    struct treq t;
    struct proxy *p;
    json_t *j;
    size_t n, i, a, b, c, d, checked = 0, valid = 0;
    long want, got;

    (void)state;
    reset_fakes();
    /* the token, service and tenant cached for the whole test, however
     * slowly it runs (under the sanitizers) */
    Cfg.cache_max_age = 3600;
    p = proxy_for_test();
    Cfg.cache_max_age = 5;
    (void)get_u1(p, &t, USER_REPLY, 0);
    for (a = 1; a < 256; a++)
        for (b = 0; b < 256 + nitems(edge) * nitems(edge) * 2; b++) {
            /* b < 256: two bytes; then three and four from the edges */
            if (b < 256) {
                v[0] = (unsigned char)a;
                v[1] = (unsigned char)b;
                n = b == 0 ? 1 : 2;
            } else {
                i = b - 256;
                c = i % nitems(edge);
                d = (i / nitems(edge)) % nitems(edge);
                v[0] = (unsigned char)a;
                v[1] = edge[c];
                v[2] = edge[d];
                v[3] = edge[(c + d) % nitems(edge)];
                n = i < nitems(edge) * nitems(edge) ? 3 : 4;
            }
            /* the one member in range would be called for */
            if (n == 2 && v[0] == 'u' && v[1] == '1')
                continue;
            memcpy(q, "userid=", 7);
            for (i = 0; i < n; i++)
                snprintf(q + 7 + 3 * i, 4, "%%%02X", v[i]);
            j = json_stringn((const char *)v, n);
            want = j != NULL ? 60011 : 40035;
            json_decref(j);
            start(p, &t, "/cgi-bin/user/get", q);
            assert_true(t.replied);
            got = errcode_of(&t);
            if (got != want)
                fail_msg("userid bytes %02x %02x %02x %02x (%zu): errcode "
                         "%ld, want %ld",
                         v[0], v[1], v[2], v[3], n, got, want);
            checked++;
            valid += want == 60011;
        }
    assert_true(valid > 1000 && checked - valid > 1000);
    proxy_free(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tenant_shared_through_failed_cache_put),
        cmocka_unit_test(test_narrowed_range_shared_through_failed_cache_put),
        cmocka_unit_test(test_service_shared_through_failed_cache_put),
        cmocka_unit_test(test_integer_subjects_forwarded_as_checked),
        cmocka_unit_test(test_no_stale_cache_after_notice),
        cmocka_unit_test(test_warm_call_allocates_nothing),
        cmocka_unit_test(test_filter_reused_after_failure),
        cmocka_unit_test(test_large_reply_handed_over),
        cmocka_unit_test(test_long_corp_token),
        cmocka_unit_test(test_query_utf8_as_jansson),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
