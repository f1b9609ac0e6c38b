/*
 * The browser flows of SPEC §4b end to end: real redis-server, the WeCom
 * simulator and the broker over loopback, redirects followed by hand. The
 * provider-site install (pre_auth_code, set_session_info, the AuthCode on
 * the durable path), member OAuth in both scopes and both reply shapes,
 * the service side (getuserinfo, getuserdetail filtered by each service's
 * grant, single-use codes, ticket expiry), every refusal with a Redis
 * snapshot before and after, the cap on live states and the rate limit.
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
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "codec.h"
#include "harness.h"
#include "simclient.h"
#include "tenantclient.h"
#include "query.h"
#include "service.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#define S1     H_SUITE
#define S2     "wwtestsuite00002"
#define SEC2   "second-suite-secret-0002"
#define CORP1  "wwmockcorp0001" /* installed through the browser */
#define CORP2  "wwmockcorp0002" /* the second install, same pre_auth_code */
#define RET_X  "https://app.example/return/x"
#define RET_CB "https://app.example/return/cb"
/* The simulator's user_ticket lifetime: short, so expiry is seen. */
#define TICKET_LIFE "2"

static struct harness H;
static pid_t Mock;
static int MockPort, LocalPort;
static char Pre_auth[600];
static char *Sec_a, *Sec_b; /* contacts.read,member.sensitive; contacts.read */
static char *Tok_a1, *Tok_b1; /* their tokens for CORP1 */
static char *Tok_a2;          /* A's token for CORP2 */

/*---- URLs and redirects ----*/

struct hop {
    long status;
    char *body;
    char *loc;
};

static void
hop_free(struct hop *h)
{
    free(h->body);
    free(h->loc);
    memset(h, 0, sizeof(*h));
}

/* GET url without following; fills h (hop_free it). */
static void
get(struct hop *h, const char *url)
{
    memset(h, 0, sizeof(*h));
    h->status = h_http_loc(url, &h->body, &h->loc);
}

static size_t
src_body(char *p, size_t size, size_t n, void *arg)
{
    struct hop *h = arg;
    size_t add = size * n, len = h->body ? strlen(h->body) : 0;
    char *nb = realloc(h->body, len + add + 1);

    if (nb == NULL)
        return 0;
    memcpy(nb + len, p, add);
    nb[len + add] = '\0';
    h->body = nb;
    return add;
}

static size_t
src_header(char *p, size_t size, size_t n, void *arg)
{
    struct hop *h = arg;
    size_t len = size * n;

    if (len > 10 && strncasecmp(p, "Location: ", 10) == 0) {
        free(h->loc);
        h->loc = strndup(p + 10, len - 10);
        h->loc[strcspn(h->loc, "\r\n")] = '\0';
    }
    return len;
}

/* get() from another loopback source address: the rate limit keeps one
 * bucket per client address, so the many refusals below do not spend
 * the budget of the flows (which come from 127.0.0.1). */
static void
get_src(struct hop *h, const char *src, const char *url)
{
    CURL *c = curl_easy_init();

    memset(h, 0, sizeof(*h));
    h->status = -1;
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_INTERFACE, src);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 15000L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, src_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, src_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, h);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &h->status);
    curl_easy_cleanup(c);
    if (h->body == NULL)
        h->body = calloc(1, 1);
}

static void __attribute__((format(printf, 2, 3)))
get_cb(struct hop *h, const char *fmt, ...)
{
    char pq[4096];
    char *url;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(pq, sizeof(pq), fmt, ap);
    va_end(ap);
    url = h_cb_url(&H, pq);
    get(h, url);
    free(url);
}

/* Percent-encoded s (owned). */
static char *
enc(const char *s)
{
    char *out = malloc(strlen(s) * 3 + 1);

    assert_non_null(out);
    codec_pct_encode(s, out);
    return out;
}

/* The parsed query of url, without its fragment (query_free it). */
static struct query *
url_query(const char *url)
{
    const char *q = strchr(url, '?');
    const char *hash = strchr(url, '#');
    struct query *out = NULL;
    char *raw;

    assert_non_null(q);
    raw = hash && hash > q ? strndup(q + 1, (size_t)(hash - q - 1))
                           : strdup(q + 1);
    assert_int_equal(query_parse(raw, 32, &out), BRK_OK);
    free(raw);
    return out;
}

/* The single value of name in url's query (owned), or NULL. */
static char *
param(const char *url, const char *name)
{
    struct query *q = url_query(url);
    char *v = NULL;

    if (query_count(q, name) == 1)
        v = strdup(query_get(q, name));
    query_free(q);
    return v;
}

static size_t
nparams(const char *url)
{
    struct query *q = url_query(url);
    size_t n = q->n;

    query_free(q);
    return n;
}

