/*
 * Fault injection end to end: real redis-server, the WeCom simulator, a
 * relay between the broker and the simulator (slow bodies), and up to
 * three broker instances over loopback. Redis stopped and restarted under
 * load, the broker killed at random points of the install flow, WeCom's
 * timeouts and broken replies on the data and install paths, 45009, a
 * token-expiry storm across three instances, and a drain on SIGTERM.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"
#include "simclient.h"
#include "svcclient.h"
#include "tenantclient.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#define S1     H_SUITE
#define CORP1  "wwmockcorp0001" /* installed in setup, used by services */
#define CORP2  "wwmockcorp0002" /* install path faults */
#define CORP3  "wwmockcorp0003" /* 45009 on the install path */
#define MEMBER "u00003"         /* in the default visible range */
/* corps installed while the broker is killed */
#define KILL_FIRST 4
#define KILL_ITERS 5

static struct harness H;
static struct wecom_crypto *C;
static struct h_relay *Relay;
static pid_t Mock, Bpid, Cpid; /* B and C: the storm only */
static int MockPort, RelayPort;
static char *Reader_secret, *Reader_tok;
static unsigned long long Seed;

/*---- HTTP ----*/

/* user/get of MEMBER through the broker at port. */
static void
get_member(struct sc_resp *r, int port)
{
    sc_call(r, port, "GET", NULL, "/cgi-bin/user/get?access_token=%s&userid=%s",
            Reader_tok, MEMBER);
}

static void
expect_member(int port)
{
    struct sc_resp r;

    get_member(&r, port);
    SC_EXPECT(&r, 200, 0);
    assert_string_equal(h_str(r.json, "userid"), MEMBER);
    sc_resp_free(&r);
}

/*---- The simulator ----*/

static void
fault(const char *json)
{
    h_sim_ok(MockPort, "POST", "/__mock/faults", json);
}

static int
clear_faults(void **state)
{
    char *out = NULL;

    (void)state;
    h_sim(MockPort, "DELETE", "/__mock/faults", NULL, &out);
    free(out);
    if (Relay != NULL)
        h_relay_trickle(Relay, NULL, 0, 0, 0);
    return 0;
}

/* Arrival times (ms) of the requests the simulator received on path;
 * returns how many (at most max). */
static size_t
mock_times(const char *path, long long *t, size_t max)
{
    char p[256];
    json_t *v, *e;
    size_t n = 0, i;

    snprintf(p, sizeof(p), "/__mock/requests?path=%s", path);
    v = h_sim_json(MockPort, "GET", p, NULL);
    json_array_foreach(v, i, e)
    {
        if (n < max)
            t[n++] = (long long)json_integer_value(json_object_get(e, "ts_ms"));
    }
    json_decref(v);
    return n;
}

/*---- Callbacks, as WeCom sends them ----*/

/* The signed envelope and query of an event (both owned). */
static void
build_event(const char *const *kv, size_t npairs, char **env, size_t *envlen,
            char **pq)
{
    const char *k[24], *v[24];
    char *xml, *enc, sig[WECOM_CRYPTO_SIG_SIZE], ts[24], nonce[32];
    static unsigned seq;
    size_t len, i;
    const char *ek[] = {"ToUserName", "Encrypt"};
    const char *evv[2];

    for (i = 0; i < npairs; i++) {
        k[i] = kv[2 * i];
        v[i] = kv[2 * i + 1];
    }
    assert_int_equal(wecom_xml_build(k, v, npairs, &xml, &len), BRK_OK);
    assert_int_equal(wecom_crypto_encrypt(C, xml, len, S1, &enc), BRK_OK);
    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    snprintf(nonce, sizeof(nonce), "f%u", ++seq);
    assert_int_equal(wecom_crypto_sign(C, ts, nonce, enc, sig), BRK_OK);
    evv[0] = S1;
    evv[1] = enc;
    assert_int_equal(wecom_xml_build(ek, evv, 2, env, envlen), BRK_OK);
    *pq = malloc(512);
    snprintf(*pq, 512,
             "/wecom/suite/%s/callback?msg_signature=%s&timestamp=%s"
             "&nonce=%s",
             S1, sig, ts, nonce);
    brk_free(enc);
    brk_free(xml);
}

/*---- brokerctl and Redis ----*/

static const char *
tenant_status(const char *corp, char *buf, size_t len)
{
    int rc;
    json_t *t = tc_ctl(&rc, "tenant", "show", corp, (const char *)NULL);

    snprintf(buf, len, "%s", rc == 0 ? h_str(t, "status") : "");
    json_decref(t);
    return buf;
}

/* A graceful Redis restart keeps the data: SHUTDOWN SAVE writes the
 * dataset, and the restarted server loads it. */
static void
redis_shutdown(void)
{
    redisContext *c = h_redis(&H);
    redisReply *r;

    assert_non_null(c);
    r = redisCommand(c, "SHUTDOWN SAVE");
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    waitpid(H.redis_pid, NULL, 0);
    H.redis_pid = 0;
}

/* Values of field in every entry of the audit stream, each counted:
 * a JSON object value -> count. */