static int
starts(const char *s, const char *prefix)
{
    return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Assert a 302 whose Location starts with prefix. */
#define EXPECT_302(h, prefix)                                                  \
    do {                                                                       \
        if ((h)->status != 302 || !starts((h)->loc, prefix))                   \
            fprintf(stderr,                                                    \
                    "# %s:%d: want 302 to %s, got %ld to %s: %.300s\n",        \
                    __FILE__, __LINE__, prefix, (h)->status,                   \
                    (h)->loc ? (h)->loc : "(none)", (h)->body);                \
        assert_int_equal((h)->status, 302);                                    \
        assert_true(starts((h)->loc, prefix));                                 \
    } while (0)

/* Assert a refusal page: status, HTML, the reason in it, no Location. */
#define EXPECT_PAGE(h, st, reason)                                             \
    do {                                                                       \
        if ((h)->status != (st) || strstr((h)->body, reason) == NULL)          \
            fprintf(stderr, "# %s:%d: want %d '%s', got %ld: %.300s\n",        \
                    __FILE__, __LINE__, (int)(st), reason, (h)->status,        \
                    (h)->body);                                                \
        assert_int_equal((h)->status, (st));                                   \
        assert_non_null(strstr((h)->body, "<p>"));                             \
        assert_non_null(strstr((h)->body, reason));                            \
        assert_null((h)->loc);                                                 \
    } while (0)

static void
public_base(char *out, size_t len)
{
    snprintf(out, len, "http://127.0.0.1:%d", H.cb_port);
}

/*---- The simulator ----*/

/* What WeCom itself has for a member: user/get with our own corp token. */
static json_t *
member_truth(const char *corp, const char *userid)
{
    char p[512];
    json_t *t, *u;

    snprintf(p, sizeof(p), "/__mock/corp_token?suite_id=%s&corpid=%s", S1,
             corp);
    t = h_sim_json(MockPort, "GET", p, NULL);
    snprintf(p, sizeof(p), "/cgi-bin/user/get?access_token=%s&userid=%s",
             h_str(t, "access_token"), userid);
    json_decref(t);
    u = h_sim_json(MockPort, "GET", p, NULL);
    assert_int_equal(json_integer_value(json_object_get(u, "errcode")), 0);
    return u;
}

/*---- Callbacks, as WeCom sends them (for the suite ticket) ----*/

/*---- brokerctl ----*/

/*---- The service API ----*/

static json_t *api(const char *method, const char *body, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One call on the internal listener; the JSON reply (HTTP 200 asserted). */
static json_t *
api(const char *method, const char *body, const char *fmt, ...)
{
    char pq[2048], *url, *out = NULL;
    json_error_t e;
    json_t *v;
    va_list ap;
    long st;

    va_start(ap, fmt);
    vsnprintf(pq, sizeof(pq), fmt, ap);
    va_end(ap);
    url = h_int_url(&H, pq);
    st = h_http(method, url, body, body ? strlen(body) : 0, &out);
    free(url);
    if (st != 200)
        fprintf(stderr, "# %s: %ld %s\n", pq, st, out);
    assert_int_equal(st, 200);
    v = json_loads(out, 0, &e);
    free(out);
    assert_non_null(v);
    return v;
}

static long
errcode(const json_t *v)
{
    const json_t *e = json_object_get(v, "errcode");

    return json_is_integer(e) ? (long)json_integer_value(e) : -9999;
}

#define EXPECT_ERRCODE(v, code)                                                \
    do {                                                                       \
        if (errcode(v) != (code)) {                                            \
            char *d_ = json_dumps(v, 0);                                       \
            fprintf(stderr, "# %s:%d: want errcode %ld: %s\n", __FILE__,       \
                    __LINE__, (long)(code), d_);                               \
            free(d_);                                                          \
        }                                                                      \
        assert_int_equal(errcode(v), (code));                                  \
    } while (0)

static json_t *
userinfo(const char *tok, const char *code)
{
    return api("GET", NULL, "/cgi-bin/auth/getuserinfo?access_token=%s&code=%s",
               tok, code);
}

static json_t *
userdetail(const char *tok, const char *ticket)
{
    char body[256];

    snprintf(body, sizeof(body), "{\"user_ticket\":\"%s\"}", ticket);
    return api("POST", body, "/cgi-bin/auth/getuserdetail?access_token=%s",
               tok);
}

/*---- Redis ----*/

/* The snapshot without the lines of keys containing any of skip
 * (NULL-terminated): for refusals that consume their state. */
static char *
snap_without(const char *const *skip)
{
    char *s = h_snapshot(&H), *next, *out, *line, *nl;
    size_t o = 0, i;
    long end = h_now_ms() + 5000;
    int drop;

    assert_non_null(s);
    /* settled: a write still in flight from an earlier step (the broker
     * answers a browser before its last Redis step may land) must not
     * count as this request's */
    for (;;) {
        usleep(100 * 1000); /* polling for two equal snapshots */
        next = h_snapshot(&H);
        assert_non_null(next);
        if (strcmp(s, next) == 0 || h_now_ms() > end) {
            free(next);
            break;
        }
        free(s);
        s = next;
    }
    out = malloc(strlen(s) + 1);
    assert_non_null(out);
    for (line = s; *line != '\0'; line = nl + 1) {
        nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        drop = 0;
        {
            char *eq = memchr(line, '=', (size_t)(nl - line));
            size_t kl = eq ? (size_t)(eq - line) : (size_t)(nl - line);
            char *key = strndup(line, kl);
            long long ttl;

            for (i = 0; skip != NULL && skip[i] != NULL; i++)
                if (strstr(key, skip[i]) != NULL)
                    drop = 1;
            /* a key of an earlier step that expires within the minute
             * (a short-lived ticket's fields) may go between the two
             * snapshots: its going is not this request's doing */
            ttl = h_redis_int(&H, "PTTL %s", key);
            if (ttl >= 0 && ttl < 60000)
                drop = 1;
            /* a ticket's fields belong to an earlier completed login (a
             * refused request makes none: its code would show) and may be
             * rewritten by that login's last step while this one runs */
            if (strstr(key, ":oauth:detail:") != NULL)
                drop = 1;
            free(key);
        }
        if (!drop) {
            memcpy(out + o, line, (size_t)(nl - line) + 1);
            o += (size_t)(nl - line) + 1;
        }
    }
    out[o] = '\0';
    free(s);
    return out;
}

/* Print the keys whose lines differ between two snapshots. */
static void
print_changed(const char *x, const char *y, const char *what)
{
    const char *l, *nl, *eq;

    for (l = x; *l != '\0'; l = nl + 1) {
        nl = strchr(l, '\n');
        if (nl == NULL)
            break;
        eq = memchr(l, '=', (size_t)(nl - l));
        if (eq == NULL)
            continue;
        /* the whole line, with its '\n', absent from the other */
        {
            char *line = strndup(l, (size_t)(nl - l) + 1);

            if (strstr(y, line) == NULL)
                fprintf(stderr, "# Redis key %s: %.*s\n", what, (int)(eq - l),
                        l);
            free(line);
        }
    }
}

static void
expect_same(const char *before, const char *after)
{
    if (strcmp(before, after) != 0) {
        print_changed(before, after, "changed or deleted");
        print_changed(after, before, "changed or added");
    }
    assert_true(strcmp(before, after) == 0);
}

static int
events_drained(void *arg)
{
    (void)arg;
    /* the suite stream, and every tenant's own queue */
    return h_redis_int(&H, "XLEN %s", "wb:{" S1 "}:events") == 0 &&
           h_redis_int(&H, "ZCARD %s", "wb:{" S1 "}:ready") == 0;
}

/* Wait until the workers have taken every event (acknowledged entries are
 * deleted), so a snapshot sees no background work. */
static void
wait_drained(void)
{
    assert_true(h_wait(events_drained, NULL, 30000));
}

/* Whether the hash of a broker state still exists. */
static int
state_alive(const char *state)
{
    char key[200];

    snprintf(key, sizeof(key), "wb:{%s}:oauth:state:%.32s", S1, state);
    return h_redis_int(&H, "EXISTS %s", key) == 1;
}

static int
state_gone(void *arg)
{
    return !state_alive(arg);
}

/*---- The flows, step by step ----*/

/* /install?return=ret (ret NULL: none) up to the simulator's 302 back to
 * the broker; the /install/done URL (owned). The state and the
 * pre_auth_code given to WeCom go to state/pre (64 / 600 bytes). */
static char *
install_to_done(const char *ret, char *state, char *pre)
{
    struct hop h;
    char want[512], pb[64], done[256], *v, *r = ret ? enc(ret) : NULL;
    char *loc;

    if (r != NULL)
        get_cb(&h, "/wecom/suite/" S1 "/install?return=%s", r);
    else
        get_cb(&h, "/wecom/suite/" S1 "/install");
    free(r);
    snprintf(want, sizeof(want), "http://127.0.0.1:%d/3rdapp/install?",
             MockPort);
    EXPECT_302(&h, want);
    public_base(pb, sizeof(pb));
    snprintf(done, sizeof(done), "%s/wecom/suite/%s/install/done", pb, S1);
    v = param(h.loc, "suite_id");
    assert_string_equal(v, S1);
    free(v);
    v = param(h.loc, "redirect_uri");
    assert_string_equal(v, done);
    free(v);
    v = param(h.loc, "pre_auth_code");
    assert_non_null(v);
    assert_true(strlen(v) > 0 && strlen(v) < 600);
    snprintf(pre, 600, "%s", v);
    free(v);
    v = param(h.loc, "state");
    assert_non_null(v);
    assert_int_equal(strlen(v), 64);
    assert_int_equal(strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                               "vwxyz0123456789"),
                     64);
    snprintf(state, 65, "%s", v);
    free(v);
    assert_int_equal(nparams(h.loc), 4);
    /* the simulator: its admin approves at once */
    loc = strdup(h.loc);
    hop_free(&h);
    get(&h, loc);
    free(loc);
    snprintf(want, sizeof(want), "%s?auth_code=", done);
    EXPECT_302(&h, want);
    v = param(h.loc, "state");
    assert_string_equal(v, state);
    free(v);
    v = param(h.loc, "expires_in");
    assert_non_null(v); /* WeCom appends it; the broker ignores it */
    free(v);
    loc = strdup(h.loc);
    hop_free(&h);
    return loc;
}

/* /oauth/authorize up to the simulator's 302 back to /oauth/callback;
 * that URL (owned) and the broker's state (65 bytes). cstate NULL sends
 * no state of the caller's. */
static char *
login_to_callback(const char *scope, const char *ret, const char *cstate,
                  char *state)
{
    struct hop h;
    char want[512], pb[64], cb[256], *v, *r = enc(ret), *loc;
    size_t n;

    get_cb(&h, "/wecom/suite/" S1 "/oauth/authorize?scope=%s&return=%s%s%s",
           scope, r, cstate ? "&state=" : "", cstate ? cstate : "");
    free(r);
    snprintf(want, sizeof(want),
             "http://127.0.0.1:%d/connect/oauth2/authorize?", MockPort);
    EXPECT_302(&h, want);
    n = strlen(h.loc);
    assert_true(n > 16 && strcmp(h.loc + n - 16, "#wechat_redirect") == 0);
    public_base(pb, sizeof(pb));
    snprintf(cb, sizeof(cb), "%s/wecom/suite/%s/oauth/callback", pb, S1);
    v = param(h.loc, "appid");
    assert_string_equal(v, S1);
    free(v);
    v = param(h.loc, "redirect_uri");
    assert_string_equal(v, cb);
    free(v);
    v = param(h.loc, "response_type");
    assert_string_equal(v, "code");
    free(v);
    v = param(h.loc, "scope");
    assert_string_equal(v, scope);
    free(v);
    v = param(h.loc, "state");
    assert_non_null(v);
    assert_int_equal(strlen(v), 64);
    assert_true(cstate == NULL || strcmp(v, cstate) != 0);
    snprintf(state, 65, "%s", v);
    free(v);
    /* the simulator: the chosen member logs in and consents */
    loc = strdup(h.loc);
    hop_free(&h);
    get(&h, loc);
    free(loc);
    snprintf(want, sizeof(want), "%s?code=", cb);
    EXPECT_302(&h, want);
    v = param(h.loc, "state");
    assert_string_equal(v, state);
    free(v);
    loc = strdup(h.loc);
    hop_free(&h);
    return loc;
}

/* A whole member login: the broker code (owned) the return URL got, with
 * corpid and the caller's state checked. */
static char *
login(const char *scope, const char *cstate, const char *corp)
{
    char state[65], *cb = login_to_callback(scope, RET_CB, cstate, state);
    char *code, *v;
    struct hop h;

    get(&h, cb);
    free(cb);
    EXPECT_302(&h, RET_CB "?");
    code = param(h.loc, "code");
    assert_non_null(code);
    assert_int_equal(strlen(code), SERVICE_TOKEN_LEN);
    v = param(h.loc, "corpid");
    assert_string_equal(v, corp);
    free(v);
    v = param(h.loc, "state");
    if (cstate != NULL)
        assert_string_equal(v, cstate);
    else
        assert_null(v);
    free(v);
    assert_int_equal(nparams(h.loc), cstate ? 3 : 2);
    assert_false(state_alive(state));
    hop_free(&h);
    return code;
}

/*---- Fixtures ----*/

/* public_base_url must name the callback port h_write_conf picked. */
static int
write_conf(void)
{
    char extra[1024], *txt, *p, pbu[128];
    FILE *f;

    snprintf(extra, sizeof(extra),
             "wecom_api_base = http://127.0.0.1:%d\n"
             "wecom_install_url = http://127.0.0.1:%d/3rdapp/install\n"
             "wecom_oauth_url = http://127.0.0.1:%d/connect/oauth2/"
             "authorize\n",
             MockPort, MockPort, MockPort);
    if (h_write_conf(&H, 0, extra) != 0)
        return -1;
    txt = h_slurp(H.conf);
    p = strstr(txt, "[broker]\n");
    f = fopen(H.conf, "w");
    if (p == NULL || f == NULL) {
        free(txt);
        return -1;
    }
    snprintf(pbu, sizeof(pbu), "public_base_url = http://127.0.0.1:%d\n",
             H.cb_port);
    p += strlen("[broker]\n");
    fwrite(txt, 1, (size_t)(p - txt), f);
    fputs(pbu, f);
    fputs(p, f);
    /* the end of the file is [suite S1] */
    fprintf(f,
            "auth_type = 1\n"
            "redirect_allow = https://app.example/return,"
            "http://127.0.0.1:%d/\n"
            "\n[suite " S2 "]\ntoken = " H_TOKEN
            "\nencoding_aes_key = " H_AESKEY "\nsecret = " SEC2 "\n"
            "redirect_allow = https://app.example/return\n",
            LocalPort);
    free(txt);
    return fclose(f) == 0 ? 0 : -1;
}

static int
setup(void **state)
{
    const char *extra[] = {
        "--suite", S1 ":" H_SECRET,     "--suite",   S2 ":" SEC2, "--corps",
        "3",       "--ticket-lifetime", TICKET_LIFE, "--quiet",   NULL};

    (void)state;
    if (h_setup(&H) != 0)
        return -1;
    Mock = h_mock_start(H.dir, extra, &MockPort);
    if (Mock == 0)
        return -1;
    LocalPort = h_free_port();
    if (write_conf() != 0 || h_broker_start(&H) != 0)
        return -1;
    tc_init(&H, MockPort);
    return 0;
}

static int
teardown(void **state)
{
    int rc = 0, st;

    (void)state;
    /* a clean stop: under the sanitizers a leak makes the exit status
     * nonzero, and fails the group */
    st = h_broker_stop(&H, SIGTERM);
    if (st != 0) {
        fprintf(stderr, "# the broker exited with %d; see %s\n", st, H.log);
        rc = -1;
    }
    tc_done();
    free(Sec_a);
    free(Sec_b);
    free(Tok_a1);
    free(Tok_b1);
    free(Tok_a2);
    if (Mock > 0)
        h_stop(Mock, SIGTERM);
    if (rc != 0)
        setenv("KEEP_TEST_DIR", "1", 1);
    h_teardown(&H);
    return rc;
}

/* Each test starts with the simulator's defaults for who logs in. */
static int
reset_sim(void **state)
{
    (void)state;
    h_sim_ok(MockPort, "POST", "/__mock/oauth_user", "{}");
    h_sim_ok(MockPort, "POST", "/__mock/oauth_corp", "{}");
    h_sim_ok(MockPort, "POST", "/__mock/oauth_shape", "{\"shape\":\"new\"}");
    h_sim_ok(MockPort, "POST", "/__mock/leaky", "{\"leaky\":false}");
    return 0;
}

/* As reset_sim, with the simulator leaky: for tests that read what WeCom
 * holds (every member, every field) to compare with. */
static int
reset_sim_leaky(void **state)
{
    reset_sim(state);
    h_sim_ok(MockPort, "POST", "/__mock/leaky", "{\"leaky\":true}");
    return 0;
}

/*---- Provider-site install ----*/

static void
test_install_from_provider_site(void **state)
{
    char st[65], path[800], *done;
    struct hop h;
    json_t *p;

    (void)state;
    /* the sensitive fields members may consent to, granted at install */
    h_sim_ok(MockPort, "POST", "/__mock/permissions",
             "{\"corpid\":\"" CORP1 "\",\"app_permissions\":["
             "\"contact:base:base\",\"contact:sensitive:gender\","
             "\"contact:sensitive:avatar\",\"contact:sensitive:qrcode\"]}");
    tc_push_ticket(S1);
    done = install_to_done(RET_X, st, Pre_auth);
    assert_true(state_alive(st));
    get(&h, done);
    free(done);
    EXPECT_302(&h, RET_X);
    assert_true(h.loc[strlen(RET_X)] == '\0' || h.loc[strlen(RET_X)] == '?');
    hop_free(&h);
    assert_false(state_alive(st));
    tc_wait_status(S1, CORP1, "active", 30000);
    wait_drained();
    /* set_session_info recorded the suite's auth_type (1: test) */
    snprintf(path, sizeof(path), "/__mock/pre_auth_code?pre_auth_code=%s",
             Pre_auth);
    p = h_sim_json(MockPort, "GET", path, NULL);
    assert_string_equal(h_str(p, "suite_id"), S1);
    assert_true(json_is_integer(json_object_get(p, "auth_type")));
    assert_int_equal(json_integer_value(json_object_get(p, "auth_type")), 1);
    json_decref(p);
    /* no create_auth was pushed: the browser brought the AuthCode */
    assert_int_equal(
        tc_mock_count("/cgi-bin/service/get_permanent_code", NULL) +
            tc_mock_count("/cgi-bin/service/v2/get_permanent_code", NULL),
        1);
}

static void
test_install_reuses_pre_auth_code(void **state)
{
    char st[65], pre[600], *done;
    struct hop h;

    (void)state;
    h_sim_ok(MockPort, "POST", "/__mock/oauth_corp",
             "{\"corpid\":\"" CORP2 "\"}");
    done = install_to_done(NULL, st, pre);
    /* the same pre_auth_code, fetched and configured once */
    assert_string_equal(pre, Pre_auth);
    assert_int_equal(tc_mock_count("/cgi-bin/service/get_pre_auth_code", NULL),
                     1);
    assert_int_equal(tc_mock_count("/cgi-bin/service/set_session_info", NULL),
                     1);
    get(&h, done);
    free(done);
    /* no return URL: a small page says it is installed */
    assert_int_equal(h.status, 200);
    assert_non_null(strstr(h.body, "installed"));
    assert_null(h.loc);
    hop_free(&h);
    tc_wait_status(S1, CORP2, "active", 30000);
    wait_drained();
}

/*---- Member OAuth ----*/

static void
services(void)
{
    if (Sec_a != NULL)
        return;
    Sec_a = tc_svc_add("oauth-a", "contacts.read,member.sensitive", NULL, NULL);
    Sec_b = tc_svc_add("oauth-b", "contacts.read", NULL, NULL);
    Tok_a1 = tc_token_for(0, Sec_a, CORP1);
    Tok_b1 = tc_token_for(0, Sec_b, CORP1);
    Tok_a2 = tc_token_for(0, Sec_a, CORP2);
}

/* Whether any value of the oauth keys (strings, hash fields and values)
 * holds needle in plain text. */
static int
oauth_values_have(const char *needle)
{
    redisContext *c = h_redis(&H);
    redisReply *keys, *t, *v;
    size_t i, k;
    int found = 0;

    assert_non_null(c);
    keys = redisCommand(c, "KEYS %s", "*oauth:*");
    assert_non_null(keys);
    for (i = 0; i < keys->elements; i++) {
        const char *key = keys->element[i]->str;

        t = redisCommand(c, "TYPE %s", key);
        v = strcmp(t->str, "string") == 0 ? redisCommand(c, "GET %s", key)
            : strcmp(t->str, "hash") == 0 ? redisCommand(c, "HGETALL %s", key)
                                          : NULL;
        if (v != NULL && v->type == REDIS_REPLY_STRING &&
            memmem(v->str, v->len, needle, strlen(needle)) != NULL)
            found = 1;
        for (k = 0;
             v != NULL && v->type == REDIS_REPLY_ARRAY && k < v->elements; k++)
            if (memmem(v->element[k]->str, v->element[k]->len, needle,
                       strlen(needle)) != NULL)
                found = 1;
        if (v != NULL)
            freeReplyObject(v);
        freeReplyObject(t);
    }
    freeReplyObject(keys);
    redisFree(c);
    return found;
}

static void
expect_no_extras(const json_t *v)
{
    assert_null(json_object_get(v, "name"));
    assert_null(json_object_get(v, "mock_internal_note"));
}

static int
detail_gone(void *arg)
{
    (void)arg;
    return h_redis_int(&H, "KEYS %s", "*oauth:detail*") == 0;
}

static const char *Expiring_ticket;

/* The broker answers 84014 (expired) for Expiring_ticket. */
static int
ticket_expired(void *arg)
{
    json_t *v = userdetail(Tok_a1, Expiring_ticket);
    int gone = errcode(v) == 84014;

    (void)arg;
    json_decref(v);
    return gone;
}

static void
test_privateinfo_login_and_detail(void **state)
{
    char *code, *ticket, user[80];
    json_t *v, *a, *b, *truth;
    static const char *const sens[] = {"gender", "avatar", "qr_code"};
    size_t i;
    long life;

    (void)state;
    services();
    code = login("snsapi_privateinfo", "abc", CORP1);
    /* another tenant's token: 40029, and the code is not burnt by it */
    v = userinfo(Tok_a2, code);
    EXPECT_ERRCODE(v, 40029);
    json_decref(v);
    v = userinfo(Tok_a1, code);
    EXPECT_ERRCODE(v, 0);
    snprintf(user, sizeof(user), "%s", h_str(v, "userid"));
    assert_true(user[0] != '\0');
    ticket = strdup(h_str(v, "user_ticket"));
    assert_int_equal(strlen(ticket), SERVICE_TOKEN_LEN);
    life = (long)json_integer_value(json_object_get(v, "expires_in"));
    assert_true(life > 0 && life <= strtol(TICKET_LIFE, NULL, 10));
    expect_no_extras(v);
    json_decref(v);
    /* at once, the ticket lives TICKET_LIFE seconds: A (member.sensitive)
     * sees the consented fields; B (contacts.read only) redeems the same
     * ticket, the tenant's, and sees none */
    a = userdetail(Tok_a1, ticket);
    b = userdetail(Tok_b1, ticket);
    /* a code is accepted once */
    v = userinfo(Tok_a1, code);
    EXPECT_ERRCODE(v, 40029);
    json_decref(v);
    truth = member_truth(CORP1, user);
    EXPECT_ERRCODE(a, 0);
    EXPECT_ERRCODE(b, 0);
    assert_string_equal(h_str(a, "userid"), user);
    assert_string_equal(h_str(b, "userid"), user);
    for (i = 0; i < sizeof(sens) / sizeof(sens[0]); i++) {
        const json_t *t = json_object_get(truth, sens[i]);

        if (t == NULL || json_is_null(t)) {
            fprintf(stderr, "# the simulator's member has no %s\n", sens[i]);
            fail();
        }
        assert_true(json_equal(json_object_get(a, sens[i]), t));
        assert_null(json_object_get(b, sens[i]));
    }
    expect_no_extras(a);
    expect_no_extras(b);
    /* the consented fields are sealed in Redis, the ticket only hashed */
    assert_false(oauth_values_have(h_str(truth, "avatar")));
    assert_false(oauth_values_have(h_str(truth, "qr_code")));
    assert_false(oauth_values_have(ticket));
    assert_true(oauth_values_have(user)); /* the check can see */
    json_decref(a);
    json_decref(b);
    json_decref(truth);
    /* a made-up ticket of the right shape */
    v = userdetail(Tok_a1, "0123456789abcdef0123456789abcdef0123456789abcdef"
                           "0123456789abcdef");
    EXPECT_ERRCODE(v, 84015);
    json_decref(v);
    /* past its lifetime: expired, and the details are gone */
    Expiring_ticket = ticket;
    assert_true(h_wait(ticket_expired, NULL, (life + 5) * 1000));
    assert_true(h_wait(detail_gone, NULL, 3000));
    free(ticket);
    free(code);
}

static void
test_base_login_has_no_ticket(void **state)
{
    char ret[128], want[160], st[65], *code, *cb;
    struct hop h;
    json_t *v;

    (void)state;
    services();
    code = login("snsapi_base", NULL, CORP1);
    v = userinfo(Tok_b1, code);
    EXPECT_ERRCODE(v, 0);
    assert_true(h_str(v, "userid")[0] != '\0');
    assert_null(json_object_get(v, "user_ticket"));
    assert_null(json_object_get(v, "expires_in"));
    json_decref(v);
    free(code);
    /* the other redirect_allow entry: a local page, any path under '/' */
    snprintf(ret, sizeof(ret), "http://127.0.0.1:%d/app/done", LocalPort);
    cb = login_to_callback("snsapi_base", ret, NULL, st);
    get(&h, cb);
    free(cb);
    snprintf(want, sizeof(want), "%s?code=", ret);
    EXPECT_302(&h, want);
    hop_free(&h);
}

static void
test_old_reply_shape_logs_in(void **state)
{
    char *code, *ticket;
    json_t *v, *d;

    (void)state;
    services();
    h_sim_ok(MockPort, "POST", "/__mock/oauth_shape", "{\"shape\":\"old\"}");
    code = login("snsapi_base", "old1", CORP1);
    v = userinfo(Tok_a1, code);
    EXPECT_ERRCODE(v, 0);
    assert_true(h_str(v, "userid")[0] != '\0');
    json_decref(v);
    free(code);
    /* with consent, the old shape still carries a ticket */
    code = login("snsapi_privateinfo", NULL, CORP1);
    v = userinfo(Tok_a1, code);
    EXPECT_ERRCODE(v, 0);
    ticket = strdup(h_str(v, "user_ticket"));
    assert_int_equal(strlen(ticket), SERVICE_TOKEN_LEN);
    d = userdetail(Tok_a1, ticket);
    EXPECT_ERRCODE(d, 0);
    assert_string_equal(h_str(d, "userid"), h_str(v, "userid"));
    assert_non_null(json_object_get(d, "gender"));
    json_decref(d);
    json_decref(v);
    free(ticket);
    free(code);
}

/* getuserinfo3rd names a member by userid and by open_userid (the
 * provider-wide id); a service's getuserinfo carries both, and the old
 * capitalised reply, which has no open_userid, leaves it out. */
static void
test_login_carries_open_userid(void **state)
{
    char *code;
    json_t *v, *truth;

    (void)state;
    services();
    code = login("snsapi_base", NULL, CORP1);
    v = userinfo(Tok_b1, code);
    EXPECT_ERRCODE(v, 0);
    truth = member_truth(CORP1, h_str(v, "userid"));
    assert_true(h_str(truth, "open_userid")[0] != '\0');
    assert_string_equal(h_str(v, "open_userid"), h_str(truth, "open_userid"));
    assert_null(json_object_get(v, "openid"));
    json_decref(truth);
    json_decref(v);
    free(code);
    h_sim_ok(MockPort, "POST", "/__mock/oauth_shape", "{\"shape\":\"old\"}");
    code = login("snsapi_base", NULL, CORP1);
    v = userinfo(Tok_b1, code);
    EXPECT_ERRCODE(v, 0);
    assert_true(h_str(v, "userid")[0] != '\0');
    assert_null(json_object_get(v, "open_userid"));
    json_decref(v);
    free(code);
}

static void
test_other_member_of_another_tenant(void **state)
{
    char body[200], p[512], *code;
    json_t *v, *t, *u;

    (void)state;
    services();
    /* a member of CORP2 logs in: the code is CORP2's */
    t = h_sim_json(MockPort, "GET",
                   "/__mock/corp_token?suite_id=" S1 "&corpid=" CORP2, NULL);
    snprintf(p, sizeof(p),
             "/cgi-bin/user/simplelist?access_token=%s&department_id=1"
             "&fetch_child=1",
             h_str(t, "access_token"));
    json_decref(t);
    u = h_sim_json(MockPort, "GET", p, NULL);
    snprintf(
        body, sizeof(body), "{\"corpid\":\"" CORP2 "\",\"userid\":\"%s\"}",
        h_str(json_array_get(json_object_get(u, "userlist"), 0), "userid"));
    json_decref(u);
    h_sim_ok(MockPort, "POST", "/__mock/oauth_user", body);
    code = login("snsapi_base", NULL, CORP2);
    v = userinfo(Tok_a1, code); /* CORP1's token */
    EXPECT_ERRCODE(v, 40029);
    json_decref(v);
    v = userinfo(Tok_a2, code);
    EXPECT_ERRCODE(v, 0);
    json_decref(v);
    free(code);
}

/* Replace h by the reply to its Location. */
static void
follow(struct hop *h)
{
    char *loc = h->loc;

    assert_non_null(loc);
    h->loc = NULL;
    hop_free(h);
    get(h, loc);
    free(loc);
}

/* The code goes in the return URL's query, before its fragment (a code
 * behind '#' never reaches the caller's server); its own query stays. */
static void
test_return_url_query_and_fragment(void **state)
{
    char want[512], *r, *v;
    struct hop h;

    (void)state;
    r = enc(RET_CB "?lang=en#top");
    get_cb(&h,
           "/wecom/suite/" S1
           "/oauth/authorize?scope=snsapi_base&return=%s&state=s1",
           r);
    free(r);
    EXPECT_302(&h, "http://");
    follow(&h); /* the simulator */
    follow(&h); /* the broker's callback */
    EXPECT_302(&h, RET_CB "?lang=en&code=");
    v = param(h.loc, "code");
    assert_non_null(v);
    snprintf(want, sizeof(want),
             RET_CB "?lang=en&code=%s&corpid=" CORP1 "&state=s1#top", v);
    free(v);
    assert_string_equal(h.loc, want);
    hop_free(&h);
    /* the install's return URL likewise */
    r = enc(RET_X "#done");
    get_cb(&h, "/wecom/suite/" S1 "/install?return=%s", r);
    free(r);
    EXPECT_302(&h, "http://");
    follow(&h);
    follow(&h);
    EXPECT_302(&h, RET_X);
    assert_string_equal(h.loc, RET_X "?installed=1#done");
    hop_free(&h);
    wait_drained();
}

static void
test_non_member_is_refused(void **state)
{
    char st[65], *cb, *before, *after;
    const char *const skip[] = {"oauth:state:", "oauth:live", NULL};
    struct hop h;

    (void)state;
    h_sim_ok(MockPort, "POST", "/__mock/oauth_user",
             "{\"openid\":\"oNonMember0001\"}");
    cb = login_to_callback("snsapi_base", RET_CB, "nm", st);
    before = snap_without(skip);
    get(&h, cb);
    free(cb);
    EXPECT_PAGE(&h, 400, "only members");
    after = snap_without(skip);
    expect_same(before, after);
    assert_false(state_alive(st));
    hop_free(&h);
    free(before);
    free(after);
}

/*---- Refusals: 400 pages that change nothing ----*/

/* GET the callback-listener path; expect a 400 page naming reason and an
 * unchanged Redis. */
static void
refused_strict(const char *pq, const char *reason)
{
    char *before, *after, *url;
    struct hop h;

    wait_drained();
    before = snap_without(NULL);
    url = h_cb_url(&H, pq);
    get_src(&h, "127.0.0.3", url);
    free(url);
    after = snap_without(NULL);
    if (h.status != 400)
        fprintf(stderr, "# %s\n", pq);
    EXPECT_PAGE(&h, 400, reason);
    expect_same(before, after);
    hop_free(&h);
    free(before);
    free(after);
}

/* A state for flow ("install" or "oauth") of S1, fresh. */
static void
fresh_state(const char *flow, char *st)
{
    char pre[600], *u;

    if (strcmp(flow, "install") == 0)
        u = install_to_done(NULL, st, pre);
    else
        u = login_to_callback("snsapi_base", RET_CB, NULL, st);
    free(u);
}

static void
test_forged_state(void **state)
{
    char st[65], pq[512], keep;

    (void)state;
    fresh_state("install", st);
    keep = st[40];
    st[40] = keep == 'A' ? 'B' : 'A'; /* a MAC char */
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S1 "/install/done?auth_code=X&state=%s", st);
    refused_strict(pq, "forged");
    st[40] = keep;
    keep = st[3];
    st[3] = keep == 'A' ? 'B' : 'A'; /* an id char */
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S1 "/install/done?auth_code=X&state=%s", st);
    refused_strict(pq, "forged");
    st[3] = keep;
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S1 "/install/done?auth_code=X&state=%.63s", st);
    refused_strict(pq, "forged");
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S1 "/install/done?auth_code=X&state=%sA", st);
    refused_strict(pq, "forged");
    refused_strict("/wecom/suite/" S1 "/oauth/callback?code=X&state="
                   "0123456789abcdef0123456789abcdef0123456789abcdef"
                   "0123456789abcdef",
                   "forged");
    refused_strict("/wecom/suite/" S1 "/oauth/callback?code=X", "forged");
    /* the genuine state is still good */
    assert_true(state_alive(st));
}

static void
test_expired_state(void **state)
{
    char st[65], key[200], *cb, *before, *after;
    const char *const skip[] = {"oauth:live", NULL};
    struct hop h;

    (void)state;
    cb = login_to_callback("snsapi_base", RET_CB, NULL, st);
    snprintf(key, sizeof(key), "wb:{%s}:oauth:state:%.32s", S1, st);
    assert_int_equal(h_redis_int(&H, "PEXPIRE %s 1", key), 1);
    assert_true(h_wait(state_gone, st, 3000));
    before = snap_without(skip);
    get(&h, cb);
    after = snap_without(skip);
    EXPECT_PAGE(&h, 400, "unknown, expired or used");
    expect_same(before, after);
    hop_free(&h);
    free(before);
    free(after);
    free(cb);
}

static void
test_replayed_state(void **state)
{
    char st[65], pre[600], *done, *cb, *pq;
    struct hop h;
    size_t off;

    (void)state;
    done = install_to_done(NULL, st, pre);
    get(&h, done);
    assert_int_equal(h.status, 200);
    hop_free(&h);
    /* the install it queued (CORP1 again) is done before any snapshot */
    wait_drained();
    off = strlen("http://127.0.0.1:") + 1;
    pq = strchr(done + off, '/');
    refused_strict(pq, "unknown, expired or used");
    free(done);
    cb = login_to_callback("snsapi_base", RET_CB, NULL, st);
    get(&h, cb);
    EXPECT_302(&h, RET_CB "?code=");
    hop_free(&h);
    pq = strchr(cb + off, '/');
    refused_strict(pq, "unknown, expired or used");
    free(cb);
}