static json_t *
audit_values(const char *field)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    json_t *seen = json_object();
    size_t i, j;

    assert_non_null(c);
    r = redisCommand(c, "XRANGE wb:audit - +");
    assert_non_null(r);
    for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *f = r->element[i]->element[1];

        for (j = 0; j + 1 < f->elements; j += 2)
            if (strcmp(f->element[j]->str, field) == 0) {
                const char *v = f->element[j + 1]->str;

                json_object_set_new(
                    seen, v,
                    json_integer(json_integer_value(json_object_get(seen, v)) +
                                 1));
            }
    }
    freeReplyObject(r);
    redisFree(c);
    return seen;
}

/* A small deterministic generator for the kill points; the seed is
 * printed so a failing run can be repeated (FAULTS_SEED). */
static unsigned long
next_rand(void)
{
    Seed ^= Seed << 13;
    Seed ^= Seed >> 7;
    Seed ^= Seed << 17;
    return (unsigned long)(Seed >> 11);
}

/*---- Fixtures ----*/

static const char *
broker_extra(int api_port)
{
    static char extra[512];

    snprintf(extra, sizeof(extra),
             "wecom_api_base = http://127.0.0.1:%d\n"
             "event_claim_idle = 3\n"
             "event_max_attempts = 12\n"
             "upstream_timeout_ms = 2000\n"
             "upstream_max_body = 4194304\n"
             /* these loads are about Redis and WeCom failing, not
              * about the upstream budget (test_budget.c) */
             "upstream_rate_per_corp = 1000000\n",
             api_port);
    return extra;
}

struct port_wait {
    int port;
};

static int
ready_at(void *arg)
{
    struct port_wait *w = arg;
    char url[64], *body = NULL;
    long st;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", w->port);
    st = h_http("GET", url, NULL, 0, &body);
    free(body);
    return st == 200;
}

/* Another instance on fresh ports, straight to the simulator; its
 * internal port into *port. */
static pid_t
other_broker(const char *name, int *port)
{
    char conf[400], log[400];
    int cb = H.cb_port, ip = H.int_port;
    struct port_wait w;
    pid_t pid;

    snprintf(conf, sizeof(conf), "%s/broker-%s.conf", H.dir, name);
    snprintf(log, sizeof(log), "%s/broker-%s.log", H.dir, name);
    assert_int_equal(h_write_conf_to(&H, conf, 0, broker_extra(MockPort)), 0);
    *port = H.int_port;
    H.cb_port = cb;
    H.int_port = ip;
    pid = h_spawn_broker(conf, log);
    assert_true(pid > 0);
    w.port = *port;
    assert_true(h_wait(ready_at, &w, 20000));
    return pid;
}

static int
setup(void **state)
{
    const char *extra[] = {"--suite", S1 ":" H_SECRET, "--corps",
                           "10",      "--quiet",       NULL};
    const char *env = getenv("FAULTS_SEED");

    (void)state;
    Seed = env ? strtoull(env, NULL, 10)
               : ((unsigned long long)time(NULL) << 16) ^ (unsigned)getpid();
    if (Seed == 0)
        Seed = 1;
    fprintf(stderr, "# FAULTS_SEED=%llu\n", Seed);
    if (h_setup(&H) != 0)
        return -1;
    if (getenv("KEEP_TEST_DIR") != NULL)
        fprintf(stderr, "# test directory: %s\n", H.dir);
    Mock = h_mock_start(H.dir, extra, &MockPort);
    if (Mock == 0)
        return -1;
    tc_init(&H, MockPort);
    if (wecom_crypto_new(H_TOKEN, H_AESKEY, &C) != BRK_OK)
        return -1;
    /* the main instance reaches WeCom through the relay */
    Relay = h_relay_start(MockPort, &RelayPort);
    if (Relay == NULL)
        return -1;
    if (h_write_conf(&H, 0, broker_extra(RelayPort)) != 0 ||
        h_broker_start(&H) != 0)
        return -1;
    tc_push_ticket(S1);
    tc_install(S1, CORP1, h_next_ts());
    tc_wait_status(S1, CORP1, "active", 30000);
    Reader_secret = tc_svc_add("reader", "contacts.read", NULL, NULL);
    Reader_tok = tc_token_for(H.int_port, Reader_secret, CORP1);
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
    h_teardown(&H);
    return 0;
}

/*---- WeCom's failures on the data path ----*/

static void
expect_data_fault(const char *fault_json, long status)
{
    struct sc_resp r;
    long t0 = h_now_ms();

    if (fault_json != NULL)
        fault(fault_json);
    get_member(&r, H.int_port);
    if (r.status != status || sc_ecode(&r) != -1)
        fprintf(stderr, "# fault %s: got %ld %.200s\n",
                fault_json ? fault_json : "(relay)", r.status, r.body);
    SC_EXPECT(&r, status, -1);
    /* an error of the broker's own, never WeCom's bytes */
    assert_null(strstr(r.body, MEMBER));
    assert_null(strstr(r.body, "mock_internal_note"));
    assert_null(strstr(r.body, "html"));
    assert_true(r.len < 400);
    sc_resp_free(&r);
    fprintf(stderr, "# %-60.60s -> %ld in %ld ms\n",
            fault_json ? fault_json : "(slow body)", status, h_now_ms() - t0);
    clear_faults(NULL);
    /* and the next call is served normally */
    expect_member(H.int_port);
}