static void
test_state_of_other_flow_or_suite(void **state)
{
    char ist[65], ost[65], pq[512];

    (void)state;
    fresh_state("install", ist);
    fresh_state("oauth", ost);
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S1 "/oauth/callback?code=X&state=%s", ist);
    refused_strict(pq, "another flow");
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S1 "/install/done?auth_code=X&state=%s", ost);
    refused_strict(pq, "another flow");
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S2 "/install/done?auth_code=X&state=%s", ist);
    refused_strict(pq, "another flow");
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S2 "/oauth/callback?code=X&state=%s", ost);
    refused_strict(pq, "another flow");
    assert_true(state_alive(ist));
    assert_true(state_alive(ost));
}

static void
test_return_outside_redirect_allow(void **state)
{
    static const char *const bad[] = {
        "https://allowed.example.evil.example/",
        "https://app.example@evil.example/return/x",
        "https://app.example@evil.example/",
        "//evil.example/",
        "javascript:alert(1)",
        "https://app.example/returnx",
        "https://app.example/return/../x",
        "http://app.example/return/x",
        "https://app.example:8443/return/x",
        "https://app.example\\@evil.example/return/",
        "https://evil.example/https://app.example/return/",
        "",
    };
    char pq[1024], *e;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        e = enc(bad[i]);
        snprintf(pq, sizeof(pq), "/wecom/suite/" S1 "/install?return=%s", e);
        refused_strict(pq, "not allowed");
        snprintf(pq, sizeof(pq),
                 "/wecom/suite/" S1
                 "/oauth/authorize?scope=snsapi_base&return=%s",
                 e);
        refused_strict(pq, "not allowed");
        free(e);
    }
    /* S2 allows https://app.example/return only */
    e = enc("http://127.0.0.1:1/");
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S2 "/oauth/authorize?scope=snsapi_base&return=%s",
             e);
    refused_strict(pq, "not allowed");
    free(e);
    refused_strict("/wecom/suite/" S1 "/oauth/authorize?scope=snsapi_base",
                   "not allowed");
}