static void
test_data_path_faults(void **state)
{
    struct sc_resp r;
    long t0;

    (void)state;
    expect_member(H.int_port);
    /* timeout (upstream_timeout_ms is 2000) */
    t0 = h_now_ms();
    expect_data_fault("{\"path\":\"/cgi-bin/user/get\",\"delay_ms\":4000}",
                      504);
    assert_true(h_now_ms() - t0 >= 1900);
    /* 5xx, with an HTML body and with WeCom's own JSON */
    expect_data_fault("{\"path\":\"/cgi-bin/user/get\",\"status\":502,"
                      "\"body\":\"nonjson\"}",
                      502);
    expect_data_fault("{\"path\":\"/cgi-bin/user/get\",\"status\":503}", 502);
    expect_data_fault("{\"path\":\"/cgi-bin/user/get\",\"status\":500,"
                      "\"body\":\"empty\"}",
                      502);
    /* 200 with a body that is malformed, not JSON, empty, or too big */
    expect_data_fault("{\"path\":\"/cgi-bin/user/get\",\"body\":\"malformed\"}",
                      502);
    expect_data_fault("{\"path\":\"/cgi-bin/user/get\",\"body\":\"nonjson\"}",
                      502);
    expect_data_fault("{\"path\":\"/cgi-bin/user/get\",\"body\":\"empty\"}",
                      502);
    expect_data_fault("{\"path\":\"/cgi-bin/user/get\",\"body\":\"huge\"}",
                      502);
    /* the connection closed without a reply (twice: a client may retry
     * once on a fresh connection) */
    expect_data_fault("{\"path\":\"/cgi-bin/user/get\",\"count\":2,"
                      "\"drop_reply\":true}",
                      502);
    /* a slow body: headers at once, then 8 bytes every 100 ms, past the
     * timeout */
    h_relay_trickle(Relay, "/cgi-bin/user/get", 1, 8, 100);
    t0 = h_now_ms();
    expect_data_fault(NULL, 504);
    assert_true(h_now_ms() - t0 >= 1900);
    /* slow, but complete within the timeout: served, filtered */
    h_relay_trickle(Relay, "/cgi-bin/user/get", 1, 256, 150);
    t0 = h_now_ms();
    get_member(&r, H.int_port);
    SC_EXPECT(&r, 200, 0);
    assert_string_equal(h_str(r.json, "userid"), MEMBER);
    assert_null(strstr(r.body, "mock_internal_note"));
    fprintf(stderr, "# slow body within the timeout: 200 in %ld ms\n",
            h_now_ms() - t0);
    assert_true(h_now_ms() - t0 >= 150);
    sc_resp_free(&r);
}

/*---- WeCom's failures on the install path ----*/

static void
test_install_path_faults(void **state)
{
    static const char *const faults[] = {
        "{\"path\":\"/cgi-bin/service/get_auth_info\",\"delay_ms\":3000}",
        "{\"path\":\"/cgi-bin/service/get_auth_info\",\"status\":503,"
        "\"body\":\"nonjson\"}",
        "{\"path\":\"/cgi-bin/agent/get_permissions\",\"body\":\"malformed\"}",
        "{\"path\":\"/cgi-bin/department/simplelist\",\"body\":\"empty\"}",
        "{\"path\":\"/cgi-bin/user/simplelist\",\"body\":\"huge\"}",
        "{\"path\":\"/cgi-bin/user/get\",\"status\":500}",
    };
    size_t i, before;
    char buf[64];
    json_t *t;
    int rc;
    long t0 = h_now_ms();

    (void)state;
    for (i = 0; i < nitems(faults); i++)
        fault(faults[i]);
    /* and a slow body on the directory, past the timeout */
    h_relay_trickle(Relay, "/cgi-bin/tag/get", 1, 8, 100);
    before = tc_mock_count("/cgi-bin/service/get_permanent_code", NULL);
    tc_install(S1, CORP2, h_next_ts());
    /* never active on a half-read grant or directory */
    while (h_now_ms() - t0 < 60000 &&
           strcmp(tenant_status(CORP2, buf, sizeof(buf)), "active") != 0)
        assert_true(buf[0] == '\0' || strcmp(buf, "installing") == 0);
    assert_string_equal(buf, "active");
    fprintf(stderr,
            "# install through %zu WeCom faults and a slow body: "
            "active after %ld ms\n",
            nitems(faults), h_now_ms() - t0);
    /* the AuthCode was exchanged once; the retries used the stored
     * result */
    assert_int_equal(tc_mock_count("/cgi-bin/service/get_permanent_code", NULL),
                     before + 1);
    t = tc_ctl(&rc, "tenant", "show", CORP2, (const char *)NULL);
    assert_int_equal(rc, 0);
    /* the whole directory of the range, as a fault-free reading gives */
    clear_faults(NULL);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(t, "directory"), "users")),
                     tc_expected_members(S1, CORP2));
    json_decref(t);
    {
        char *log = h_slurp(H.log);

        assert_non_null(strstr(log, "get_auth_info: upstream_timeout"));
        assert_non_null(strstr(log, "upstream_malformed"));
        free(log);
    }
    assert_int_equal(tc_suite_field(S1, "dead_letters"), 0);
}

/*---- 45009 ----*/

static void
test_45009_passed_through_and_retried(void **state)
{
    struct sc_resp r;
    long long t[8];
    size_t n, i;
    long t0;

    (void)state;
    /* to the service: WeCom's code and message, as WeCom sent them; the
     * tenant's tag/list then rests for WeCom's 60 s on every instance
     * (SPEC §5), its other APIs go on */
    fault("{\"path\":\"/cgi-bin/tag/list\",\"errcode\":45009}");
    sc_call(&r, H.int_port, "GET", NULL, "/cgi-bin/tag/list?access_token=%s",
            Reader_tok);
    SC_EXPECT(&r, 200, 45009);
    assert_true(strlen(h_str(r.json, "errmsg")) > 0);
    assert_null(json_object_get(r.json, "taglist"));
    sc_resp_free(&r);
    expect_member(H.int_port);
    /* in the workers: retried, each time after a longer pause */
    h_sim_ok(MockPort, "DELETE", "/__mock/requests", NULL);
    fault("{\"path\":\"/cgi-bin/service/get_auth_info\",\"count\":3,"
          "\"errcode\":45009}");
    t0 = h_now_ms();
    tc_install(S1, CORP3, h_next_ts());
    tc_wait_status(S1, CORP3, "active", 30000);
    n = mock_times("/cgi-bin/service/get_auth_info", t, 8);
    fprintf(stderr, "# 45009 three times: active after %ld ms; pauses:",
            h_now_ms() - t0);
    for (i = 1; i < n; i++)
        fprintf(stderr, " %lld", t[i] - t[i - 1]);
    fprintf(stderr, " ms\n");
    assert_int_equal(n, 4);
    /* 500 ms, then doubled (capped at a third of event_claim_idle) */
    assert_true(t[1] - t[0] >= 450);
    assert_true(t[2] - t[1] >= 900);
    assert_true(t[2] - t[1] > t[1] - t[0]);
    assert_true(t[3] - t[2] >= 900);
    {
        char *log = h_slurp(H.log);

        assert_non_null(strstr(log, "(errcode 45009)"));
        free(log);
    }
}

/*---- Redis stopped and restarted under load ----*/

enum { SLOTS = 8 };

struct slot {
    CURL *e;
    struct sc_resp r;
    int busy;
    int cb;     /* a callback, else a service request */
    int token;  /* a service request: gettoken, else user/get */
    int marker; /* the callback's ExternalUserID number */
    long t0;
    long next;
    char *env;
};

struct load {
    int run; /* in the markers: each run's are its own */
    CURLM *m;
    struct slot s[SLOTS];
    int nmarkers;
    char *acked; /* marker -> 1 when acknowledged */
    size_t acked_cap;
    /* phase times */
    long stop_done, start_begin, start_done;
    long svc_back, cb_back; /* first success after the restart */
    /* counts */
    int svc_ok, svc_503, cb_ok, cb_503, odd;
    int down_svc, down_cb;
};

static void
slot_start(struct load *L, struct slot *s)
{
    char url[600], *pq, *env;
    size_t len;

    sc_resp_init(&s->r);
    s->t0 = h_now_ms();
    if (s->cb) {
        char uid[32], tsb[24];
        const char *kv[14];

        s->marker = L->nmarkers++;
        snprintf(uid, sizeof(uid), "wmfault%d-%06d", L->run, s->marker);
        snprintf(tsb, sizeof(tsb), "%ld", (long)time(NULL));
        kv[0] = "SuiteId";
        kv[1] = S1;
        kv[2] = "InfoType";
        kv[3] = "change_external_contact";
        kv[4] = "TimeStamp";
        kv[5] = tsb;
        kv[6] = "AuthCorpId";
        kv[7] = CORP1;
        kv[8] = "ChangeType";
        kv[9] = "add_external_contact";
        kv[10] = "UserID";
        kv[11] = MEMBER;
        kv[12] = "ExternalUserID";
        kv[13] = uid;
        build_event(kv, 7, &env, &len, &pq);
        s->env = env;
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", H.cb_port, pq);
        free(pq);
        s->e = sc_easy(&s->r, "POST", url, env, len, NULL);
    } else if (s->token) {
        snprintf(url, sizeof(url),
                 "http://127.0.0.1:%d/cgi-bin/gettoken?corpid=%s"
                 "&corpsecret=%s",
                 H.int_port, CORP1, Reader_secret);
        s->e = sc_easy(&s->r, "GET", url, NULL, 0, NULL);
    } else {
        snprintf(url, sizeof(url),
                 "http://127.0.0.1:%d/cgi-bin/user/get?access_token=%s"
                 "&userid=%s",
                 H.int_port, Reader_tok, MEMBER);
        s->e = sc_easy(&s->r, "GET", url, NULL, 0, NULL);
    }
    curl_easy_setopt(s->e, CURLOPT_PRIVATE, s);
    curl_multi_add_handle(L->m, s->e);
    s->busy = 1;
}