static void
test_wecom_rejects_code(void **state)
{
    char st[65], pq[512], *before, *after;
    const char *const skip[] = {"oauth:state:", "oauth:live", NULL};
    struct hop h;
    size_t calls;

    (void)state;
    fresh_state("oauth", st);
    calls = tc_mock_count("/cgi-bin/service/auth/getuserinfo3rd", NULL);
    before = snap_without(skip);
    get_cb(&h,
           "/wecom/suite/" S1 "/oauth/callback?code=MadeUpCode0001&state=%s",
           st);
    after = snap_without(skip);
    EXPECT_PAGE(&h, 400, "WeCom rejected");
    expect_same(before, after);
    hop_free(&h);
    assert_int_equal(
        tc_mock_count("/cgi-bin/service/auth/getuserinfo3rd", NULL), calls + 1);
    /* the state was spent on it */
    assert_false(state_alive(st));
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S1 "/oauth/callback?code=MadeUpCode0001&state=%s",
             st);
    refused_strict(pq, "unknown, expired or used");
    free(before);
    free(after);
}

/* Anyone may get an install state; an AuthCode the browser brings is not
 * WeCom's word. The page cannot know yet (the code goes to the durable
 * queue), but WeCom's refusal of a made-up code is no lost reply: nothing
 * is installed, recorded as lost or dead-lettered. */