static void
slot_done(struct load *L, struct slot *s)
{
    long t1 = h_now_ms();
    int down = L->stop_done > 0 && s->t0 >= L->stop_done &&
               (L->start_begin == 0 || t1 <= L->start_begin);
    int after = L->start_done > 0 && s->t0 >= L->start_done;

    curl_easy_getinfo(s->e, CURLINFO_RESPONSE_CODE, &s->r.status);
    curl_multi_remove_handle(L->m, s->e);
    curl_easy_cleanup(s->e);
    sc_resp_parse(&s->r);
    if (s->cb) {
        int ok = s->r.status == 200 && s->r.body != NULL &&
                 strcmp(s->r.body, "success") == 0;

        if (ok) {
            L->cb_ok++;
            if ((size_t)s->marker >= L->acked_cap) {
                size_t ncap = L->acked_cap ? L->acked_cap * 2 : 1024;

                while (ncap <= (size_t)s->marker)
                    ncap *= 2;
                L->acked = realloc(L->acked, ncap);
                assert_non_null(L->acked);
                memset(L->acked + L->acked_cap, 0, ncap - L->acked_cap);
                L->acked_cap = ncap;
            }
            L->acked[s->marker] = 1;
            if (after && L->cb_back == 0)
                L->cb_back = t1;
        } else if (s->r.status == 503) {
            L->cb_503++;
        } else {
            L->odd++;
            fprintf(stderr, "# callback: %ld %.100s\n", s->r.status,
                    s->r.body ? s->r.body : "");
        }
        if (down) {
            L->down_cb++;
            /* never acknowledged while the store is away */
            if (s->r.status != 503)
                fprintf(stderr, "# callback while Redis was down: %ld %s\n",
                        s->r.status, s->r.body ? s->r.body : "");
            assert_int_equal(s->r.status, 503);
        }
        brk_free(s->env);
        s->env = NULL;
    } else {
        /* gettoken: the current token while more than 5 minutes of it
         * remain */
        int ok = s->r.status == 200 && sc_ecode(&s->r) == 0 &&
                 (s->token ? strcmp(h_str(s->r.json, "access_token"),
                                    Reader_tok) == 0
                           : strcmp(h_str(s->r.json, "userid"), MEMBER) == 0);

        if (ok) {
            L->svc_ok++;
            if (after && L->svc_back == 0)
                L->svc_back = t1;
        } else if (s->r.status == 503 && sc_ecode(&s->r) == -1) {
            L->svc_503++;
        } else {
            L->odd++;
            fprintf(stderr, "# service: %ld %.100s\n", s->r.status,
                    s->r.body ? s->r.body : "");
        }
        /* fail closed: never data or a token without the store */
        if (s->r.status != 200) {
            assert_null(strstr(s->r.body ? s->r.body : "", MEMBER));
            assert_null(json_object_get(s->r.json, "access_token"));
        }
        if (down) {
            L->down_svc++;
            if (s->r.status != 503)
                fprintf(stderr, "# service while Redis was down: %ld %s\n",
                        s->r.status, s->r.body ? s->r.body : "");
            SC_EXPECT(&s->r, 503, -1);
        }
    }
    /* after recovery, everything succeeds */
    if (L->svc_back > 0 && L->cb_back > 0 &&
        s->t0 > (L->svc_back > L->cb_back ? L->svc_back : L->cb_back) + 200) {
        if (s->r.status != 200)
            fprintf(stderr, "# after recovery: %ld %.200s\n", s->r.status,
                    s->r.body ? s->r.body : "");
        assert_int_equal(s->r.status, 200);
    }
    sc_resp_free(&s->r);
    s->busy = 0;
    /* a steady rate: about 100 requests per second per slot */
    s->next = t1 + 10;
}

static void
load_pump(struct load *L)
{
    CURLMsg *msg;
    int running, left, i;
    long now = h_now_ms();

    for (i = 0; i < SLOTS; i++)
        if (!L->s[i].busy && L->s[i].next <= now)
            slot_start(L, &L->s[i]);
    curl_multi_perform(L->m, &running);
    while ((msg = curl_multi_info_read(L->m, &left)) != NULL) {
        struct slot *s = NULL;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
        slot_done(L, s);
    }
    curl_multi_poll(L->m, NULL, 0, 5, NULL);
}

struct markers {
    const struct load *L;
    int missing;
    int doubled;
};

static int
all_markers_processed(void *arg)
{
    struct markers *k = arg;
    json_t *seen = audit_values("ExternalUserID");
    char uid[32];
    int i;

    k->missing = 0;
    k->doubled = 0;
    for (i = 0; i < k->L->nmarkers; i++) {
        long long c;

        snprintf(uid, sizeof(uid), "wmfault%d-%06d", k->L->run, i);
        c = json_integer_value(json_object_get(seen, uid));
        if ((size_t)i < k->L->acked_cap && k->L->acked[i] && c == 0)
            k->missing++;
        if (c > 1)
            k->doubled++;
    }
    json_decref(seen);
    return k->missing == 0;
}