static void
test_install_done_with_made_up_auth_code(void **state)
{
    char st[65], pre[600], *done, *before, *after;
    /* what the queueing itself touches: the state, the dedupe mark, the
     * stream, the exchange's marker, the address's install budget */
    const char *const skip[] = {"oauth:state:", "oauth:live", ":events",
                                "seen:",        ":tried",     "attempts",
                                ":installs:",   NULL};
    long lost = tc_suite_field(S1, "lost_authorizations");
    long dead = tc_suite_field(S1, "dead_letters");
    size_t calls, from = h_file_size(H.log);
    struct hop h;

    (void)state;
    assert_true(lost >= 0 && dead >= 0);
    done = install_to_done(NULL, st, pre);
    free(done);
    calls = tc_mock_count("/cgi-bin/service/get_permanent_code", NULL);
    wait_drained();
    before = snap_without(skip);
    get_cb(&h,
           "/wecom/suite/" S1 "/install/done?auth_code=MadeUpAuthCode01"
           "&state=%s",
           st);
    assert_int_equal(h.status, 200);
    hop_free(&h);
    assert_true(h_log_wait(H.log, from, "refused the AuthCode", 10000));
    wait_drained();
    after = snap_without(skip);
    assert_int_equal(tc_mock_count("/cgi-bin/service/get_permanent_code", NULL),
                     calls + 1);
    assert_int_equal(tc_suite_field(S1, "lost_authorizations"), lost);
    assert_int_equal(tc_suite_field(S1, "dead_letters"), dead);
    expect_same(before, after);
    free(before);
    free(after);
}