/* Redis answers "ok" to INFO persistence once the AOF is on and written. */
static int
aof_ready(void *arg)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    int ok = 0;

    (void)arg;
    if (c == NULL)
        return 0;
    r = redisCommand(c, "INFO persistence");
    ok = r != NULL && r->type == REDIS_REPLY_STRING &&
         strstr(r->str, "aof_enabled:1") != NULL &&
         strstr(r->str, "aof_rewrite_in_progress:0") != NULL &&
         strstr(r->str, "aof_rewrite_scheduled:0") != NULL;
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

static void
redis_cmd(const char *cmd)
{
    redisContext *c = h_redis(&H);
    redisReply *r;

    assert_non_null(c);
    r = redisCommand(c, cmd);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(c);
}

/* Load for a second, Redis away for 2.5 s, load until both kinds of
 * request succeed again; then every acknowledged callback must be
 * processed. hard: Redis is SIGKILLed, with AOF on as the embedded Redis
 * runs (a killed process loses nothing it wrote; only a host crash can
 * lose the last second with everysec); else it shuts down saving. */
static void
redis_outage_under_load(int hard)
{
    struct load L;
    struct markers k;
    long t0, end, ms;
    int i, acked = 0;

    memset(&L, 0, sizeof(L));
    L.run = hard;
    if (hard) {
        redis_cmd("CONFIG SET appendonly yes");
        assert_true(h_wait(aof_ready, NULL, 20000));
    }
    L.m = curl_multi_init();
    for (i = 0; i < SLOTS; i++) {
        L.s[i].cb = i % 2;
        L.s[i].token = i % 4 == 2;
    }
    t0 = h_now_ms();
    end = t0 + 30000;
    while (h_now_ms() < end) {
        long now = h_now_ms();

        if (L.stop_done == 0 && now - t0 >= 1000) {
            if (hard)
                h_redis_stop(&H);
            else
                redis_shutdown();
            L.stop_done = h_now_ms();
        } else if (L.stop_done > 0 && L.start_begin == 0 &&
                   now - L.stop_done >= 2500) {
            L.start_begin = h_now_ms();
            assert_int_equal(hard ? h_redis_start_aof(&H) : h_redis_start(&H),
                             0);
            L.start_done = h_now_ms();
        } else if (L.svc_back > 0 && L.cb_back > 0 &&
                   now > (L.svc_back > L.cb_back ? L.svc_back : L.cb_back) +
                             1500) {
            break;
        }
        load_pump(&L);
    }
    /* let the requests in flight finish */
    while (1) {
        int busy = 0;

        for (i = 0; i < SLOTS; i++)
            busy |= L.s[i].busy;
        if (!busy)
            break;
        for (i = 0; i < SLOTS; i++)
            L.s[i].next = end + 1000000;
        load_pump(&L);
    }
    curl_multi_cleanup(L.m);
    for (i = 0; (size_t)i < L.acked_cap; i++)
        acked += L.acked[i];
    fprintf(stderr,
            "# Redis %s, down %ld ms under load: service %d ok, %d 503 (%d "
            "while down); callbacks %d acked, %d 503 (%d while down); %d "
            "other\n",
            hard ? "SIGKILLed (AOF on)" : "shut down (SAVE)",
            L.start_begin - L.stop_done, L.svc_ok, L.svc_503, L.down_svc,
            L.cb_ok, L.cb_503, L.down_cb, L.odd);
    fprintf(stderr,
            "# recovery after Redis answered again: service API %ld ms, "
            "callbacks %ld ms\n",
            L.svc_back - L.start_done, L.cb_back - L.start_done);
    assert_true(L.svc_back > 0 && L.cb_back > 0);
    assert_true(L.down_svc > 10 && L.down_cb > 10);
    assert_int_equal(L.odd, 0);
    assert_int_equal(acked, L.cb_ok);
    /* no acknowledged callback lost: each was processed (its marker is in
     * the audit trail) */
    k.L = &L;
    ms = h_now_ms();
    if (!h_wait(all_markers_processed, &k, 30000)) {
        fprintf(stderr, "# %d acknowledged callbacks never processed\n",
                k.missing);
        fail();
    }
    fprintf(stderr,
            "# all %d acknowledged callbacks processed %ld ms after the "
            "load; processed more than once: %d\n",
            acked, h_now_ms() - ms, k.doubled);
    free(L.acked);
    assert_int_equal(tc_suite_field(S1, "dead_letters"), 0);
    expect_member(H.int_port);
}

static void
test_redis_restart_under_load(void **state)
{
    (void)state;
    redis_outage_under_load(0);
}

static void
test_redis_killed_under_load(void **state)
{
    (void)state;
    redis_outage_under_load(1);
}

/*---- A token-expiry storm across three instances ----*/

static void
test_token_storm_three_instances(void **state)
{
    enum { N = 300 };
    static struct sc_resp rs[N];
    CURL *easy[N];
    CURLM *m = curl_multi_init();
    int ports[3], running = 1, i, ok = 0;
    size_t before, after;
    char url[512];
    long t0;

    (void)state;
    Bpid = other_broker("b", &ports[1]);
    Cpid = other_broker("c", &ports[2]);
    ports[0] = H.int_port;
    /* each holds the current corp token */
    for (i = 0; i < 3; i++)
        expect_member(ports[i]);
    before = tc_mock_count("/cgi-bin/service/get_corp_token", CORP1);
    h_sim_ok(MockPort, "POST", "/__mock/invalidate",
             "{\"corpid\":\"" CORP1 "\"}");
    for (i = 0; i < N; i++) {
        snprintf(url, sizeof(url),
                 "http://127.0.0.1:%d/cgi-bin/user/get?access_token=%s"
                 "&userid=%s",
                 ports[i % 3], Reader_tok, MEMBER);
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
            strcmp(h_str(rs[i].json, "userid"), MEMBER) == 0)
            ok++;
        else if (ok + 5 > i)
            fprintf(stderr, "# storm %d: %ld %.200s\n", i, rs[i].status,
                    rs[i].body ? rs[i].body : "");
        sc_resp_free(&rs[i]);
    }
    curl_multi_cleanup(m);
    after = tc_mock_count("/cgi-bin/service/get_corp_token", CORP1);
    fprintf(stderr,
            "# storm over three instances: %d/%d answered with data in %ld "
            "ms; get_corp_token calls: %zu\n",
            ok, N, h_now_ms() - t0, after - before);
    assert_int_equal(ok, N);
    assert_int_equal(after - before, 1);
    assert_int_equal(h_stop(Bpid, SIGTERM), 0);
    Bpid = 0;
    assert_int_equal(h_stop(Cpid, SIGTERM), 0);
    Cpid = 0;
}

/*---- SIGKILL at random points of the install flow ----*/

struct settle {
    const char *corp;
    long lost0;
    int lost;
};

static int
settled(void *arg)
{
    struct settle *s = arg;
    char buf[64];

    if (strcmp(tenant_status(s->corp, buf, sizeof(buf)), "active") == 0)
        return 1;
    if (tc_suite_field(S1, "lost_authorizations") > s->lost0) {
        s->lost = 1;
        return 1;
    }
    return 0;
}

static int
exchange_sent(void *arg)
{
    (void)arg;
    return tc_mock_count("/cgi-bin/service/get_permanent_code", NULL) >= 1;
}

/* The path of the last request the simulator received, or "none". */
static void
last_call(char *out, size_t len)
{
    json_t *v = h_sim_json(MockPort, "GET", "/__mock/requests", NULL);
    size_t n = json_array_size(v);

    snprintf(out, len, "%s",
             n ? h_str(json_array_get(v, n - 1), "path") : "none");
    json_decref(v);
}

static void
test_sigkill_during_install(void **state)
{
    int it, rc, nlost = 0;
    json_t *all, *t;
    size_t i;

    (void)state;
    for (it = 0; it < KILL_ITERS; it++) {
        char corp[32], at_kill[128];
        struct settle s;
        long delay, t0;
        size_t exch;
        /* the last iteration kills while WeCom holds the exchange's
         * reply: the reply is lost */
        int lose = it == KILL_ITERS - 1;

        snprintf(corp, sizeof(corp), "wwmockcorp%04d", KILL_FIRST + it);
        h_sim_ok(MockPort, "DELETE", "/__mock/requests", NULL);
        if (lose) {
            fault("{\"path\":\"/cgi-bin/service/get_permanent_code\","
                  "\"delay_ms\":800}");
        } else {
            /* a longer flow, so the kill lands inside it */
            fault("{\"path\":\"/cgi-bin/service/get_auth_info\","
                  "\"delay_ms\":150}");
            fault("{\"path\":\"/cgi-bin/agent/get_permissions\","
                  "\"delay_ms\":150}");
            fault("{\"path\":\"/cgi-bin/department/simplelist\","
                  "\"delay_ms\":150}");
            fault("{\"path\":\"/cgi-bin/user/list_id\",\"delay_ms\":150}");
        }
        s.corp = corp;
        s.lost0 = tc_suite_field(S1, "lost_authorizations");
        s.lost = 0;
        tc_install(S1, corp, h_next_ts());
        t0 = h_now_ms();
        if (lose) {
            assert_true(h_wait(exchange_sent, NULL, 10000));
            delay = 50 + (long)(next_rand() % 500);
        } else {
            delay = (long)(next_rand() % 900);
        }
        while (h_now_ms() - t0 < delay)
            usleep(1000);
        assert_int_equal(h_broker_stop(&H, SIGKILL), 128 + SIGKILL);
        last_call(at_kill, sizeof(at_kill));
        clear_faults(NULL);
        assert_int_equal(h_broker_start(&H), 0);
        assert_true(h_wait(settled, &s, 30000));
        exch = tc_mock_count("/cgi-bin/service/get_permanent_code", NULL);
        fprintf(stderr,
                "# kill %d, %ld ms after the ack, last WeCom call %s: %s; "
                "get_permanent_code calls %zu\n",
                it, delay, at_kill, s.lost ? "reply lost" : "active", exch);
        if (!s.lost) {
            /* exchanged exactly once */
            assert_int_equal(exch, 1);
            continue;
        }
        /* the reply was lost: the retry got 40078; the corp's next event
         * marks it reinstall_required, and a new install makes it active */
        nlost++;
        assert_int_equal(exch, 2);
        {
            char buf[64];

            assert_string_equal(tenant_status(corp, buf, sizeof(buf)), "");
        }
        tc_corp_event(S1, "change_contact", corp, h_next_ts(), "ChangeType",
                      "update_user");
        tc_wait_status(S1, corp, "reinstall_required", 30000);
        tc_install(S1, corp, h_next_ts());
        tc_wait_status(S1, corp, "active", 30000);
        assert_int_equal(
            tc_mock_count("/cgi-bin/service/get_permanent_code", NULL), 3);
    }
    assert_true(nlost >= 1);
    /* the end state: each tenant listed once, active, with its whole
     * directory; nothing half-installed; nothing left in the stream */
    all = tc_ctl(&rc, "tenants", (const char *)NULL);
    assert_int_equal(rc, 0);
    for (it = 0; it < KILL_ITERS; it++) {
        char corp[32];
        int n = 0;

        snprintf(corp, sizeof(corp), "wwmockcorp%04d", KILL_FIRST + it);
        json_array_foreach(all, i, t)
        {
            if (strcmp(h_str(t, "corpid"), corp) != 0)
                continue;
            n++;
            assert_string_equal(h_str(t, "status"), "active");
        }
        assert_int_equal(n, 1);
        t = tc_ctl(&rc, "tenant", "show", corp, (const char *)NULL);
        assert_int_equal(json_integer_value(json_object_get(
                             json_object_get(t, "directory"), "users")),
                         tc_expected_members(S1, corp));
        json_decref(t);
    }
    json_array_foreach(all, i, t)
    {
        if (strcmp(h_str(t, "status"), "active") != 0)
            fprintf(stderr, "# tenant %s is %s\n", h_str(t, "corpid"),
                    h_str(t, "status"));
        assert_string_equal(h_str(t, "status"), "active");
    }
    json_decref(all);
    assert_int_equal(h_redis_int(&H, "XLEN wb:{" S1 "}:events"), 0);
    assert_int_equal(tc_suite_field(S1, "dead_letters"), 0);
}