static void
test_repeated_or_missing_parameters(void **state)
{
    char ist[65], ost[65], pq[512], *cb, *r = enc(RET_CB);
    struct hop h;

    (void)state;
    fresh_state("install", ist);
    cb = login_to_callback("snsapi_base", RET_CB, "keep", ost);
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S1 "/oauth/callback?code=a&code=b&state=%s", ost);
    refused_strict(pq, "code missing or repeated");
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S1 "/oauth/callback?code=a&state=%s&state=%s", ost,
             ost);
    refused_strict(pq, "missing, forged");
    snprintf(pq, sizeof(pq), "/wecom/suite/" S1 "/oauth/callback?state=%s",
             ost);
    refused_strict(pq, "code missing or repeated");
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S1 "/oauth/callback?code=&state=%s", ost);
    refused_strict(pq, "code missing or repeated");
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S1
             "/install/done?auth_code=a&auth_code=b&state=%s",
             ist);
    refused_strict(pq, "auth_code missing or repeated");
    snprintf(pq, sizeof(pq), "/wecom/suite/" S1 "/install/done?state=%s", ist);
    refused_strict(pq, "auth_code missing or repeated");
    snprintf(pq, sizeof(pq), "/wecom/suite/" S1 "/install?return=%s&return=%s",
             r, r);
    refused_strict(pq, "not allowed");
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S1
             "/oauth/authorize?scope=snsapi_base&scope=snsapi_base&return=%s",
             r);
    refused_strict(pq, "scope must be");
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S1
             "/oauth/authorize?scope=snsapi_userinfo&return=%s",
             r);
    refused_strict(pq, "scope must be");
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S1
             "/oauth/authorize?scope=snsapi_base&return=%s&state=a%%3Cb",
             r);
    refused_strict(pq, "state:");
    snprintf(pq, sizeof(pq),
             "/wecom/suite/" S1
             "/oauth/authorize?scope=snsapi_base&return=%s&state=x&state=y",
             r);
    refused_strict(pq, "scope must be");
    refused_strict("/wecom/suite/" S1 "/oauth/callback?code=%zz&state=x",
                   "malformed");
    /* nothing was spent: the genuine callback still completes */
    assert_true(state_alive(ist));
    get(&h, cb);
    EXPECT_302(&h, RET_CB "?code=");
    hop_free(&h);
    free(cb);
    free(r);
}