/*---- SIGTERM drains the requests in flight ----*/

/* The internal listener refuses connections. */
static int
healthz_refused(void *arg)
{
    char *hz = h_int_url(&H, "/healthz"), *body = NULL;
    int refused = h_http("GET", hz, NULL, 0, &body) == -1;

    (void)arg;
    free(hz);
    free(body);
    return refused;
}

static void
test_sigterm_drains_inflight(void **state)
{
    enum { N = 6 };
    static struct sc_resp rs[N];
    CURL *easy[N];
    CURLM *m = curl_multi_init();
    int running = 1, i, rc;
    char url[512];
    long t0;
    pid_t pid = H.broker_pid;
    int status;

    (void)state;
    fault("{\"path\":\"/cgi-bin/user/get\",\"count\":6,\"delay_ms\":1500}");
    for (i = 0; i < N; i++) {
        snprintf(url, sizeof(url),
                 "http://127.0.0.1:%d/cgi-bin/user/get?access_token=%s"
                 "&userid=%s",
                 H.int_port, Reader_tok, MEMBER);
        sc_resp_init(&rs[i]);
        easy[i] = sc_easy(&rs[i], "GET", url, NULL, 0, NULL);
        curl_multi_add_handle(m, easy[i]);
    }
    t0 = h_now_ms();
    while (h_now_ms() - t0 < 400) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 20, NULL);
    }
    kill(pid, SIGTERM);
    /* it no longer accepts while it drains */
    assert_true(h_wait(healthz_refused, NULL, 5000));
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
        SC_EXPECT(&rs[i], 200, 0);
        assert_string_equal(h_str(rs[i].json, "userid"), MEMBER);
        sc_resp_free(&rs[i]);
    }
    curl_multi_cleanup(m);
    fprintf(stderr,
            "# SIGTERM with %d slow requests in flight: all answered "
            "after %ld ms\n",
            N, h_now_ms() - t0);
    /* new connections are refused while it drains, and it exits 0 */
    assert_true(waitpid(pid, &status, 0) == pid);
    H.broker_pid = 0;
    assert_true(WIFEXITED(status));
    rc = WEXITSTATUS(status);
    assert_int_equal(rc, 0);
    fprintf(stderr, "# exited %d after %ld ms\n", rc, h_now_ms() - t0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_data_path_faults, clear_faults),
        cmocka_unit_test_teardown(test_install_path_faults, clear_faults),
        cmocka_unit_test_teardown(test_45009_passed_through_and_retried,
                                  clear_faults),
        cmocka_unit_test(test_redis_restart_under_load),
        cmocka_unit_test(test_redis_killed_under_load),
        cmocka_unit_test(test_token_storm_three_instances),
        cmocka_unit_test_teardown(test_sigkill_during_install, clear_faults),
        cmocka_unit_test_teardown(test_sigterm_drains_inflight, clear_faults),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