static void
test_service_side_codes(void **state)
{
    json_t *v;

    (void)state;
    services();
    /* never issued */
    v = userinfo(Tok_a1, "0123456789abcdef0123456789abcdef0123456789abcdef"
                         "0123456789abcdef");
    EXPECT_ERRCODE(v, 40029);
    json_decref(v);
    v = userinfo(Tok_a1, "short");
    EXPECT_ERRCODE(v, 40029);
    json_decref(v);
    /* a code made by WeCom never works at the broker */
    v = api("GET", NULL, "/cgi-bin/auth/getuserinfo?access_token=%s", Tok_a1);
    assert_true(errcode(v) != 0);
    json_decref(v);
}

/*---- Cap and rate limit ----*/

static void
test_live_states_capped(void **state)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    char zkey[128], *ret = enc(RET_CB);
    long long until = (long long)time(NULL) + 600;
    int i;
    struct hop h;

    (void)state;
    assert_non_null(c);
    snprintf(zkey, sizeof(zkey), "wb:{%s}:oauth:live", S1);
    for (i = 0; i < 100000; i++)
        redisAppendCommand(c, "ZADD %s %lld fill%06d", zkey, until, i);
    for (i = 0; i < 100000; i++) {
        assert_int_equal(redisGetReply(c, (void **)&r), REDIS_OK);
        freeReplyObject(r);
    }
    get_cb(&h, "/wecom/suite/" S1 "/install");
    EXPECT_PAGE(&h, 429, "in progress");
    hop_free(&h);
    get_cb(&h,
           "/wecom/suite/" S1 "/oauth/authorize?scope=snsapi_base&return=%s",
           ret);
    EXPECT_PAGE(&h, 429, "in progress");
    hop_free(&h);
    /* room again once states go */
    r = redisCommand(c, "ZREMRANGEBYSCORE %s %lld %lld", zkey, until, until);
    freeReplyObject(r);
    get_cb(&h, "/wecom/suite/" S1 "/install");
    assert_int_equal(h.status, 302);
    hop_free(&h);
    redisFree(c);
    free(ret);
}

/* GET from a chosen loopback source address; the status. */
static long
get_from(const char *src, const char *url)
{
    struct hop h;
    long st;

    get_src(&h, src, url);
    st = h.status;
    hop_free(&h);
    return st;
}

static void
test_rate_limited_per_address(void **state)
{
    char *inst = h_cb_url(&H, "/wecom/suite/" S1 "/install");
    char *cb = h_cb_url(&H, "/wecom/suite/" S1 "/oauth/callback?code=x");
    int ok = 0, limited = 0, other = 0, i;
    long st;

    (void)state;
    for (i = 0; i < 100; i++) {
        st = get_from("127.0.0.7", inst);
        if (st == 302)
            ok++;
        else if (st == 429)
            limited++;
        else
            other++;
    }
    fprintf(stderr, "# 100 installs: %d redirected, %d limited\n", ok, limited);
    assert_int_equal(other, 0);
    assert_true(ok >= 50);
    assert_true(limited >= 30);
    /* the same bucket for both limited routes, and a 400-style page */
    {
        char *r = enc(RET_CB), pq[512], *u;
        struct hop h;

        snprintf(pq, sizeof(pq),
                 "/wecom/suite/" S1
                 "/oauth/authorize?scope=snsapi_base&return=%s",
                 r);
        u = h_cb_url(&H, pq);
        get_src(&h, "127.0.0.7", u);
        EXPECT_PAGE(&h, 429, "too many requests from this address");
        hop_free(&h);
        free(u);
        free(r);
    }
    /* one bucket per address: another one goes on */
    assert_int_equal(get_from("127.0.0.8", inst), 302);
    /* and routes that are not limited answer as before */
    assert_int_equal(get_from("127.0.0.7", cb), 400);
    free(inst);
    free(cb);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_install_from_provider_site, reset_sim),
        cmocka_unit_test_setup(test_install_reuses_pre_auth_code, reset_sim),
        cmocka_unit_test_setup(test_privateinfo_login_and_detail,
                               reset_sim_leaky),
        cmocka_unit_test_setup(test_base_login_has_no_ticket, reset_sim),
        cmocka_unit_test_setup(test_old_reply_shape_logs_in, reset_sim),
        cmocka_unit_test_setup(test_login_carries_open_userid, reset_sim),
        cmocka_unit_test_setup(test_other_member_of_another_tenant,
                               reset_sim_leaky),
        cmocka_unit_test_setup(test_return_url_query_and_fragment, reset_sim),
        cmocka_unit_test_setup(test_non_member_is_refused, reset_sim),
        cmocka_unit_test_setup(test_forged_state, reset_sim),
        cmocka_unit_test_setup(test_expired_state, reset_sim),
        cmocka_unit_test_setup(test_replayed_state, reset_sim),
        cmocka_unit_test_setup(test_state_of_other_flow_or_suite, reset_sim),
        cmocka_unit_test_setup(test_return_outside_redirect_allow, reset_sim),
        cmocka_unit_test_setup(test_wecom_rejects_code, reset_sim),
        cmocka_unit_test_setup(test_install_done_with_made_up_auth_code,
                               reset_sim),
        cmocka_unit_test_setup(test_repeated_or_missing_parameters, reset_sim),
        cmocka_unit_test_setup(test_service_side_codes, reset_sim),
        cmocka_unit_test_setup(test_live_states_capped, reset_sim),
        cmocka_unit_test_setup(test_rate_limited_per_address, reset_sim),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
