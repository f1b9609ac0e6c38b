/*
 * mock-wecom serve: a WeCom simulator on evhttp, used as wecom_api_base in
 * tests, demos and benchmarks. It mints suite tickets, suite tokens, auth
 * codes, permanent codes and corp tokens like WeCom and serves the data
 * APIs from generated enterprises (fixture.c).
 *
 * By default it answers like WeCom answers a third-party app: each corp
 * holds the grant WeCom would (app permissions, privilege level, the six
 * range lists, auth_mode and who authorized, the tags the app created, the
 * app's admins), each API checks its documented permission and the range
 * (fixture_check) and replies in the third-party shapes. --leaky or
 * /__mock/leaky restores the generous simulator (every record, every
 * field, no checks) for tests of the broker's own defences. Every reply
 * carries a "mock_internal_note" field no scope file declares, standing
 * for what WeCom may add without notice.
 *
 * It also plays the browser side of the two OAuth flows: the install page
 * (the admin approves at once) and the member authorize page (the member
 * consents at once), each answering 302 to the redirect_uri with a fresh
 * single-use code, and the getuserinfo3rd / getuserdetail3rd calls that
 * redeem them.
 *
 * Control endpoints (/__mock/...) mint tickets and auth codes, inject
 * faults and latency, change a corp's grant or mode, cancel an
 * installation, choose who approves or logs in and show the requests
 * received. All state is in memory and bounded.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "config.h"
#include "dynbuf.h"
#include "fixture.h"
#include "multipart.h"
#include "query.h"
#include "serve.h"
#include "serve_write.h"

#define LISTEN_DEFAULT  "127.0.0.1:9000"
#define MAX_BODY        MULTIPART_BODY_MAX
#define MEDIA_PATH      "/cgi-bin/media/upload"
#define MAX_HEADERS     (64 * 1024)
#define MAX_QUERY_PARAM 64
#define MAX_SUITES      16
#define MAX_CORPS       20000
#define TICKETS_KEPT    5
#define MAX_TOKENS      65536 /* a corp token each for the scale bench */
#define MAX_CODES       1024
#define MAX_FAULTS      256
#define MAX_LOGGED      10000
#define LOGGED_BYTES    (32L * 1024 * 1024)
#define TOKEN_LEN       64
#define CODE_LEN        96 /* auth codes: WeCom requires >= 64 */
#define STATE_MAX       128
#define PATH_MAX_LEN    256
#define AUTH_CODE_TTL_S 600
#define PRE_AUTH_TTL_S  1200
#define REPLY_LIMIT     (1024L * 1024 * 1024)
#define HUGE_BYTES      (72L * 1024 * 1024) /* more than 70 MB */
#define HUGE_CHUNK      (256 * 1024)
#define MAX_DELAY_MS    60000

/* The OAuth pages and identity calls */
#define OAUTH_CODE_TTL_S 300 /* member OAuth codes: 5 minutes */
#define TICKET_TTL_S     1800
#define OPENID_MAX       64
#define REDIRECT_MAX     2048

/*---- State --------------------------------------------------------------*/

struct suite {
    char *id;
    char *secret;
    char ticket[TICKETS_KEPT][TOKEN_LEN + 1];
    unsigned long nticket; /* minted so far; the ring holds the last 5 */
};

enum tok_kind { TOK_SUITE = 1, TOK_CORP, TOK_PRE_AUTH };

struct token {
    char s[TOKEN_LEN + 1];
    int kind;
    int suite;
    long corp; /* corp tokens only */
    int64_t expires_ms;
    int revoked;
    int auth_type; /* pre-auth codes: from set_session_info, -1 unset */
};

struct auth_code {
    char s[CODE_LEN + 1];
    int suite;
    long corp;
    int64_t expires_ms;
    int used;
    char state[STATE_MAX + 1];
};

/* A member OAuth code from the authorize page (getuserinfo3rd). */
struct oauth_code {
    char s[TOKEN_LEN + 1];
    int suite;
    long corp;   /* -1: a non-member, known by openid only */
    long member; /* index in the corp */
    char openid[OPENID_MAX + 1];
    int privateinfo; /* scope snsapi_privateinfo: a user_ticket comes too */
    int64_t expires_ms;
    int used;
};

/* A user_ticket minted by getuserinfo3rd (getuserdetail3rd). */
struct user_ticket {
    char s[TOKEN_LEN + 1];
    int suite;
    long corp;
    long member;
    int64_t expires_ms;
};

enum fault_body {
    FB_NONE = 0,
    FB_MALFORMED,
    FB_NONJSON,
    FB_HUGE,
    FB_EMPTY,
};

static const char *const fault_body_name[] = {"", "malformed", "nonjson",
                                              "huge", "empty"};

struct fault {
    char path[PATH_MAX_LEN];
    long count;
    long delay_ms;
    int status;
    int has_errcode;
    long errcode;
    int body;
    int drop_reply;
};

struct logged {
    char *method;
    char *path;
    char *query;
    json_t *body;
    int64_t ts_ms;
    size_t bytes;
};

struct server {
    struct event_base *base;
    struct evhttp *http;
    struct fixture_corp **corps;
    long ncorps;
    struct suite suites[MAX_SUITES];
    int nsuites;
    char **perm; /* [suite * ncorps + corp]; NULL: not installed */
    struct token tokens[MAX_TOKENS];
    unsigned long ntokens; /* minted so far; ring index */
    struct auth_code codes[MAX_CODES];
    unsigned long ncodes;
    struct oauth_code ocodes[MAX_CODES];
    unsigned long nocodes;
    struct user_ticket tickets[MAX_CODES];
    unsigned long ntickets;
    long install_corp; /* who approves on the install page */
    long user_corp;    /* who logs in on the authorize page; -1: openid */
    long user_member;
    char user_openid[OPENID_MAX + 1];
    int old_shape; /* the new getuserinfo3rd path answers the old way */
    int member_auth_userid; /* list_member_auth rows carry userid */
    long latency_ms;        /* added to every API reply */
    long ticket_lifetime;
    struct fault faults[MAX_FAULTS];
    size_t nfaults;
    struct logged logged[MAX_LOGGED];
    size_t log_head, log_len;
    size_t log_bytes;
    long lifetime;
    int quiet;
    struct mock_writes *writes; /* the customer write APIs' state */
};

/* One API or control call being answered. */
struct call {
    struct evhttp_request *req;
    enum evhttp_cmd_type method;
    const char *path;
    const char *rawq;
    const char *body;
    size_t blen;
    struct query *q;
    json_t *json; /* POST body, an object */
    int suite;    /* from a suite token */
    long corp;    /* from a corp token */
    int status;
    long errcode; /* for the log line; -9999: not an API reply */
    const char *ctype;
    struct dynbuf out;
};

/* A reply sent later: after a delay, dropped, or streamed. */
struct pending {
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event *timer;
    int status;
    const char *ctype;
    char *body;
    size_t len;
    int drop;
    int huge;
    int streaming;
    int last_sent;
    long seq;
    long sent;
};

/*---- Small helpers ------------------------------------------------------*/

static int64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* n random characters of [A-Za-z0-9_-] and a NUL; 0 on success. */
static int
random_text(char *out, size_t n)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                "qrstuvwxyz0123456789_-";
    unsigned char rnd[CODE_LEN];
    size_t i;

    if (n > sizeof(rnd) || RAND_bytes(rnd, (int)n) != 1)
        return -1;
    for (i = 0; i < n; i++)
        out[i] = alpha[rnd[i] & 63];
    out[n] = '\0';
    return 0;
}

static int
parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int
same_secret(const char *a, const char *b)
{
    size_t n = strlen(a);

    return n == strlen(b) && CRYPTO_memcmp(a, b, n) == 0;
}

static long
corp_find(const struct server *s, const char *corpid)
{
    long i;

    for (i = 0; corpid != NULL && i < s->ncorps; i++)
        if (strcmp(fixture_corp_id(s->corps[i]), corpid) == 0)
            return i;
    return -1;
}

static int
suite_find(const struct server *s, const char *id)
{
    int i;

    for (i = 0; id != NULL && i < s->nsuites; i++)
        if (strcmp(s->suites[i].id, id) == 0)
            return i;
    return -1;
}

static const char *
jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/*---- Replies ------------------------------------------------------------*/

static const struct {
    long code;
    const char *msg;
} errmsgs[] = {
    {-1, "system error"},
    {40014, "invalid access_token"},
    {40029, "invalid code"},
    {40031, "invalid userid list"},
    {40032, "invalid userid list size"},
    {40050, "invalid chatid"},
    {40056, "invalid agentid"},
    {40058, "invalid parameter"},
    {40068, "invalid tagid"},
    {40077, "invalid pre_auth_code"},
    {40078, "invalid auth_code"},
    {40080, "invalid suite_secret"},
    {40082, "invalid suite_acccess_token or provider_access_token"},
    {40083, "invalid suite_id"},
    {40084, "invalid permanent_code"},
    {40085, "invalid suite_ticket"},
    {40096, "invalid external userid"},
    {41001, "access_token missing"},
    {42001, "access_token expired"},
    {42009, "suite_access_token expired"},
    {43001, "require GET method"},
    {43002, "require POST method"},
    {48002, "api forbidden"},
    {60011, "no privilege to access/modify contact/party/agent "},
    {60111, "userid not found"},
    {60123, "invalid party id"},
    {84014, "user ticket expired"},
    {84015, "invalid user ticket"},
    {81017, "visible range too large, owner_filter required"},
    {84061, "not external contact"},
    {301002, "no permission to operate the specified agent"},
};

/* A WeCom error reply; the errmsg carries WeCom's hint suffix. extra
 * (may be NULL) is JSON text of further members, starting with a comma. */
static void
reply_err_with(struct call *k, long code, const char *extra)
{
    const char *msg = "mock fault";
    size_t i;

    for (i = 0; i < nitems(errmsgs); i++)
        if (errmsgs[i].code == code)
            msg = errmsgs[i].msg;
    dynbuf_reset(&k->out);
    k->errcode = code;
    if (dynbuf_printf(
            &k->out,
            "{\"errcode\":%ld,\"errmsg\":\"%s, hint: [mock], from "
            "ip: 127.0.0.1, more info at "
            "https://open.work.weixin.qq.com/devtool/query?e=%ld\"%s}",
            code, msg, code, extra ? extra : ""))
        k->status = 500;
}

static void
reply_err(struct call *k, long code)
{
    reply_err_with(k, code, NULL);
}

/* A control-endpoint error: HTTP status and a plain errmsg. */
static void
reply_mock_err(struct call *k, int status, const char *msg)
{
    dynbuf_reset(&k->out);
    k->status = status;
    k->errcode = -1;
    if (dynbuf_printf(&k->out, "{\"errcode\":-1,\"errmsg\":\"mock: %s\"}", msg))
        k->status = 500;
}

static void
reply_ok(struct call *k)
{
    dynbuf_reset(&k->out);
    k->errcode = 0;
    if (dynbuf_add_str(&k->out, "{\"errcode\":0,\"errmsg\":\"ok\"}"))
        k->status = 500;
}

static int
dump_cb(const char *buf, size_t size, void *data)
{
    return dynbuf_add(data, buf, size) == BRK_OK ? 0 : -1;
}

/* Reply with j (a new reference, consumed). */
static void
reply_json(struct call *k, json_t *j)
{
    dynbuf_reset(&k->out);
    if (j == NULL ||
        json_dump_callback(j, dump_cb, &k->out, JSON_COMPACT) != 0) {
        dynbuf_free(&k->out);
        k->status = 500;
        k->errcode = -1;
    }
    json_decref(j);
}

/* Map a fixture renderer's result to the reply. */
static void
reply_render(struct call *k, enum brk_err err, long notfound)
{
    if (err == BRK_OK) {
        k->errcode = 0;
        return;
    }
    if (err == BRK_ERR_NOTFOUND) {
        reply_err(k, notfound);
    } else if (err == BRK_ERR_INVAL) {
        reply_err(k, 40058);
    } else {
        reply_err(k, -1);
        k->status = 500;
    }
}

/*---- Tokens and codes ---------------------------------------------------*/

static struct token *
token_mint(struct server *s, int kind, int suite, long corp, long ttl_s)
{
    struct token *t = &s->tokens[s->ntokens % MAX_TOKENS];

    memset(t, 0, sizeof(*t));
    if (random_text(t->s, TOKEN_LEN) != 0)
        return NULL;
    t->kind = kind;
    t->suite = suite;
    t->corp = corp;
    t->expires_ms = mono_ms() + (int64_t)ttl_s * 1000;
    t->auth_type = -1;
    s->ntokens++;
    return t;
}

/* Newest first: a broker keeps using its latest token. */
static struct token *
token_find(struct server *s, int kind, const char *v)
{
    unsigned long i, n = s->ntokens < MAX_TOKENS ? s->ntokens : MAX_TOKENS;

    for (i = 1; i <= n; i++) {
        struct token *t = &s->tokens[(s->ntokens - i) % MAX_TOKENS];

        if (t->kind == kind && strcmp(t->s, v) == 0)
            return t;
    }
    return NULL;
}

/*
 * Check the call's token: 41001 missing, 40014/40082 unknown or revoked,
 * 42001/42009 expired. Returns 0 and sets k->suite / k->corp, or the
 * errcode.
 */
static long
check_token(struct server *s, struct call *k, int kind)
{
    const char *v = query_get(k->q, kind == TOK_SUITE ? "suite_access_token"
                                                      : "access_token");
    const struct token *t;

    if (v == NULL || *v == '\0')
        return 41001;
    t = token_find(s, kind, v);
    if (t == NULL || t->revoked)
        return kind == TOK_SUITE ? 40082 : 40014;
    if (mono_ms() >= t->expires_ms)
        return kind == TOK_SUITE ? 42009 : 42001;
    k->suite = t->suite;
    k->corp = t->corp;
    return 0;
}

static void
tokens_revoke(struct server *s, int kind, int suite, long corp)
{
    size_t i;

    for (i = 0; i < MAX_TOKENS; i++) {
        struct token *t = &s->tokens[i];

        if (t->kind == kind && (suite < 0 || t->suite == suite) &&
            (corp < 0 || t->corp == corp))
            t->revoked = 1;
    }
}

static char **
perm_slot(struct server *s, int suite, long corp)
{
    return &s->perm[(size_t)suite * (size_t)s->ncorps + (size_t)corp];
}

/* The (suite, corp) of a valid permanent code, or 40084. */
static long
check_permanent(struct server *s, struct call *k, long *corp)
{
    const char *corpid = jstr(k->json, "auth_corpid");
    const char *code = jstr(k->json, "permanent_code");
    long c = corp_find(s, corpid);
    char *p;

    if (c < 0 || code == NULL)
        return 40084;
    p = *perm_slot(s, k->suite, c);
    if (p == NULL || !same_secret(p, code))
        return 40084;
    *corp = c;
    return 0;
}

/* A fresh auth code for installing suite in corp (state may be NULL,
 * at most STATE_MAX chars); NULL when there is no randomness. */
static struct auth_code *
code_mint(struct server *s, int suite, long corp, const char *state)
{
    struct auth_code *a = &s->codes[s->ncodes % MAX_CODES];

    memset(a, 0, sizeof(*a));
    if (random_text(a->s, CODE_LEN) != 0)
        return NULL;
    s->ncodes++;
    a->suite = suite;
    a->corp = corp;
    a->expires_ms = mono_ms() + AUTH_CODE_TTL_S * 1000L;
    if (state != NULL)
        memcpy(a->state, state, strlen(state) + 1);
    return a;
}

/*---- Service API --------------------------------------------------------*/

static void
api_suite_token(struct server *s, struct call *k)
{
    const char *id = jstr(k->json, "suite_id");
    const char *secret = jstr(k->json, "suite_secret");
    const char *ticket = jstr(k->json, "suite_ticket");
    int i = suite_find(s, id), j, ok = 0;
    const struct token *t;
    struct suite *su;

    if (i < 0) {
        reply_err(k, 40083);
        return;
    }
    su = &s->suites[i];
    if (secret == NULL || !same_secret(su->secret, secret)) {
        reply_err(k, 40080);
        return;
    }
    for (j = 0; ticket != NULL && j < TICKETS_KEPT; j++)
        ok |= su->ticket[j][0] != '\0' && same_secret(su->ticket[j], ticket);
    if (!ok) {
        reply_err(k, 40085);
        return;
    }
    t = token_mint(s, TOK_SUITE, i, -1, s->lifetime);
    if (t == NULL) {
        reply_err(k, -1);
        return;
    }
    /* WeCom's quirk: no errcode on success */
    k->errcode = 0;
    if (dynbuf_printf(&k->out,
                      "{\"suite_access_token\":\"%s\",\"expires_in\":%ld}",
                      t->s, s->lifetime))
        k->status = 500;
}

static void
api_pre_auth_code(struct server *s, struct call *k)
{
    const struct token *t =
        token_mint(s, TOK_PRE_AUTH, k->suite, -1, PRE_AUTH_TTL_S);

    if (t == NULL) {
        reply_err(k, -1);
        return;
    }
    k->errcode = 0;
    if (dynbuf_printf(&k->out,
                      "{\"errcode\":0,\"errmsg\":\"ok\",\"pre_auth_code\":"
                      "\"%s\",\"expires_in\":%d}",
                      t->s, PRE_AUTH_TTL_S))
        k->status = 500;
}

/* Records session_info.auth_type (0 formal, the default; 1 test) on the
 * pre-auth code; /__mock/pre_auth_code shows it. */
static void
api_session_info(struct server *s, struct call *k)
{
    const char *code = jstr(k->json, "pre_auth_code");
    struct token *t = code ? token_find(s, TOK_PRE_AUTH, code) : NULL;
    const json_t *si = json_object_get(k->json, "session_info");
    const json_t *at = json_object_get(si, "auth_type");

    if (t == NULL || t->suite != k->suite || mono_ms() >= t->expires_ms) {
        reply_err(k, 40077);
        return;
    }
    if ((si != NULL && !json_is_object(si)) ||
        (at != NULL && (!json_is_integer(at) || json_integer_value(at) < 0 ||
                        json_integer_value(at) > 1))) {
        reply_err(k, 40058);
        return;
    }
    t->auth_type = at != NULL ? (int)json_integer_value(at) : 0;
    reply_ok(k);
}

static void
exchange_code(struct server *s, struct call *k, int v2)
{
    const char *code = jstr(k->json, "auth_code");
    struct auth_code *a = NULL;
    const struct token *t = NULL;
    char **perm;
    size_t i;

    for (i = 0; code != NULL && i < MAX_CODES; i++)
        if (s->codes[i].s[0] != '\0' && same_secret(s->codes[i].s, code))
            a = &s->codes[i];
    if (a == NULL || a->used || a->suite != k->suite ||
        mono_ms() >= a->expires_ms) {
        reply_err(k, 40078);
        return;
    }
    perm = perm_slot(s, a->suite, a->corp);
    if (*perm == NULL) {
        *perm = brk_malloc(TOKEN_LEN + 1);
        if (*perm == NULL || random_text(*perm, TOKEN_LEN) != 0) {
            brk_free(*perm);
            *perm = NULL;
            reply_err(k, -1);
            return;
        }
    }
    if (!v2) {
        t = token_mint(s, TOK_CORP, a->suite, a->corp, s->lifetime);
        if (t == NULL) {
            reply_err(k, -1);
            return;
        }
    }
    /* single use: consumed even if the reply is then lost */
    a->used = 1;
    if (v2)
        reply_render(k,
                     fixture_render_permanent_code_v2(s->corps[a->corp], *perm,
                                                      a->state, &k->out),
                     -1);
    else
        reply_render(k,
                     fixture_render_permanent_code(s->corps[a->corp], t->s,
                                                   s->lifetime, *perm, a->state,
                                                   &k->out),
                     -1);
}

static void
api_permanent_code(struct server *s, struct call *k)
{
    exchange_code(s, k, 0);
}

static void
api_permanent_code_v2(struct server *s, struct call *k)
{
    exchange_code(s, k, 1);
}

static void
api_auth_info(struct server *s, struct call *k)
{
    long corp = -1, e = check_permanent(s, k, &corp);

    if (e) {
        reply_err(k, e);
        return;
    }
    reply_render(k, fixture_render_auth_info(s->corps[corp], &k->out), -1);
}

static void
api_corp_token(struct server *s, struct call *k)
{
    long corp = -1, e = check_permanent(s, k, &corp);
    const struct token *t;

    if (e) {
        reply_err(k, e);
        return;
    }
    t = token_mint(s, TOK_CORP, k->suite, corp, s->lifetime);
    if (t == NULL) {
        reply_err(k, -1);
        return;
    }
    /* WeCom's quirk: no errcode on success */
    k->errcode = 0;
    if (dynbuf_printf(&k->out, "{\"access_token\":\"%s\",\"expires_in\":%ld}",
                      t->s, s->lifetime))
        k->status = 500;
}

static void
api_permissions(struct server *s, struct call *k)
{
    reply_render(k, fixture_render_permissions(s->corps[k->corp], &k->out), -1);
}

/*---- Data API -----------------------------------------------------------*/

/* A required (or, with dflt, optional) integer query parameter. */
static int
qlong(struct call *k, const char *name, long min, long max, const long *dflt,
      long *out)
{
    const char *v = query_get(k->q, name);

    if (v == NULL && dflt != NULL) {
        *out = *dflt;
        return 0;
    }
    if (parse_long(v, min, max, out) != 0) {
        reply_err(k, 40058);
        return -1;
    }
    return 0;
}

/* An optional integer body member with a default. */
static int
jlong(struct call *k, const char *name, long min, long max, long dflt,
      long *out)
{
    const json_t *v = json_object_get(k->json, name);

    if (v == NULL) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min ||
        json_integer_value(v) > max) {
        reply_err(k, 40058);
        return -1;
    }
    *out = (long)json_integer_value(v);
    return 0;
}

/* An optional string body member (NULL when absent). */
static int
jstring(struct call *k, const char *name, const char **out)
{
    const json_t *v = json_object_get(k->json, name);

    *out = NULL;
    if (v != NULL && !json_is_string(v)) {
        reply_err(k, 40058);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/*
 * A string array body member as a borrowed vector (brk_free the vector).
 * Empty or absent: 40031 when required; over max: 40032.
 */
static int
jstrings(struct call *k, const json_t *arr, size_t max, int required,
         const char ***out, size_t *n)
{
    const char **v;
    size_t i;

    *out = NULL;
    *n = 0;
    if (arr == NULL && !required)
        return 0;
    if (!json_is_array(arr) || (required && json_array_size(arr) == 0)) {
        reply_err(k, arr == NULL || json_is_array(arr) ? 40031 : 40058);
        return -1;
    }
    if (json_array_size(arr) > max) {
        reply_err(k, 40032);
        return -1;
    }
    v = brk_calloc(json_array_size(arr) + 1, sizeof(*v));
    if (v == NULL) {
        reply_err(k, -1);
        return -1;
    }
    for (i = 0; i < json_array_size(arr); i++) {
        v[i] = json_string_value(json_array_get(arr, i));
        if (v[i] == NULL) {
            brk_free(v);
            reply_err(k, 40058);
            return -1;
        }
    }
    *out = v;
    *n = i;
    return 0;
}

static const struct fixture_corp *
corp_of(const struct server *s, const struct call *k)
{
    return s->corps[k->corp];
}

/* Refuse the call as WeCom would under the corp's grant; 1 when refused
 * (the reply is written). */
static int
refused(struct server *s, struct call *k, enum fixture_api api, const char *id,
        long num, const char *const *ids, size_t nids)
{
    const struct fixture_args a = {id, num, ids, nids};
    long e = fixture_check(corp_of(s, k), api, &a);

    if (e == 0)
        return 0;
    /* WeCom keeps the empty data members in this refusal (§5.1) */
    reply_err_with(k, e,
                   api == FIXTURE_API_EXTERNAL_GET && e == FIXTURE_E_RANGE
                       ? ",\"external_contact\":{},\"follow_user\":[]"
                       : NULL);
    return 1;
}

static void
api_user_get(struct server *s, struct call *k)
{
    const char *id = query_get(k->q, "userid");

    if (id == NULL) {
        reply_err(k, 40058);
        return;
    }
    if (refused(s, k, FIXTURE_API_USER_GET, id, 0, NULL, 0))
        return;
    reply_render(k, fixture_render_user_get(corp_of(s, k), id, &k->out), 60111);
}

static void
users(struct server *s, struct call *k, int full)
{
    static const long zero = 0;
    long dept, child;

    if (qlong(k, "department_id", 1, FIXTURE_MAX_DEPARTMENTS + 1L, NULL,
              &dept) ||
        qlong(k, "fetch_child", 0, 1, &zero, &child))
        return;
    if (refused(s, k,
                full ? FIXTURE_API_USER_LIST : FIXTURE_API_USER_SIMPLELIST,
                NULL, dept, NULL, 0))
        return;
    if (full)
        reply_render(
            k,
            fixture_render_user_list(corp_of(s, k), dept, (int)child, &k->out),
            60123);
    else
        reply_render(k,
                     fixture_render_user_simplelist(corp_of(s, k), dept,
                                                    (int)child, &k->out),
                     60123);
}

static void
api_user_simplelist(struct server *s, struct call *k)
{
    users(s, k, 0);
}

static void
api_user_list(struct server *s, struct call *k)
{
    users(s, k, 1);
}

static void
api_user_list_id(struct server *s, struct call *k)
{
    const char *cursor;
    long limit;

    if (jstring(k, "cursor", &cursor) ||
        jlong(k, "limit", 1, 10000, 10000, &limit))
        return;
    if (refused(s, k, FIXTURE_API_USER_LIST_ID, NULL, 0, NULL, 0))
        return;
    reply_render(
        k, fixture_render_user_list_id(corp_of(s, k), cursor, limit, &k->out),
        -1);
}

/* user/list_member_auth: {"cursor","limit"} like list_id. */
static void
api_member_auth(struct server *s, struct call *k)
{
    const char *cursor;
    long limit;

    if (jstring(k, "cursor", &cursor) ||
        jlong(k, "limit", 1, 10000, 10000, &limit))
        return;
    if (refused(s, k, FIXTURE_API_USER_MEMBER_AUTH, NULL, 0, NULL, 0))
        return;
    reply_render(k,
                 fixture_render_member_auth(corp_of(s, k), cursor, limit,
                                            s->member_auth_userid, &k->out),
                 -1);
}

static void
depts(struct server *s, struct call *k, int full)
{
    static const long all = 0;
    long id;

    if (qlong(k, "id", 1, FIXTURE_MAX_DEPARTMENTS + 1L, &all, &id))
        return;
    if (refused(s, k,
                full ? FIXTURE_API_DEPARTMENT_LIST
                     : FIXTURE_API_DEPARTMENT_SIMPLE,
                NULL, id, NULL, 0))
        return;
    if (full)
        reply_render(k,
                     fixture_render_department_list(corp_of(s, k), id, &k->out),
                     60123);
    else
        reply_render(
            k, fixture_render_department_simplelist(corp_of(s, k), id, &k->out),
            60123);
}

static void
api_department_list(struct server *s, struct call *k)
{
    depts(s, k, 1);
}

static void
api_department_simplelist(struct server *s, struct call *k)
{
    depts(s, k, 0);
}

static void
api_department_get(struct server *s, struct call *k)
{
    long id;

    if (qlong(k, "id", 1, FIXTURE_MAX_DEPARTMENTS + 1L, NULL, &id))
        return;
    if (refused(s, k, FIXTURE_API_DEPARTMENT_GET, NULL, id, NULL, 0))
        return;
    reply_render(k, fixture_render_department_get(corp_of(s, k), id, &k->out),
                 60123);
}

static void
api_tag_list(struct server *s, struct call *k)
{
    if (refused(s, k, FIXTURE_API_TAG_LIST, NULL, 0, NULL, 0))
        return;
    reply_render(k, fixture_render_tag_list(corp_of(s, k), &k->out), -1);
}

static void
api_tag_get(struct server *s, struct call *k)
{
    long id;

    if (qlong(k, "tagid", 1, FIXTURE_MAX_TAGS + 1L, NULL, &id))
        return;
    if (refused(s, k, FIXTURE_API_TAG_GET, NULL, id, NULL, 0))
        return;
    reply_render(k, fixture_render_tag_get(corp_of(s, k), id, &k->out), 40068);
}

static void
api_follow_users(struct server *s, struct call *k)
{
    if (refused(s, k, FIXTURE_API_FOLLOW_USERS, NULL, 0, NULL, 0))
        return;
    reply_render(k, fixture_render_follow_user_list(corp_of(s, k), &k->out),
                 -1);
}

static void
api_external_list(struct server *s, struct call *k)
{
    const char *id = query_get(k->q, "userid");

    if (id == NULL) {
        reply_err(k, 40058);
        return;
    }
    if (refused(s, k, FIXTURE_API_EXTERNAL_LIST, id, 0, NULL, 0))
        return;
    if (fixture_member_index(corp_of(s, k), id) < 0) {
        reply_err(k, 60111);
        return;
    }
    reply_render(k, fixture_render_external_list(corp_of(s, k), id, &k->out),
                 84061);
}

static void
api_external_get(struct server *s, struct call *k)
{
    const char *id = query_get(k->q, "external_userid");

    if (id == NULL) {
        reply_err(k, 40058);
        return;
    }
    if (refused(s, k, FIXTURE_API_EXTERNAL_GET, id, 0, NULL, 0))
        return;
    /* 40096 for something that is no external_userid at all, 84061 for
     * a well-formed one this corp does not know */
    reply_render(
        k, fixture_render_external_get(corp_of(s, k), id, &k->out),
        strncmp(id, "wm", 2) == 0 || strncmp(id, "wo", 2) == 0 ? 84061 : 40096);
}

static void
api_external_batch(struct server *s, struct call *k)
{
    const char **ids = NULL;
    const char *cursor;
    size_t n;
    long limit;

    if (jstring(k, "cursor", &cursor) || jlong(k, "limit", 1, 100, 50, &limit))
        return;
    if (jstrings(k, json_object_get(k->json, "userid_list"), 100, 1, &ids, &n))
        return;
    if (!refused(s, k, FIXTURE_API_EXTERNAL_BATCH, NULL, 0, ids, n))
        reply_render(k,
                     fixture_render_external_batch(corp_of(s, k), ids, n,
                                                   cursor, limit, &k->out),
                     -1);
    brk_free(ids);
}

static void
api_groupchat_list(struct server *s, struct call *k)
{
    const json_t *of = json_object_get(k->json, "owner_filter");
    const char **ids = NULL;
    const char *cursor;
    long status, limit;
    size_t n = 0;

    if (jstring(k, "cursor", &cursor) ||
        jlong(k, "status_filter", 0, 3, 0, &status) ||
        jlong(k, "limit", 1, 1000, 0, &limit))
        return;
    if (limit == 0 || (of != NULL && !json_is_object(of))) {
        reply_err(k, 40058);
        return;
    }
    if (of != NULL &&
        jstrings(k, json_object_get(of, "userid_list"), 100, 0, &ids, &n))
        return;
    if (!refused(s, k, FIXTURE_API_GROUPCHAT_LIST, NULL, 0, ids, n))
        reply_render(k,
                     fixture_render_groupchat_list(corp_of(s, k), status, ids,
                                                   n, cursor, limit, &k->out),
                     -1);
    brk_free(ids);
}

static void
api_groupchat_get(struct server *s, struct call *k)
{
    const char *id;
    long need;

    if (jstring(k, "chat_id", &id) || jlong(k, "need_name", 0, 1, 0, &need))
        return;
    if (id == NULL) {
        reply_err(k, 40058);
        return;
    }
    if (refused(s, k, FIXTURE_API_GROUPCHAT_GET, id, 0, NULL, 0))
        return;
    reply_render(
        k, fixture_render_groupchat_get(corp_of(s, k), id, (int)need, &k->out),
        40050);
}

static void
api_agent_get(struct server *s, struct call *k)
{
    long id;

    if (qlong(k, "agentid", 0, 1L << 30, NULL, &id))
        return;
    reply_render(k, fixture_render_agent_get(corp_of(s, k), id, &k->out),
                 40056);
}

/* agent/get_admin_list {"agentid"}: the body may name the app's agent (or
 * none); another agent is 301002, as for a token of another app. */
static void
api_admin_list(struct server *s, struct call *k)
{
    long id;

    if (jlong(k, "agentid", 0, 1L << 30, FIXTURE_AGENTID, &id))
        return;
    if (id != FIXTURE_AGENTID) {
        reply_err(k, 301002);
        return;
    }
    reply_render(k, fixture_render_admin_list(corp_of(s, k), &k->out), -1);
}

/*---- OAuth: browser pages and member identity -----------------------------*/

/* A WeCom state: absent, or at most STATE_MAX of [A-Za-z0-9]. */
static int
wecom_state_ok(const char *st)
{
    size_t i;

    for (i = 0; st != NULL && st[i] != '\0'; i++)
        if (i == STATE_MAX ||
            !((st[i] >= 'A' && st[i] <= 'Z') ||
              (st[i] >= 'a' && st[i] <= 'z') || (st[i] >= '0' && st[i] <= '9')))
            return 0;
    return 1;
}

/* An absolute http(s) redirect_uri that fits a Location header: printable
 * ASCII without spaces, and no fragment (the parameters go in the query). */
static int
redirect_ok(const char *u)
{
    size_t i;

    if (u == NULL || (strncasecmp(u, "http://", 7) != 0 &&
                      strncasecmp(u, "https://", 8) != 0))
        return 0;
    for (i = 0; u[i] != '\0'; i++)
        if (i == REDIRECT_MAX || (unsigned char)u[i] <= 0x20 ||
            (unsigned char)u[i] >= 0x7f || u[i] == '#')
            return 0;
    return 1;
}

/* A browser page's refusal: plain text, like WeCom's error pages. */
static void
page_err(struct call *k, int status, const char *msg)
{
    dynbuf_reset(&k->out);
    k->status = status;
    k->ctype = "text/plain; charset=utf-8";
    if (dynbuf_printf(&k->out, "mock-wecom: %s\n", msg))
        k->status = 500;
}

/* 302 to uri with params appended to its query; params are already
 * URL-safe. */
static void
page_redirect(struct call *k, const char *uri, const char *params)
{
    struct dynbuf loc;

    dynbuf_init(&loc, REDIRECT_MAX * 2);
    if (dynbuf_printf(&loc, "%s%c%s", uri, strchr(uri, '?') ? '&' : '?',
                      params) ||
        dynbuf_add(&loc, "", 1) ||
        evhttp_add_header(evhttp_request_get_output_headers(k->req), "Location",
                          loc.buf) != 0) {
        dynbuf_free(&loc);
        page_err(k, 500, "cannot build the redirect");
        return;
    }
    dynbuf_free(&loc);
    k->status = 302;
    k->ctype = "text/plain; charset=utf-8";
    if (dynbuf_add_str(&k->out, "redirecting\n"))
        k->status = 500;
}

/*
 * GET /3rdapp/install?suite_id&pre_auth_code&redirect_uri&state: the
 * admin of the corp chosen with /__mock/oauth_corp approves at once.
 */
static void
page_install(struct server *s, struct call *k)
{
    const char *pre = query_get(k->q, "pre_auth_code");
    const char *uri = query_get(k->q, "redirect_uri");
    const char *state = query_get(k->q, "state");
    int suite = suite_find(s, query_get(k->q, "suite_id"));
    const struct token *t = pre ? token_find(s, TOK_PRE_AUTH, pre) : NULL;
    const struct auth_code *a;
    char params[CODE_LEN + STATE_MAX + 64];

    if (suite < 0) {
        page_err(k, 400, "unknown suite_id");
        return;
    }
    if (t == NULL || t->suite != suite || mono_ms() >= t->expires_ms) {
        page_err(k, 400, "unknown or expired pre_auth_code");
        return;
    }
    if (!redirect_ok(uri) || !wecom_state_ok(state)) {
        page_err(k, 400, "bad redirect_uri or state");
        return;
    }
    a = code_mint(s, suite, s->install_corp, state);
    if (a == NULL) {
        page_err(k, 500, "no randomness");
        return;
    }
    snprintf(params, sizeof(params), "auth_code=%s&expires_in=%d&state=%s",
             a->s, AUTH_CODE_TTL_S, state ? state : "");
    page_redirect(k, uri, params);
}

/*
 * GET /connect/oauth2/authorize?appid&redirect_uri&response_type=code&
 * scope&state: the member chosen with /__mock/oauth_user logs in and
 * consents at once.
 */
static void
page_authorize(struct server *s, struct call *k)
{
    const char *uri = query_get(k->q, "redirect_uri");
    const char *state = query_get(k->q, "state");
    const char *rt = query_get(k->q, "response_type");
    const char *scope = query_get(k->q, "scope");
    int suite = suite_find(s, query_get(k->q, "appid"));
    struct oauth_code *o;
    char params[TOKEN_LEN + STATE_MAX + 32];

    if (suite < 0) {
        page_err(k, 400, "unknown appid (the suite_id)");
        return;
    }
    if (rt == NULL || strcmp(rt, "code") != 0 || scope == NULL ||
        (strcmp(scope, "snsapi_base") != 0 &&
         strcmp(scope, "snsapi_privateinfo") != 0)) {
        page_err(k, 400,
                 "want response_type=code and scope snsapi_base or "
                 "snsapi_privateinfo");
        return;
    }
    if (!redirect_ok(uri) || !wecom_state_ok(state)) {
        page_err(k, 400, "bad redirect_uri or state");
        return;
    }
    o = &s->ocodes[s->nocodes % MAX_CODES];
    memset(o, 0, sizeof(*o));
    if (random_text(o->s, TOKEN_LEN) != 0) {
        page_err(k, 500, "no randomness");
        return;
    }
    s->nocodes++;
    o->suite = suite;
    o->corp = s->user_corp;
    o->member = s->user_member;
    memcpy(o->openid, s->user_openid, sizeof(o->openid));
    o->privateinfo = strcmp(scope, "snsapi_privateinfo") == 0;
    o->expires_ms = mono_ms() + OAUTH_CODE_TTL_S * 1000L;
    snprintf(params, sizeof(params), "code=%s&state=%s", o->s,
             state ? state : "");
    page_redirect(k, uri, params);
}

/* The member's user/get record (new reference), or NULL. */
static json_t *
member_json(const struct server *s, long corp, long member)
{
    char userid[128];
    json_error_t jerr;
    struct dynbuf d;
    json_t *j = NULL;

    dynbuf_init(&d, 1 << 20);
    if (fixture_member_userid(s->corps[corp], member, userid, sizeof(userid)) ==
            BRK_OK &&
        fixture_render_user_record(s->corps[corp], userid, &d) == BRK_OK)
        j = json_loadb(d.buf, d.len, 0, &jerr);
    dynbuf_free(&d);
    return j;
}

/*
 * getuserinfo3rd, new path (lower-case keys, unless /__mock/oauth_shape
 * chose "old") or old path (capitalised keys). A code is taken on first
 * use, even when the reply is then lost. user_ticket and expires_in come
 * only with scope snsapi_privateinfo, as WeCom documents.
 */
static void
userinfo(struct server *s, struct call *k, int old)
{
    const char *code = query_get(k->q, "code");
    struct oauth_code *o = NULL;
    struct user_ticket *t = NULL;
    json_t *u = NULL, *r;
    size_t i;

    for (i = 0; code != NULL && i < MAX_CODES; i++)
        if (s->ocodes[i].s[0] != '\0' && same_secret(s->ocodes[i].s, code))
            o = &s->ocodes[i];
    if (o == NULL || o->used || o->suite != k->suite ||
        mono_ms() >= o->expires_ms) {
        reply_err(k, 40029);
        return;
    }
    o->used = 1;
    if (o->corp < 0) {
        k->errcode = 0;
        reply_json(k,
                   old ? json_pack("{s:i,s:s,s:s,s:s}", "errcode", 0, "errmsg",
                                   "ok", "OpenId", o->openid, "DeviceId", "")
                       : json_pack("{s:i,s:s,s:s}", "errcode", 0, "errmsg",
                                   "ok", "openid", o->openid));
        return;
    }
    u = member_json(s, o->corp, o->member);
    if (u == NULL) {
        reply_err(k, -1);
        k->status = 500;
        return;
    }
    if (o->privateinfo) {
        t = &s->tickets[s->ntickets % MAX_CODES];
        memset(t, 0, sizeof(*t));
        if (random_text(t->s, TOKEN_LEN) != 0) {
            json_decref(u);
            reply_err(k, -1);
            return;
        }
        s->ntickets++;
        t->suite = o->suite;
        t->corp = o->corp;
        t->member = o->member;
        t->expires_ms = mono_ms() + (int64_t)s->ticket_lifetime * 1000;
    }
    if (old)
        r = json_pack("{s:i,s:s,s:s,s:O?,s:s}", "errcode", 0, "errmsg", "ok",
                      "CorpId", fixture_corp_id(s->corps[o->corp]), "UserId",
                      json_object_get(u, "userid"), "DeviceId", "");
    else
        r = json_pack("{s:i,s:s,s:s,s:O?}", "errcode", 0, "errmsg", "ok",
                      "corpid", fixture_corp_id(s->corps[o->corp]), "userid",
                      json_object_get(u, "userid"));
    if (r != NULL && t != NULL &&
        (json_object_set_new(r, "user_ticket", json_string(t->s)) != 0 ||
         json_object_set_new(r, "expires_in",
                             json_integer(s->ticket_lifetime)) != 0)) {
        json_decref(r);
        r = NULL;
    }
    if (r != NULL && !old &&
        json_object_set(r, "open_userid", json_object_get(u, "open_userid")) !=
            0) {
        json_decref(r);
        r = NULL;
    }
    json_decref(u);
    k->errcode = 0;
    reply_json(k, r);
}

static void
api_userinfo(struct server *s, struct call *k)
{
    userinfo(s, k, s->old_shape);
}

static void
api_userinfo_old(struct server *s, struct call *k)
{
    userinfo(s, k, 1);
}

/*
 * The member consented to privateinfo, but WeCom hands over a sensitive
 * value only when the corp granted the app its permission (成员敏感信息):
 * gender "0", avatar and qr_code absent otherwise. 0, or -1 when out of
 * memory.
 */
static int
strip_unconsented(const struct fixture_corp *c, json_t *r)
{
    if (!fixture_corp_has_permission(c, "contact:sensitive:gender") &&
        json_object_set_new(r, "gender", json_string("0")) != 0)
        return -1;
    if (!fixture_corp_has_permission(c, "contact:sensitive:avatar"))
        json_object_del(r, "avatar");
    if (!fixture_corp_has_permission(c, "contact:sensitive:qrcode"))
        json_object_del(r, "qr_code");
    return 0;
}

/* getuserdetail3rd: 84015 for an unknown ticket (or another suite's),
 * 84014 for an expired one. name is the userid, as for every third-party
 * app. */
static void
api_userdetail(struct server *s, struct call *k)
{
    const struct user_ticket *t = NULL;
    const struct fixture_corp *c;
    const char *v;
    json_t *u, *r;
    size_t i;

    if (jstring(k, "user_ticket", &v))
        return;
    for (i = 0; v != NULL && i < MAX_CODES; i++)
        if (s->tickets[i].s[0] != '\0' && same_secret(s->tickets[i].s, v))
            t = &s->tickets[i];
    if (t == NULL || t->suite != k->suite) {
        reply_err(k, 84015);
        return;
    }
    if (mono_ms() >= t->expires_ms) {
        reply_err(k, 84014);
        return;
    }
    c = s->corps[t->corp];
    u = member_json(s, t->corp, t->member);
    if (u == NULL) {
        reply_err(k, -1);
        k->status = 500;
        return;
    }
    r = json_pack(
        "{s:i,s:s,s:s,s:O?,s:O?,s:O?,s:O?,s:O?,s:s}", "errcode", 0, "errmsg",
        "ok", "corpid", fixture_corp_id(c), "userid",
        json_object_get(u, "userid"), "name", json_object_get(u, "userid"),
        "gender", json_object_get(u, "gender"), "avatar",
        json_object_get(u, "avatar"), "qr_code", json_object_get(u, "qr_code"),
        "mock_internal_note", "user detail from the mock");
    json_decref(u);
    if (r != NULL && fixture_corp_is_strict(c) &&
        strip_unconsented(c, r) != 0) {
        json_decref(r);
        r = NULL;
    }
    k->errcode = 0;
    reply_json(k, r);
}

/* Browser pages: GET only, answered with a redirect or a text page. */
static const struct {
    const char *path;
    void (*fn)(struct server *, struct call *);
} pages[] = {
    {"/3rdapp/install", page_install},
    {"/connect/oauth2/authorize", page_authorize},
};

/* 1 when k->path is a browser page (answered here), else 0. */
static int
page(struct server *s, struct call *k)
{
    size_t i;

    for (i = 0; i < nitems(pages); i++) {
        if (strcmp(pages[i].path, k->path) != 0)
            continue;
        if (k->method != EVHTTP_REQ_GET)
            page_err(k, 405, "use GET");
        else if (query_parse(k->rawq, MAX_QUERY_PARAM, &k->q) != BRK_OK)
            page_err(k, 400, "malformed query");
        else
            pages[i].fn(s, k);
        return 1;
    }
    return 0;
}

enum auth { AUTH_NONE, AUTH_SUITE, AUTH_CORP };

/* The customer write APIs (serve_write.c), with WeCom's rules. */
static void
api_write(struct server *s, struct call *k)
{
    json_t *extra = NULL, *r;
    long e = mock_write_call(s->writes, corp_of(s, k), k->corp, k->path,
                             k->json, &extra);

    if (e != 0) {
        reply_err(k, e);
        if (e == -1)
            k->status = 500;
        return;
    }
    r = json_pack("{s:i,s:s,s:s}", "errcode", 0, "errmsg", "ok",
                  "mock_internal_note", "write");
    if (r != NULL && extra != NULL && json_object_update(r, extra) != 0) {
        json_decref(r);
        r = NULL;
    }
    json_decref(extra);
    k->errcode = 0;
    reply_json(k, r);
}

/* media/upload: a multipart body, WeCom's limits (serve_write.c). */
static void
api_media(struct server *s, struct call *k)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(k->req);
    json_t *extra = NULL, *r;
    long e = mock_write_media(s->writes, k->corp, query_get(k->q, "type"),
                              evhttp_find_header(h, "Content-Type"), k->body,
                              k->blen, &extra);

    if (e != 0) {
        reply_err(k, e);
        if (e == -1)
            k->status = 500;
        return;
    }
    r = json_pack("{s:i,s:s}", "errcode", 0, "errmsg", "ok");
    if (r != NULL && json_object_update(r, extra) != 0) {
        json_decref(r);
        r = NULL;
    }
    json_decref(extra);
    k->errcode = 0;
    reply_json(k, r);
}

static const struct route {
    const char *path;
    enum evhttp_cmd_type method;
    enum auth auth;
    void (*fn)(struct server *, struct call *);
} routes[] = {
    {"/cgi-bin/service/get_suite_token", EVHTTP_REQ_POST, AUTH_NONE,
     api_suite_token},
    {"/cgi-bin/service/get_pre_auth_code", EVHTTP_REQ_GET, AUTH_SUITE,
     api_pre_auth_code},
    {"/cgi-bin/service/set_session_info", EVHTTP_REQ_POST, AUTH_SUITE,
     api_session_info},
    {"/cgi-bin/service/get_permanent_code", EVHTTP_REQ_POST, AUTH_SUITE,
     api_permanent_code},
    {"/cgi-bin/service/v2/get_permanent_code", EVHTTP_REQ_POST, AUTH_SUITE,
     api_permanent_code_v2},
    {"/cgi-bin/service/get_auth_info", EVHTTP_REQ_POST, AUTH_SUITE,
     api_auth_info},
    {"/cgi-bin/service/get_corp_token", EVHTTP_REQ_POST, AUTH_SUITE,
     api_corp_token},
    {"/cgi-bin/service/auth/getuserinfo3rd", EVHTTP_REQ_GET, AUTH_SUITE,
     api_userinfo},
    {"/cgi-bin/service/getuserinfo3rd", EVHTTP_REQ_GET, AUTH_SUITE,
     api_userinfo_old},
    {"/cgi-bin/service/auth/getuserdetail3rd", EVHTTP_REQ_POST, AUTH_SUITE,
     api_userdetail},
    {"/cgi-bin/agent/get_permissions", EVHTTP_REQ_POST, AUTH_CORP,
     api_permissions},
    {"/cgi-bin/agent/get", EVHTTP_REQ_GET, AUTH_CORP, api_agent_get},
    {"/cgi-bin/agent/get_admin_list", EVHTTP_REQ_POST, AUTH_CORP,
     api_admin_list},
    {"/cgi-bin/user/get", EVHTTP_REQ_GET, AUTH_CORP, api_user_get},
    {"/cgi-bin/user/simplelist", EVHTTP_REQ_GET, AUTH_CORP,
     api_user_simplelist},
    {"/cgi-bin/user/list", EVHTTP_REQ_GET, AUTH_CORP, api_user_list},
    {"/cgi-bin/user/list_id", EVHTTP_REQ_POST, AUTH_CORP, api_user_list_id},
    {"/cgi-bin/user/list_member_auth", EVHTTP_REQ_POST, AUTH_CORP,
     api_member_auth},
    {"/cgi-bin/department/list", EVHTTP_REQ_GET, AUTH_CORP,
     api_department_list},
    {"/cgi-bin/department/simplelist", EVHTTP_REQ_GET, AUTH_CORP,
     api_department_simplelist},
    {"/cgi-bin/department/get", EVHTTP_REQ_GET, AUTH_CORP, api_department_get},
    {"/cgi-bin/tag/list", EVHTTP_REQ_GET, AUTH_CORP, api_tag_list},
    {"/cgi-bin/tag/get", EVHTTP_REQ_GET, AUTH_CORP, api_tag_get},
    {"/cgi-bin/externalcontact/get_follow_user_list", EVHTTP_REQ_GET, AUTH_CORP,
     api_follow_users},
    {"/cgi-bin/externalcontact/list", EVHTTP_REQ_GET, AUTH_CORP,
     api_external_list},
    {"/cgi-bin/externalcontact/get", EVHTTP_REQ_GET, AUTH_CORP,
     api_external_get},
    {"/cgi-bin/externalcontact/batch/get_by_user", EVHTTP_REQ_POST, AUTH_CORP,
     api_external_batch},
    {"/cgi-bin/externalcontact/groupchat/list", EVHTTP_REQ_POST, AUTH_CORP,
     api_groupchat_list},
    {"/cgi-bin/externalcontact/groupchat/get", EVHTTP_REQ_POST, AUTH_CORP,
     api_groupchat_get},
    {"/cgi-bin/externalcontact/remark", EVHTTP_REQ_POST, AUTH_CORP, api_write},
    {"/cgi-bin/externalcontact/mark_tag", EVHTTP_REQ_POST, AUTH_CORP,
     api_write},
    {"/cgi-bin/externalcontact/get_corp_tag_list", EVHTTP_REQ_POST, AUTH_CORP,
     api_write},
    {"/cgi-bin/externalcontact/add_corp_tag", EVHTTP_REQ_POST, AUTH_CORP,
     api_write},
    {"/cgi-bin/externalcontact/edit_corp_tag", EVHTTP_REQ_POST, AUTH_CORP,
     api_write},
    {"/cgi-bin/externalcontact/del_corp_tag", EVHTTP_REQ_POST, AUTH_CORP,
     api_write},
    {"/cgi-bin/externalcontact/send_welcome_msg", EVHTTP_REQ_POST, AUTH_CORP,
     api_write},
    {"/cgi-bin/externalcontact/add_msg_template", EVHTTP_REQ_POST, AUTH_CORP,
     api_write},
    {"/cgi-bin/externalcontact/add_contact_way", EVHTTP_REQ_POST, AUTH_CORP,
     api_write},
    {"/cgi-bin/externalcontact/get_contact_way", EVHTTP_REQ_POST, AUTH_CORP,
     api_write},
    {"/cgi-bin/externalcontact/update_contact_way", EVHTTP_REQ_POST, AUTH_CORP,
     api_write},
    {"/cgi-bin/externalcontact/del_contact_way", EVHTTP_REQ_POST, AUTH_CORP,
     api_write},
    {MEDIA_PATH, EVHTTP_REQ_POST, AUTH_CORP, api_media},
};

/* Parse the body of a POST as a JSON object ("" is {}); 0 on success. */
static int
parse_body(struct call *k)
{
    json_error_t jerr;

    if (k->blen == 0) {
        k->json = json_object();
        return k->json ? 0 : -1;
    }
    k->json = json_loadb(k->body, k->blen, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(k->json)) {
        json_decref(k->json);
        k->json = NULL;
        return -1;
    }
    return 0;
}

static void
api(struct server *s, struct call *k)
{
    const struct route *r = NULL;
    size_t i;
    long e;

    if (page(s, k))
        return;
    for (i = 0; i < nitems(routes); i++)
        if (strcmp(routes[i].path, k->path) == 0)
            r = &routes[i];
    if (r == NULL) {
        k->status = 404;
        k->errcode = -1;
        if (dynbuf_add_str(&k->out,
                           "{\"errcode\":-1,\"errmsg\":\"mock: unknown "
                           "path\"}"))
            k->status = 500;
        return;
    }
    if (k->method != r->method) {
        reply_err(k, r->method == EVHTTP_REQ_GET ? 43001 : 43002);
        return;
    }
    if (query_parse(k->rawq, MAX_QUERY_PARAM, &k->q) != BRK_OK) {
        reply_err(k, 40058);
        return;
    }
    if (r->auth != AUTH_NONE) {
        e = check_token(s, k, r->auth == AUTH_SUITE ? TOK_SUITE : TOK_CORP);
        if (e) {
            reply_err(k, e);
            return;
        }
    }
    if (r->method == EVHTTP_REQ_POST && r->fn != api_media &&
        parse_body(k) != 0) {
        reply_err(k, 40058);
        return;
    }
    r->fn(s, k);
}

/*---- Request log --------------------------------------------------------*/

static void
logged_clear(struct logged *l)
{
    brk_free(l->method);
    brk_free(l->path);
    brk_free(l->query);
    json_decref(l->body);
    memset(l, 0, sizeof(*l));
}

static void
log_drop_oldest(struct server *s)
{
    struct logged *l = &s->logged[s->log_head];

    s->log_bytes -= l->bytes;
    logged_clear(l);
    s->log_head = (s->log_head + 1) % MAX_LOGGED;
    s->log_len--;
}

static int
is_token_param(const char *name, size_t n)
{
    static const char *const names[] = {"access_token", "suite_access_token",
                                        "provider_access_token"};
    size_t i;

    for (i = 0; i < nitems(names); i++)
        if (strlen(names[i]) == n && memcmp(names[i], name, n) == 0)
            return 1;
    return 0;
}

/* The raw query with token values replaced by "***". Owned. */
static char *
mask_query(const char *raw)
{
    struct dynbuf d;
    const char *p = raw ? raw : "";
    char *out = NULL;

    dynbuf_init(&d, 1 << 20);
    while (*p != '\0') {
        const char *amp = strchr(p, '&');
        const char *end = amp ? amp : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));

        if (d.len > 0 && dynbuf_add(&d, "&", 1))
            return NULL;
        if (eq != NULL && is_token_param(p, (size_t)(eq - p))) {
            if (dynbuf_add(&d, p, (size_t)(eq - p + 1)) ||
                dynbuf_add(&d, "***", 3))
                return NULL;
        } else if (dynbuf_add(&d, p, (size_t)(end - p))) {
            return NULL;
        }
        p = amp ? amp + 1 : end;
    }
    if (dynbuf_take(&d, &out, NULL))
        return NULL;
    return out;
}

static const char *
method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    default:
        return "OTHER";
    }
}

/* What the log keeps of a media/upload body: its framing and the part's
 * headers, never its bytes. */
static json_t *
media_summary(const struct call *k)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(k->req);
    const char *ct = evhttp_find_header(h, "Content-Type");
    struct multipart_media m;
    char msg[160];

    if (multipart_parse(ct, k->body, k->blen, &m, msg, sizeof(msg)) !=
        ERRCODE_OK)
        return json_pack("{s:b,s:s?,s:I}", "parsed", 0, "content_type", ct,
                         "bytes", (json_int_t)k->blen);
    return json_pack("{s:b,s:s,s:s,s:s,s:I}", "parsed", 1, "content_type", ct,
                     "filename", m.filename, "media_content_type",
                     m.content_type, "size", (json_int_t)m.len);
}

static void
record(struct server *s, const struct call *k)
{
    struct logged l;
    json_error_t jerr;

    memset(&l, 0, sizeof(l));
    l.method = brk_strdup(method_name(k->method));
    l.path = brk_strdup(k->path);
    l.query = mask_query(k->rawq);
    if (strcmp(k->path, MEDIA_PATH) == 0)
        l.body = media_summary(k);
    else if (k->blen > 0)
        l.body = json_loadb(k->body, k->blen, JSON_REJECT_DUPLICATES, &jerr);
    l.ts_ms = wall_ms();
    l.bytes =
        (l.body != NULL && strcmp(k->path, MEDIA_PATH) == 0 ? 256 : k->blen) +
        strlen(k->path) + (k->rawq ? strlen(k->rawq) : 0) + sizeof(l);
    if (l.method == NULL || l.path == NULL || l.query == NULL) {
        logged_clear(&l);
        return;
    }
    while (s->log_len > 0 &&
           (s->log_len == MAX_LOGGED || s->log_bytes + l.bytes > LOGGED_BYTES))
        log_drop_oldest(s);
    s->logged[(s->log_head + s->log_len) % MAX_LOGGED] = l;
    s->log_len++;
    s->log_bytes += l.bytes;
}

/*---- Control endpoints --------------------------------------------------*/

/* The keys of o must all be in allowed (NULL-terminated); 0 when so. */
static int
only_keys(json_t *o, const char *const *allowed)
{
    const char *key;
    json_t *v;
    size_t i;

    json_object_foreach(o, key, v)
    {
        int ok = 0;

        (void)v;
        for (i = 0; allowed[i] != NULL; i++)
            ok |= strcmp(allowed[i], key) == 0;
        if (!ok)
            return -1;
    }
    return 0;
}

static int
control_body(struct call *k, const char *const *allowed)
{
    if (k->method != EVHTTP_REQ_POST || parse_body(k) != 0) {
        reply_mock_err(k, 400, "expected a POST with a JSON object");
        return -1;
    }
    if (only_keys(k->json, allowed) != 0) {
        reply_mock_err(k, 400, "unknown key in the request");
        return -1;
    }
    return 0;
}

static void
ctl_suite_ticket(struct server *s, struct call *k)
{
    int i = suite_find(s, query_get(k->q, "suite_id"));
    struct suite *su;
    char *slot;

    if (k->method != EVHTTP_REQ_GET) {
        reply_mock_err(k, 405, "use GET");
        return;
    }
    if (i < 0) {
        reply_mock_err(k, 404, "unknown suite_id");
        return;
    }
    su = &s->suites[i];
    slot = su->ticket[su->nticket % TICKETS_KEPT];
    if (random_text(slot, TOKEN_LEN) != 0) {
        reply_mock_err(k, 500, "no randomness");
        return;
    }
    su->nticket++;
    k->errcode = 0;
    if (dynbuf_printf(&k->out, "{\"suite_ticket\":\"%s\",\"timestamp\":%lld}",
                      slot, (long long)(wall_ms() / 1000)))
        k->status = 500;
}

static void
ctl_install(struct server *s, struct call *k)
{
    static const char *const keys[] = {"suite_id", "corpid", "state", NULL};
    const struct auth_code *a;
    const char *state;
    int suite;
    long corp;

    if (control_body(k, keys))
        return;
    suite = suite_find(s, jstr(k->json, "suite_id"));
    corp = corp_find(s, jstr(k->json, "corpid"));
    state = jstr(k->json, "state");
    if (suite < 0 || corp < 0) {
        reply_mock_err(k, 400, "unknown suite_id or corpid");
        return;
    }
    if (state != NULL && strlen(state) > STATE_MAX) {
        reply_mock_err(k, 400, "state too long");
        return;
    }
    a = code_mint(s, suite, corp, state);
    if (a == NULL) {
        reply_mock_err(k, 500, "no randomness");
        return;
    }
    k->errcode = 0;
    if (dynbuf_printf(&k->out, "{\"auth_code\":\"%s\"}", a->s))
        k->status = 500;
}

static int
fault_parse(json_t *o, struct fault *f)
{
    static const char *const keys[] = {"path",       "count",   "delay_ms",
                                       "status",     "errcode", "body",
                                       "drop_reply", NULL};
    const json_t *v;
    const char *path = jstr(o, "path");
    size_t i;

    memset(f, 0, sizeof(f[0]));
    f->count = 1;
    if (only_keys(o, keys) != 0 || path == NULL || path[0] != '/' ||
        strlen(path) >= sizeof(f->path))
        return -1;
    memcpy(f->path, path, strlen(path) + 1);
    if ((v = json_object_get(o, "count")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > 1000000)
            return -1;
        f->count = (long)json_integer_value(v);
    }
    if ((v = json_object_get(o, "delay_ms")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) > MAX_DELAY_MS)
            return -1;
        f->delay_ms = (long)json_integer_value(v);
    }
    if ((v = json_object_get(o, "status")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 100 ||
            json_integer_value(v) > 599)
            return -1;
        f->status = (int)json_integer_value(v);
    }
    if ((v = json_object_get(o, "errcode")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < -2147483647 ||
            json_integer_value(v) > 2147483647)
            return -1;
        f->has_errcode = 1;
        f->errcode = (long)json_integer_value(v);
    }
    if ((v = json_object_get(o, "body")) != NULL) {
        for (i = 1; i < nitems(fault_body_name); i++)
            if (json_is_string(v) &&
                strcmp(json_string_value(v), fault_body_name[i]) == 0)
                f->body = (int)i;
        if (f->body == FB_NONE)
            return -1;
    }
    if ((v = json_object_get(o, "drop_reply")) != NULL) {
        if (!json_is_boolean(v))
            return -1;
        f->drop_reply = json_is_true(v);
    }
    return 0;
}

static json_t *
faults_json(const struct server *s)
{
    json_t *a = json_array();
    size_t i;

    for (i = 0; a != NULL && i < s->nfaults; i++) {
        const struct fault *f = &s->faults[i];

        if (json_array_append_new(
                a, json_pack(
                       "{s:s,s:I,s:I,s:i,s:o,s:s,s:b}", "path", f->path,
                       "count", (json_int_t)f->count, "delay_ms",
                       (json_int_t)f->delay_ms, "status", f->status, "errcode",
                       f->has_errcode ? json_integer(f->errcode) : json_null(),
                       "body", fault_body_name[f->body], "drop_reply",
                       f->drop_reply)) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static void
ctl_faults(struct server *s, struct call *k)
{
    struct fault f;

    if (k->method == EVHTTP_REQ_DELETE) {
        s->nfaults = 0;
        reply_ok(k);
        return;
    }
    if (k->method == EVHTTP_REQ_GET) {
        reply_json(k, faults_json(s));
        return;
    }
    /* the keys are checked by fault_parse */
    if (k->method != EVHTTP_REQ_POST || parse_body(k) != 0) {
        reply_mock_err(k, 400, "expected a POST with a JSON object");
        return;
    }
    if (fault_parse(k->json, &f) != 0) {
        reply_mock_err(k, 400,
                       "bad fault (keys: path, count, delay_ms, "
                       "status, errcode, body, drop_reply)");
        return;
    }
    if (s->nfaults == MAX_FAULTS) {
        reply_mock_err(k, 400, "too many queued faults");
        return;
    }
    s->faults[s->nfaults++] = f;
    reply_ok(k);
}

/* Take one use of the first fault queued for path; 1 when found. */
static int
fault_take(struct server *s, const char *path, struct fault *out)
{
    size_t i;

    for (i = 0; i < s->nfaults; i++) {
        struct fault *f = &s->faults[i];

        if (strcmp(f->path, path) != 0)
            continue;
        *out = *f;
        if (--f->count == 0) {
            memmove(f, f + 1, (s->nfaults - i - 1) * sizeof(*f));
            s->nfaults--;
        }
        return 1;
    }
    return 0;
}

static void
ctl_invalidate(struct server *s, struct call *k)
{
    static const char *const keys[] = {"corpid", "suite_id", NULL};
    const char *corpid, *suite_id;
    long corp = -1;
    int suite = -1;

    if (control_body(k, keys))
        return;
    corpid = jstr(k->json, "corpid");
    suite_id = jstr(k->json, "suite_id");
    if (corpid != NULL && (corp = corp_find(s, corpid)) < 0) {
        reply_mock_err(k, 400, "unknown corpid");
        return;
    }
    if (suite_id != NULL && (suite = suite_find(s, suite_id)) < 0) {
        reply_mock_err(k, 400, "unknown suite_id");
        return;
    }
    if (corp < 0 && suite < 0) {
        reply_mock_err(k, 400, "give corpid or suite_id");
        return;
    }
    if (corp >= 0)
        tokens_revoke(s, TOK_CORP, -1, corp);
    if (suite >= 0)
        tokens_revoke(s, TOK_SUITE, suite, -1);
    reply_ok(k);
}

static int
json_longs(const json_t *a, long **out, size_t *n)
{
    size_t i;

    *out = NULL;
    *n = 0;
    if (a == NULL)
        return 0;
    if (!json_is_array(a) || json_array_size(a) > 100000)
        return -1;
    if (json_array_size(a) == 0)
        return 0;
    *out = brk_calloc(json_array_size(a), sizeof(**out));
    if (*out == NULL)
        return -1;
    for (i = 0; i < json_array_size(a); i++) {
        const json_t *v = json_array_get(a, i);

        if (!json_is_integer(v))
            return -1;
        (*out)[i] = (long)json_integer_value(v);
    }
    *n = i;
    return 0;
}

/* Borrowed strings in an owned vector (brk_free the vector). */
static int
json_strs(const json_t *a, char ***out, size_t *n)
{
    size_t i;

    *out = NULL;
    *n = 0;
    if (a == NULL)
        return 0;
    if (!json_is_array(a) || json_array_size(a) > 100000)
        return -1;
    if (json_array_size(a) == 0)
        return 0;
    *out = brk_calloc(json_array_size(a), sizeof(**out));
    if (*out == NULL)
        return -1;
    for (i = 0; i < json_array_size(a); i++) {
        const char *v = json_string_value(json_array_get(a, i));

        if (v == NULL)
            return -1;
        /* fixture_corp_set_privilege copies; the cast only fits its
         * struct, nothing writes through it */
        (*out)[i] = (char *)(uintptr_t)v;
    }
    *n = i;
    return 0;
}

static void
ctl_privilege(struct server *s, struct call *k)
{
    static const char *const keys[] = {"corpid",     "level",     "allow_party",
                                       "allow_user", "allow_tag", "extra_party",
                                       "extra_user", "extra_tag", NULL};
    const json_t *lv;
    struct fixture_privilege p;
    long corp;
    int bad;

    if (control_body(k, keys))
        return;
    corp = corp_find(s, jstr(k->json, "corpid"));
    if (corp < 0) {
        reply_mock_err(k, 400, "unknown corpid");
        return;
    }
    lv = json_object_get(k->json, "level");
    if (lv != NULL && (!json_is_integer(lv) || json_integer_value(lv) < 0 ||
                       json_integer_value(lv) > 5)) {
        reply_mock_err(k, 400, "level must be an integer in 0..5");
        return;
    }
    memset(&p, 0, sizeof(p));
    /* without a level the level (and the contacts permission) stay */
    p.level = fixture_corp_privilege(s->corps[corp])->level;
    bad = json_longs(json_object_get(k->json, "allow_party"), &p.allow_party,
                     &p.nallow_party) ||
          json_strs(json_object_get(k->json, "allow_user"), &p.allow_user,
                    &p.nallow_user) ||
          json_longs(json_object_get(k->json, "allow_tag"), &p.allow_tag,
                     &p.nallow_tag) ||
          json_longs(json_object_get(k->json, "extra_party"), &p.extra_party,
                     &p.nextra_party) ||
          json_strs(json_object_get(k->json, "extra_user"), &p.extra_user,
                    &p.nextra_user) ||
          json_longs(json_object_get(k->json, "extra_tag"), &p.extra_tag,
                     &p.nextra_tag);
    if (bad)
        reply_mock_err(k, 400, "allow_*/extra_* must be arrays of ids");
    else if (fixture_corp_set_privilege(s->corps[corp], &p) != BRK_OK ||
             (lv != NULL &&
              fixture_corp_set_level(s->corps[corp],
                                     (long)json_integer_value(lv)) != BRK_OK))
        reply_mock_err(k, 500, "out of memory");
    else
        reply_ok(k);
    brk_free(p.allow_party);
    brk_free(p.allow_user);
    brk_free(p.allow_tag);
    brk_free(p.extra_party);
    brk_free(p.extra_user);
    brk_free(p.extra_tag);
}

static void
ctl_permissions(struct server *s, struct call *k)
{
    static const char *const keys[] = {"corpid", "app_permissions",
                                       "expire_time", NULL};
    const json_t *et;
    char **names = NULL;
    size_t n = 0;
    long corp, expiry = FIXTURE_PERM_EXPIRY;

    if (control_body(k, keys))
        return;
    corp = corp_find(s, jstr(k->json, "corpid"));
    et = json_object_get(k->json, "expire_time");
    if (corp < 0 || (et != NULL && !json_is_integer(et))) {
        reply_mock_err(k, 400, "unknown corpid or bad expire_time");
        return;
    }
    if (et != NULL)
        expiry = (long)json_integer_value(et);
    if (json_object_get(k->json, "app_permissions") == NULL ||
        json_strs(json_object_get(k->json, "app_permissions"), &names, &n))
        reply_mock_err(k, 400, "app_permissions must be an array of strings");
    else if (fixture_corp_set_permissions(s->corps[corp],
                                          (const char *const *)names, n,
                                          expiry) != BRK_OK)
        reply_mock_err(k, 500, "out of memory");
    else
        reply_ok(k);
    brk_free(names);
}

/* POST {"corpid","auth_mode":0|1[,"members":[userid...]]}: how the app was
 * authorized; members (who authorized) only with auth_mode 1. */
static void
ctl_auth_mode(struct server *s, struct call *k)
{
    static const char *const keys[] = {"corpid", "auth_mode", "members", NULL};
    const json_t *mode, *mem;
    char **ids = NULL;
    size_t n = 0;
    long corp;
    enum brk_err err;

    if (control_body(k, keys))
        return;
    corp = corp_find(s, jstr(k->json, "corpid"));
    mode = json_object_get(k->json, "auth_mode");
    mem = json_object_get(k->json, "members");
    if (corp < 0 || !json_is_integer(mode) ||
        (json_integer_value(mode) != FIXTURE_AUTH_ADMIN &&
         json_integer_value(mode) != FIXTURE_AUTH_MEMBER)) {
        reply_mock_err(k, 400, "want a known corpid and auth_mode 0 or 1");
        return;
    }
    if (mem != NULL && json_integer_value(mode) != FIXTURE_AUTH_MEMBER) {
        reply_mock_err(k, 400, "members only with auth_mode 1");
        return;
    }
    if (json_strs(mem, &ids, &n) != 0) {
        brk_free(ids);
        reply_mock_err(k, 400, "members must be an array of userids");
        return;
    }
    err = fixture_corp_set_auth_mode(s->corps[corp],
                                     (long)json_integer_value(mode),
                                     (const char *const *)ids, n);
    brk_free(ids);
    if (err == BRK_ERR_INVAL)
        reply_mock_err(k, 400, "unknown member or too many");
    else if (err != BRK_OK)
        reply_mock_err(k, 500, "out of memory");
    else
        reply_ok(k);
}

/* POST {"corpid","tagids":[...]}: the tags the app created. */
static void
ctl_app_tags(struct server *s, struct call *k)
{
    static const char *const keys[] = {"corpid", "tagids", NULL};
    const json_t *tags;
    long *ids = NULL, corp;
    size_t n = 0;
    enum brk_err err;

    if (control_body(k, keys))
        return;
    corp = corp_find(s, jstr(k->json, "corpid"));
    tags = json_object_get(k->json, "tagids");
    if (corp < 0 || tags == NULL || json_longs(tags, &ids, &n) != 0) {
        brk_free(ids);
        reply_mock_err(k, 400,
                       "want a known corpid and tagids, an array of "
                       "ids");
        return;
    }
    err = fixture_corp_set_app_tags(s->corps[corp], ids, n);
    brk_free(ids);
    if (err == BRK_ERR_INVAL)
        reply_mock_err(k, 400, "unknown tagid or too many");
    else if (err != BRK_OK)
        reply_mock_err(k, 500, "out of memory");
    else
        reply_ok(k);
}

/* POST {"corpid","admins":[{"userid","auth_type"}...]}: the app's admins
 * (auth_type 0 or 1, default 1). */
static void
ctl_admins(struct server *s, struct call *k)
{
    static const char *const keys[] = {"corpid", "admins", NULL};
    static const char *const admin_keys[] = {"userid", "auth_type", NULL};
    json_t *arr, *a;
    const json_t *t;
    const char **ids = NULL;
    long *types = NULL, corp;
    size_t n, i;
    enum brk_err err = BRK_ERR_INVAL;

    if (control_body(k, keys))
        return;
    corp = corp_find(s, jstr(k->json, "corpid"));
    arr = json_object_get(k->json, "admins");
    if (corp < 0 || !json_is_array(arr) ||
        json_array_size(arr) > FIXTURE_MAX_ADMINS) {
        reply_mock_err(k, 400, "want a known corpid and admins, an array");
        return;
    }
    n = json_array_size(arr);
    ids = brk_calloc(n ? n : 1, sizeof(*ids));
    types = brk_calloc(n ? n : 1, sizeof(*types));
    if (ids == NULL || types == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    json_array_foreach(arr, i, a)
    {
        t = json_object_get(a, "auth_type");
        ids[i] = jstr(a, "userid");
        if (!json_is_object(a) || only_keys(a, admin_keys) != 0 ||
            ids[i] == NULL || (t != NULL && !json_is_integer(t)))
            goto out;
        types[i] = t != NULL ? (long)json_integer_value(t) : 1;
    }
    err = fixture_corp_set_admins(s->corps[corp], ids, types, n);
out:
    brk_free(ids);
    brk_free(types);
    if (err == BRK_ERR_INVAL)
        reply_mock_err(k, 400,
                       "admins are {userid, auth_type 0|1} of known members");
    else if (err != BRK_OK)
        reply_mock_err(k, 500, "out of memory");
    else
        reply_ok(k);
}

/*
 * POST {"leaky":true|false[,"corpid"]}: one corp, or every corp, answers
 * leaky (every record, every field, no checks) or strict. GET shows each
 * corp's mode.
 */
static void
ctl_leaky(struct server *s, struct call *k)
{
    static const char *const keys[] = {"corpid", "leaky", NULL};
    const json_t *v;
    json_t *o;
    long corp = -1, i;

    if (k->method == EVHTTP_REQ_GET) {
        o = json_object();
        for (i = 0; o != NULL && i < s->ncorps; i++)
            if (json_object_set_new(
                    o, fixture_corp_id(s->corps[i]),
                    json_boolean(!fixture_corp_is_strict(s->corps[i]))) != 0) {
                json_decref(o);
                o = NULL;
            }
        k->errcode = 0;
        reply_json(k, o ? json_pack("{s:i,s:s,s:o}", "errcode", 0, "errmsg",
                                    "ok", "leaky", o)
                        : NULL);
        return;
    }
    if (control_body(k, keys))
        return;
    v = json_object_get(k->json, "leaky");
    if (json_object_get(k->json, "corpid") != NULL &&
        (corp = corp_find(s, jstr(k->json, "corpid"))) < 0) {
        reply_mock_err(k, 400, "unknown corpid");
        return;
    }
    if (!json_is_boolean(v)) {
        reply_mock_err(k, 400, "leaky must be true or false");
        return;
    }
    for (i = 0; i < s->ncorps; i++)
        if (corp < 0 || corp == i)
            fixture_corp_set_strict(s->corps[i], !json_is_true(v));
    reply_ok(k);
}

/* POST {"ms":N}: latency added to every API reply (0..60000); GET shows
 * it. */
static void
ctl_latency(struct server *s, struct call *k)
{
    static const char *const keys[] = {"ms", NULL};
    const json_t *v;

    if (k->method == EVHTTP_REQ_GET) {
        k->errcode = 0;
        reply_json(k, json_pack("{s:i,s:s,s:I}", "errcode", 0, "errmsg", "ok",
                                "ms", (json_int_t)s->latency_ms));
        return;
    }
    if (control_body(k, keys))
        return;
    v = json_object_get(k->json, "ms");
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > MAX_DELAY_MS) {
        reply_mock_err(k, 400, "ms must be an integer in 0..60000");
        return;
    }
    s->latency_ms = (long)json_integer_value(v);
    reply_ok(k);
}

/* A control body {"shape": one or other}: *is_other set (0 for one, 1 for
 * other) and 0, or -1 after a 400 naming both. */
static int
shape_switch(struct call *k, const char *one, const char *other, int *is_other)
{
    static const char *const keys[] = {"shape", NULL};
    const char *shape;
    char msg[96];

    if (control_body(k, keys))
        return -1;
    shape = jstr(k->json, "shape");
    if (shape == NULL ||
        (strcmp(shape, one) != 0 && strcmp(shape, other) != 0)) {
        snprintf(msg, sizeof(msg), "shape is %s or %s", one, other);
        reply_mock_err(k, 400, msg);
        return -1;
    }
    *is_other = strcmp(shape, other) == 0;
    return 0;
}

/* POST {"shape":"open_userid"|"userid"}: the key of list_member_auth's
 * rows, whose shape WeCom's documents leave unconfirmed. */
static void
ctl_member_auth_shape(struct server *s, struct call *k)
{
    if (shape_switch(k, "open_userid", "userid", &s->member_auth_userid) == 0)
        reply_ok(k);
}

static void
ctl_cancel(struct server *s, struct call *k)
{
    static const char *const keys[] = {"suite_id", "corpid", NULL};
    char **perm;
    int suite;
    long corp;

    if (control_body(k, keys))
        return;
    suite = suite_find(s, jstr(k->json, "suite_id"));
    corp = corp_find(s, jstr(k->json, "corpid"));
    if (suite < 0 || corp < 0) {
        reply_mock_err(k, 400, "unknown suite_id or corpid");
        return;
    }
    perm = perm_slot(s, suite, corp);
    brk_free_secret_str(*perm);
    *perm = NULL;
    /* a cancelled installation's corp tokens stop working too */
    tokens_revoke(s, TOK_CORP, suite, corp);
    reply_ok(k);
}

/* Mint a WelcomeCode as WeCom pushes one with add_external_contact:
 * {"corpid"} -> {"welcome_code"}, valid 20 s, once. */
static void
ctl_welcome_code(struct server *s, struct call *k)
{
    static const char *const keys[] = {"corpid", NULL};
    char code[80];
    long corp;

    if (control_body(k, keys))
        return;
    corp = corp_find(s, jstr(k->json, "corpid"));
    if (corp < 0) {
        reply_mock_err(k, 400, "unknown corpid");
        return;
    }
    if (mock_write_welcome_code(s->writes, corp, code, sizeof(code))) {
        reply_mock_err(k, 500, "no code");
        return;
    }
    reply_json(k, json_pack("{s:s}", "welcome_code", code));
}

static void
ctl_requests(struct server *s, struct call *k)
{
    const char *path = query_get(k->q, "path");
    json_t *a;
    size_t i;

    if (k->method == EVHTTP_REQ_DELETE) {
        while (s->log_len > 0)
            log_drop_oldest(s);
        reply_ok(k);
        return;
    }
    if (k->method != EVHTTP_REQ_GET) {
        reply_mock_err(k, 405, "use GET or DELETE");
        return;
    }
    a = json_array();
    for (i = 0; a != NULL && i < s->log_len; i++) {
        const struct logged *l = &s->logged[(s->log_head + i) % MAX_LOGGED];

        if (path != NULL && strcmp(path, l->path) != 0)
            continue;
        if (json_array_append_new(
                a, json_pack("{s:s,s:s,s:s,s:O?,s:I}", "method", l->method,
                             "path", l->path, "query", l->query, "body",
                             l->body, "ts_ms", (json_int_t)l->ts_ms)) != 0) {
            json_decref(a);
            a = NULL;
        }
    }
    reply_json(k, a);
}

static void
ctl_corps(struct server *s, struct call *k)
{
    json_t *a = json_array();
    long i;

    for (i = 0; a != NULL && i < s->ncorps; i++)
        if (json_array_append_new(
                a,
                json_pack("{s:s,s:s}", "corpid", fixture_corp_id(s->corps[i]),
                          "corp_name", fixture_corp_name(s->corps[i]))) != 0) {
            json_decref(a);
            a = NULL;
        }
    reply_json(k, a);
}

/* A corp token minted directly, so a demo or a benchmark can read what
 * WeCom itself would return (GET ?suite_id&corpid). */
static void
ctl_corp_token(struct server *s, struct call *k)
{
    int suite = suite_find(s, query_get(k->q, "suite_id"));
    long corp = corp_find(s, query_get(k->q, "corpid"));
    const struct token *t;

    if (k->method != EVHTTP_REQ_GET) {
        reply_mock_err(k, 405, "use GET");
        return;
    }
    if (suite < 0 || corp < 0) {
        reply_mock_err(k, 400, "unknown suite_id or corpid");
        return;
    }
    t = token_mint(s, TOK_CORP, suite, corp, s->lifetime);
    if (t == NULL) {
        reply_mock_err(k, 500, "no token");
        return;
    }
    k->errcode = 0;
    if (dynbuf_printf(&k->out, "{\"access_token\":\"%s\",\"expires_in\":%ld}",
                      t->s, s->lifetime))
        k->status = 500;
}

/* POST {"corpid"}: the corp whose admin approves on the install page;
 * {} goes back to the first corp. */
static void
ctl_oauth_corp(struct server *s, struct call *k)
{
    static const char *const keys[] = {"corpid", NULL};
    const char *corpid;
    long corp = 0;

    if (control_body(k, keys))
        return;
    corpid = jstr(k->json, "corpid");
    if (json_object_get(k->json, "corpid") != NULL &&
        (corp = corp_find(s, corpid)) < 0) {
        reply_mock_err(k, 400, "unknown corpid");
        return;
    }
    s->install_corp = corp;
    reply_ok(k);
}

/* An openid: 1..OPENID_MAX of [A-Za-z0-9_-]. */
static int
openid_ok(const char *v)
{
    size_t i;

    if (v == NULL || *v == '\0')
        return 0;
    for (i = 0; v[i] != '\0'; i++)
        if (i == OPENID_MAX ||
            !((v[i] >= 'A' && v[i] <= 'Z') || (v[i] >= 'a' && v[i] <= 'z') ||
              (v[i] >= '0' && v[i] <= '9') || v[i] == '_' || v[i] == '-'))
            return 0;
    return 1;
}

/* POST {"corpid","userid"} (a member) or {"openid"} (a non-member): who
 * logs in on the authorize page; {} goes back to the first member of the
 * first corp. */
static void
ctl_oauth_user(struct server *s, struct call *k)
{
    static const char *const keys[] = {"corpid", "userid", "openid", NULL};
    const char *corpid, *userid, *openid;
    long corp = 0, member = 0;

    if (control_body(k, keys))
        return;
    corpid = jstr(k->json, "corpid");
    userid = jstr(k->json, "userid");
    openid = jstr(k->json, "openid");
    if (json_object_get(k->json, "openid") != NULL) {
        if (json_object_size(k->json) != 1 || !openid_ok(openid)) {
            reply_mock_err(k, 400, "openid alone, 1..64 of [A-Za-z0-9_-]");
            return;
        }
        s->user_corp = -1;
        s->user_member = -1;
        memcpy(s->user_openid, openid, strlen(openid) + 1);
        reply_ok(k);
        return;
    }
    if (json_object_size(k->json) != 0) {
        corp = corp_find(s, corpid);
        member = corp < 0 || userid == NULL
                     ? -1
                     : fixture_member_index(s->corps[corp], userid);
        if (member < 0) {
            reply_mock_err(k, 400, "want a known corpid and userid");
            return;
        }
    }
    s->user_corp = corp;
    s->user_member = member;
    s->user_openid[0] = '\0';
    reply_ok(k);
}

/* POST {"shape":"old"|"new"}: how the new getuserinfo3rd path answers. */
static void
ctl_oauth_shape(struct server *s, struct call *k)
{
    int is_new;

    if (shape_switch(k, "old", "new", &is_new) == 0) {
        s->old_shape = !is_new;
        reply_ok(k);
    }
}

/* GET ?pre_auth_code=C: its suite and the auth_type set_session_info
 * recorded (null when it was not called). */
static void
ctl_pre_auth_code(struct server *s, struct call *k)
{
    const char *code = query_get(k->q, "pre_auth_code");
    const struct token *t = code ? token_find(s, TOK_PRE_AUTH, code) : NULL;

    if (k->method != EVHTTP_REQ_GET) {
        reply_mock_err(k, 405, "use GET");
        return;
    }
    if (t == NULL) {
        reply_mock_err(k, 404, "unknown pre_auth_code");
        return;
    }
    k->errcode = 0;
    reply_json(k, json_pack("{s:i,s:s,s:s,s:o}", "errcode", 0, "errmsg", "ok",
                            "suite_id", s->suites[t->suite].id, "auth_type",
                            t->auth_type < 0 ? json_null()
                                             : json_integer(t->auth_type)));
}

static const struct {
    const char *path;
    void (*fn)(struct server *, struct call *);
} controls[] = {
    {"/__mock/corp_token", ctl_corp_token},
    {"/__mock/suite_ticket", ctl_suite_ticket},
    {"/__mock/install", ctl_install},
    {"/__mock/faults", ctl_faults},
    {"/__mock/invalidate", ctl_invalidate},
    {"/__mock/privilege", ctl_privilege},
    {"/__mock/permissions", ctl_permissions},
    {"/__mock/auth_mode", ctl_auth_mode},
    {"/__mock/app_tags", ctl_app_tags},
    {"/__mock/admins", ctl_admins},
    {"/__mock/leaky", ctl_leaky},
    {"/__mock/latency", ctl_latency},
    {"/__mock/member_auth_shape", ctl_member_auth_shape},
    {"/__mock/cancel", ctl_cancel},
    {"/__mock/requests", ctl_requests},
    {"/__mock/corps", ctl_corps},
    {"/__mock/oauth_corp", ctl_oauth_corp},
    {"/__mock/oauth_user", ctl_oauth_user},
    {"/__mock/oauth_shape", ctl_oauth_shape},
    {"/__mock/pre_auth_code", ctl_pre_auth_code},
    {"/__mock/welcome_code", ctl_welcome_code},
};

static void
control(struct server *s, struct call *k)
{
    size_t i;

    if (query_parse(k->rawq, MAX_QUERY_PARAM, &k->q) != BRK_OK) {
        reply_mock_err(k, 400, "malformed query");
        return;
    }
    for (i = 0; i < nitems(controls); i++)
        if (strcmp(controls[i].path, k->path) == 0) {
            controls[i].fn(s, k);
            return;
        }
    reply_mock_err(k, 404, "unknown path");
}

/*---- Sending ------------------------------------------------------------*/

static void
send_now(struct evhttp_request *req, int status, const char *ctype,
         const char *body, size_t len)
{
    struct evbuffer *b = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      ctype);
    if (b == NULL || (len > 0 && evbuffer_add(b, body, len) != 0)) {
        evhttp_send_error(req, 500, NULL);
    } else {
        evhttp_send_reply(req, status, NULL, b);
    }
    if (b != NULL)
        evbuffer_free(b);
}

static void
pending_free(struct pending *p)
{
    if (p == NULL)
        return;
    if (p->timer != NULL)
        event_free(p->timer);
    brk_free(p->body);
    brk_free(p);
}

/*
 * The connection is going away with our reply still pending. A request
 * being streamed was detached by evhttp on a write error and is ours to
 * free (evhttp_send_reply_end does that); otherwise evhttp frees it with
 * the connection.
 */
static void
on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    struct pending *p = arg;

    (void)evcon;
    if (p->streaming && evhttp_request_get_connection(p->req) == NULL)
        evhttp_send_reply_end(p->req);
    pending_free(p);
}

static void
huge_next(struct evhttp_connection *evcon, void *arg)
{
    static const char head[] = "{\"errcode\":0,\"errmsg\":\"ok\","
                               "\"mock_internal_note\":\"huge reply\","
                               "\"userlist\":[";
    struct pending *p = arg;
    struct evbuffer *b;
    char pad[201];

    if (p->last_sent) {
        evhttp_connection_set_closecb(evcon, NULL, NULL);
        evhttp_send_reply_end(p->req);
        pending_free(p);
        return;
    }
    b = evbuffer_new();
    if (b == NULL)
        return;
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    if (p->seq == 0)
        evbuffer_add(b, head, sizeof(head) - 1);
    while (evbuffer_get_length(b) < HUGE_CHUNK && p->sent < HUGE_BYTES) {
        int n =
            evbuffer_add_printf(b, "%s{\"userid\":\"h%08ld\",\"name\":\"%s\"}",
                                p->seq ? "," : "", p->seq, pad);

        if (n < 0)
            break;
        p->seq++;
        p->sent += n;
    }
    if (p->sent >= HUGE_BYTES) {
        evbuffer_add(b, "]}", 2);
        p->last_sent = 1;
    }
    evhttp_send_reply_chunk_with_cb(p->req, b, huge_next, p);
    evbuffer_free(b);
}

static void
deliver(struct pending *p)
{
    if (p->timer != NULL) {
        event_free(p->timer);
        p->timer = NULL;
    }
    if (p->drop) {
        struct bufferevent *bev = evhttp_connection_get_bufferevent(p->evcon);

        /* close without a reply: the client sees the connection end; the
         * write evhttp then attempts fails and it frees the connection */
        evhttp_connection_set_closecb(p->evcon, NULL, NULL);
        shutdown(bufferevent_getfd(bev), SHUT_RDWR);
        evhttp_send_reply(p->req, 500, NULL, NULL);
        pending_free(p);
        return;
    }
    if (p->huge) {
        p->streaming = 1;
        evhttp_add_header(evhttp_request_get_output_headers(p->req),
                          "Content-Type", "application/json");
        evhttp_send_reply_start(p->req, p->status, NULL);
        huge_next(p->evcon, p);
        return;
    }
    evhttp_connection_set_closecb(p->evcon, NULL, NULL);
    send_now(p->req, p->status, p->ctype, p->body, p->len);
    pending_free(p);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    deliver(arg);
}

static void
log_line(const struct server *s, const struct call *k, const struct fault *f)
{
    char path[128];
    size_t i;

    if (s->quiet)
        return;
    /* the path comes from the client: keep the line one printable line */
    for (i = 0; i < sizeof(path) - 1 && k->path[i] != '\0'; i++)
        path[i] = (unsigned char)k->path[i] < 0x20 || k->path[i] == 0x7f
                      ? '?'
                      : k->path[i];
    path[i] = '\0';
    if (k->errcode == -9999)
        fprintf(stderr, "mock-wecom: %s %s %d\n", method_name(k->method), path,
                k->status);
    else
        fprintf(stderr, "mock-wecom: %s %s %d errcode=%ld%s%s%s\n",
                method_name(k->method), path, k->status, k->errcode,
                f != NULL ? " (fault" : "",
                f != NULL && f->drop_reply ? ": reply dropped" : "",
                f != NULL ? ")" : "");
}

/*
 * Send the reply: now, or after the fault's delay plus latency_ms on an
 * evtimer (the loop keeps serving meanwhile), dropped or streamed as the
 * fault f (may be NULL) says.
 */
static void
finish(struct server *s, struct call *k, const struct fault *f, long latency_ms)
{
    long delay_ms = (f != NULL ? f->delay_ms : 0) + latency_ms;
    struct pending *p = NULL;
    struct timeval tv;

    if (k->status >= 500 && k->out.buf == NULL)
        k->ctype = "text/plain";
    log_line(s, k, f);
    if (delay_ms == 0 &&
        (f == NULL || (!f->drop_reply && f->body != FB_HUGE))) {
        send_now(k->req, k->status, k->ctype, k->out.buf, k->out.len);
        return;
    }
    p = brk_calloc(1, sizeof(*p));
    if (p == NULL || dynbuf_take(&k->out, &p->body, &p->len) != BRK_OK) {
        brk_free(p);
        evhttp_send_error(k->req, 500, NULL);
        return;
    }
    p->req = k->req;
    p->evcon = evhttp_request_get_connection(k->req);
    p->status = k->status;
    p->ctype = k->ctype;
    p->drop = f != NULL && f->drop_reply;
    p->huge = f != NULL && f->body == FB_HUGE;
    evhttp_connection_set_closecb(p->evcon, on_conn_close, p);
    if (delay_ms == 0) {
        deliver(p);
        return;
    }
    p->timer = evtimer_new(s->base, on_timer, p);
    tv.tv_sec = delay_ms / 1000;
    tv.tv_usec = (delay_ms % 1000) * 1000;
    if (p->timer == NULL || evtimer_add(p->timer, &tv) != 0)
        deliver(p);
}

/* A fault that replaces the reply: the call itself does not run. */
static void
fault_reply(struct call *k, const struct fault *f)
{
    static const char malformed[] =
        "{\"errcode\":0,\"errmsg\":\"ok\",\"userlist\":[{\"userid\":"
        "\"u00001\",\"name\":";
    static const char nonjson[] = "<html><head><title>502 Bad Gateway</title>"
                                  "</head><body>bad gateway</body></html>\n";

    switch (f->body) {
    case FB_MALFORMED:
        k->errcode = 0;
        if (dynbuf_add(&k->out, malformed, sizeof(malformed) - 1))
            k->status = 500;
        return;
    case FB_NONJSON:
        k->errcode = -1;
        k->ctype = "text/html";
        if (dynbuf_add(&k->out, nonjson, sizeof(nonjson) - 1))
            k->status = 500;
        return;
    case FB_EMPTY:
    case FB_HUGE:
        k->errcode = 0;
        return;
    default:
        reply_err(k, f->errcode);
    }
}

static void
on_request(struct evhttp_request *req, void *arg)
{
    struct server *s = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    struct fault f;
    struct call k;
    int faulted;

    memset(&k, 0, sizeof(k));
    k.req = req;
    k.method = evhttp_request_get_command(req);
    k.path = uri ? evhttp_uri_get_path(uri) : NULL;
    if (k.path == NULL || k.path[0] == '\0')
        k.path = "/";
    k.rawq = uri ? evhttp_uri_get_query(uri) : NULL;
    k.blen = evbuffer_get_length(in);
    k.body = k.blen ? (const char *)evbuffer_pullup(in, -1) : NULL;
    k.status = 200;
    k.errcode = -9999;
    k.suite = -1;
    k.corp = -1;
    k.ctype = "application/json";
    dynbuf_init(&k.out, REPLY_LIMIT);
    if (strncmp(k.path, "/__mock/", 8) == 0) {
        control(s, &k);
        finish(s, &k, NULL, 0);
        goto out;
    }
    record(s, &k);
    faulted = fault_take(s, k.path, &f);
    if (faulted && (f.has_errcode || f.body != FB_NONE))
        fault_reply(&k, &f);
    else
        api(s, &k);
    if (faulted && f.status != 0)
        k.status = f.status;
    finish(s, &k, faulted ? &f : NULL, s->latency_ms);
out:
    dynbuf_free(&k.out);
    query_free(k.q);
    json_decref(k.json);
}

/*---- Startup ------------------------------------------------------------*/

static void
usage(FILE *f)
{
    fprintf(
        f,
        "usage: mock-wecom serve [--listen HOST:PORT] [--port-file FILE]\n"
        "                        [-c BROKER_CONF] [--suite ID:SECRET]...\n"
        "                        [--seed N] [--corps N] [--departments N]\n"
        "                        [--members N] [--tags N] [--customers N]\n"
        "                        [--chats N] [--token-lifetime SECONDS]\n"
        "                        [--ticket-lifetime SECONDS] [--leaky]\n"
        "                        [--latency MS] [--quiet]\n"
        "                        [--members-spread MIN:MAX]\n"
        "                        [--big-corp MEMBERS:DEPARTMENTS] "
        "[--range-all]\n"
        "\n"
        "Simulates WeCom's server API for third-party apps over generated\n"
        "enterprises (corpids wwmockcorp0001...), deterministic from the\n"
        "seed. Point the broker's wecom_api_base at it.\n"
        "\n"
        "Strict by default: each corp holds a third-party app's grant\n"
        "(default: level 1 with contact:base:base and externalcontact:\n"
        "base:base; allow_party [2], allow_user [u00003], allow_tag [1];\n"
        "auth_mode 0; no app-created tags; admin u00001) and each API\n"
        "refuses what WeCom refuses (48002 without the permission, 60011\n"
        "outside the range) and answers in the third-party shapes.\n"
        "--leaky instead returns every record with every field and checks\n"
        "nothing (it does not apply the range), for the broker's own\n"
        "defences. Every reply carries a \"mock_internal_note\" no scope\n"
        "declares.\n"
        "\n"
        "  --listen HOST:PORT      default " LISTEN_DEFAULT
        "; port 0 picks one\n"
        "  --port-file FILE        write the bound port there once listening\n"
        "  -c FILE                 take suite ids and secrets from a broker\n"
        "                          configuration\n"
        "  --suite ID:SECRET       a suite (repeatable)\n"
        "  --seed N                generator seed (default 1)\n"
        "  --corps N               number of corps (default 1)\n"
        "  --departments N, --members N, --tags N, --customers N, --chats N\n"
        "                          sizes per corp (default 12, 40, 4, 20, 5)\n"
        "  --token-lifetime S      suite and corp token lifetime (default "
        "7200)\n"
        "  --ticket-lifetime S     OAuth user_ticket lifetime (default 1800)\n"
        "  --leaky                 every corp leaky (see /__mock/leaky)\n"
        "  --latency MS            add MS to every API reply (0..60000)\n"
        "  --quiet                 no per-request log lines on stderr\n"
        "  --members-spread MIN:MAX  each corp's member count drawn from\n"
        "                          the seed in MIN..MAX, with one department\n"
        "                          per 15 members (at least 3)\n"
        "  --big-corp M:D          one more corp, the last, of M members\n"
        "                          in D departments\n"
        "  --range-all             every corp's visible range is the whole\n"
        "                          corp (allow_party [1])\n"
        "\n"
        "Control endpoints:\n"
        "  GET  /__mock/corp_token?suite_id=ID&corpid=C  a corp token (to\n"
        "       read what WeCom itself returns)\n"
        "  GET  /__mock/suite_ticket?suite_id=ID  a fresh ticket (last 5 "
        "valid)\n"
        "  POST /__mock/install {suite_id,corpid[,state]}  -> {auth_code}\n"
        "  POST /__mock/faults {path,count,delay_ms,status,errcode,\n"
        "       body:malformed|nonjson|huge|empty,drop_reply}; GET lists,\n"
        "       DELETE clears. errcode and body replace the reply (the call\n"
        "       has no effect); drop_reply runs the call, then closes the\n"
        "       connection without replying\n"
        "  POST /__mock/invalidate {corpid} or {suite_id}  revoke tokens\n"
        "  POST /__mock/privilege {corpid,allow_party,allow_user,allow_tag,\n"
        "       extra_*[,level]}  absent lists are empty; level 1|3|4 also\n"
        "       sets contact:base:base|contact:edit:all|contact:base:\n"
        "       single_user, absent keeps the level\n"
        "  POST /__mock/permissions {corpid,app_permissions[,expire_time]}\n"
        "       the level follows the contact:* permission given\n"
        "  POST /__mock/auth_mode {corpid,auth_mode:0|1[,members]}  member\n"
        "       authorization: the members who authorized are the range\n"
        "  POST /__mock/app_tags {corpid,tagids}  tags the app created\n"
        "  POST /__mock/admins {corpid,admins:[{userid,auth_type}]}\n"
        "  POST /__mock/leaky {leaky:true|false[,corpid]}  every corp or\n"
        "       one; GET shows each corp's mode\n"
        "  POST /__mock/latency {ms}  added to every API reply; GET shows it\n"
        "  POST /__mock/member_auth_shape {shape:open_userid|userid}  the\n"
        "       key of user/list_member_auth's rows\n"
        "  POST /__mock/cancel {suite_id,corpid}  revoke the permanent code\n"
        "  GET  /__mock/requests[?path=P]  API requests received (tokens\n"
        "       masked); DELETE clears\n"
        "  GET  /__mock/corps\n"
        "  POST /__mock/oauth_corp {corpid}  who approves on the install page\n"
        "       ({} = the first corp)\n"
        "  POST /__mock/oauth_user {corpid,userid} or {openid}  who logs in\n"
        "       on the authorize page ({} = the first member of the first "
        "corp)\n"
        "  POST /__mock/oauth_shape {shape:old|new}  old: the new\n"
        "       getuserinfo3rd path answers with the old capitalised keys\n"
        "  GET  /__mock/pre_auth_code?pre_auth_code=C  its suite and the\n"
        "       auth_type set_session_info recorded\n"
        "  POST /__mock/welcome_code {corpid}  mint a WelcomeCode (20 s,\n"
        "       once) as WeCom pushes one with add_external_contact\n"
        "\n"
        "Browser pages (GET; 302 to redirect_uri, 400 when refused):\n"
        "  /3rdapp/install?suite_id&pre_auth_code&redirect_uri&state\n"
        "       -> redirect_uri?auth_code=C&expires_in=600&state=S\n"
        "  /connect/oauth2/authorize?appid&redirect_uri&response_type=code&\n"
        "       scope=snsapi_base|snsapi_privateinfo&state\n"
        "       -> redirect_uri?code=C&state=S (single use, 5 minutes)\n"
        "  The codes are redeemed by get_permanent_code and by\n"
        "  service/auth/getuserinfo3rd (or the old service/getuserinfo3rd);\n"
        "  getuserdetail3rd takes the user_ticket of snsapi_privateinfo.\n"
        "\n"
        "Runs until SIGTERM or SIGINT.\n");
}

static int
add_suite(struct server *s, const char *id, size_t idlen, const char *secret)
{
    char *copy;

    if (idlen == 0 || idlen > CONFIG_MAX_ID || *secret == '\0') {
        fprintf(stderr, "mock-wecom: --suite wants ID:SECRET\n");
        return -1;
    }
    if (s->nsuites == MAX_SUITES) {
        fprintf(stderr, "mock-wecom: at most %d suites\n", MAX_SUITES);
        return -1;
    }
    copy = brk_strndup(id, idlen);
    if (copy == NULL)
        return -1;
    if (suite_find(s, copy) >= 0) {
        fprintf(stderr, "mock-wecom: suite %s given twice\n", copy);
        brk_free(copy);
        return -1;
    }
    s->suites[s->nsuites].id = copy;
    s->suites[s->nsuites].secret = brk_strdup(secret);
    if (s->suites[s->nsuites].secret == NULL) {
        brk_free(copy);
        return -1;
    }
    s->nsuites++;
    return 0;
}

static int
load_conf_suites(struct server *s, const char *path)
{
    struct brk_errinfo info = {"", 0, -1};
    struct config *cfg = NULL;
    char msg[512];
    size_t i;
    int rc = 0;

    if (config_load(path, &cfg, &info) != BRK_OK) {
        config_format_error(path, &info, msg, sizeof(msg));
        fprintf(stderr, "mock-wecom: %s\n", msg);
        return -1;
    }
    for (i = 0; i < cfg->nsuites && rc == 0; i++)
        rc = add_suite(s, cfg->suites[i].suite_id,
                       strlen(cfg->suites[i].suite_id), cfg->suites[i].secret);
    config_free(cfg);
    return rc;
}

/* Split HOST:PORT ([v6]:PORT allowed) into host (owned) and port. */
static int
split_listen(const char *hp, char **host, int *port)
{
    const char *colon = strrchr(hp, ':');
    const char *h = hp;
    size_t hl;
    long p;

    if (colon == NULL || parse_long(colon + 1, 0, 65535, &p) != 0)
        return -1;
    hl = (size_t)(colon - hp);
    if (hl >= 2 && hp[0] == '[' && hp[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0)
        return -1;
    *host = brk_strndup(h, hl);
    if (*host == NULL)
        return -1;
    *port = (int)p;
    return 0;
}

static int
bound_port(struct evhttp_bound_socket *bs)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss,
                    &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

/* Write the port to path atomically (write a temp file, rename). */
static int
write_port_file(const char *path, int port)
{
    char tmp[4096];
    FILE *f;
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);

    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -1;
    f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

/* Populations for the scale bench, on top of --corps' uniform ones. */
struct scale_opts {
    long spread_min, spread_max;       /* members per corp; 0: --members */
    long big_members, big_departments; /* one more corp; 0: none */
    int range_all;                     /* each range the whole corp */
};

struct opts {
    const char *listen, *port_file;
    uint64_t seed;
    long corps;
    struct fixture_sizes sz;
    int leaky;
    struct scale_opts scale;
};

static int
parse_size(const char *name, const char *v, long min, long max, long *out)
{
    if (parse_long(v, min, max, out) != 0) {
        fprintf(stderr, "mock-wecom: --%s wants a number in %ld..%ld\n", name,
                min, max);
        return -1;
    }
    return 0;
}

/*---- Populations for the scale bench ------------------------------------*/

/* "A:B" with A in amin..amax and B in bmin..bmax. */
static int
scale_parse_pair(const char *name, const char *v, long amin, long amax,
                 long bmin, long bmax, long *a, long *b)
{
    const char *colon = strchr(v, ':');
    char first[32];
    size_t n = colon ? (size_t)(colon - v) : 0;

    if (colon == NULL || n == 0 || n >= sizeof(first)) {
        fprintf(stderr, "mock-wecom: --%s wants A:B\n", name);
        return -1;
    }
    memcpy(first, v, n);
    first[n] = '\0';
    return parse_size(name, first, amin, amax, a) != 0 ||
                   parse_size(name, colon + 1, bmin, bmax, b) != 0
               ? -1
               : 0;
}

/* --members-spread MIN:MAX */
static int
scale_parse_spread(struct scale_opts *sc, const char *v)
{
    if (scale_parse_pair("members-spread", v, 3, FIXTURE_MAX_MEMBERS, 3,
                         FIXTURE_MAX_MEMBERS, &sc->spread_min,
                         &sc->spread_max) != 0)
        return -1;
    if (sc->spread_min > sc->spread_max) {
        fprintf(stderr, "mock-wecom: --members-spread wants MIN <= MAX\n");
        return -1;
    }
    return 0;
}

/* --big-corp MEMBERS:DEPARTMENTS */
static int
scale_parse_big(struct scale_opts *sc, const char *v)
{
    return scale_parse_pair("big-corp", v, 3, FIXTURE_MAX_MEMBERS, 3,
                            FIXTURE_MAX_DEPARTMENTS, &sc->big_members,
                            &sc->big_departments);
}

/* Corps to generate: --corps, and the big one after them. */
static long
scale_ncorps(const struct opts *o)
{
    return o->corps + (o->scale.big_members > 0);
}

/* A stable draw in 0..n-1 from (seed, index): splitmix64's finaliser. */
static long
scale_draw(uint64_t seed, long index, long n)
{
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + (uint64_t)index;

    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (long)(x % (uint64_t)n);
}

/* The sizes of corp index (1-based): the big corp last; with a spread, a
 * member count drawn from MIN..MAX and one department per 15 members (at
 * least 3); otherwise --members and --departments. */
static void
scale_corp_sizes(const struct opts *o, long index, struct fixture_sizes *sz)
{
    const struct scale_opts *sc = &o->scale;

    *sz = o->sz;
    if (sc->big_members > 0 && index == o->corps + 1) {
        sz->members = sc->big_members;
        sz->departments = sc->big_departments;
    } else if (sc->spread_max > 0) {
        sz->members =
            sc->spread_min +
            scale_draw(o->seed, index, sc->spread_max - sc->spread_min + 1);
        sz->departments = sz->members / 15 < 3 ? 3 : sz->members / 15;
    }
}

/* Corp index (1-based) as the options ask: its sizes, strict or leaky,
 * and with --range-all the whole corp in range (allow_party [1]). */
static enum brk_err
scale_corp_new(const struct opts *o, long index, struct fixture_corp **out)
{
    long root = 1; /* set_privilege copies it */
    struct fixture_sizes sz;
    struct fixture_privilege p;
    struct fixture_corp *c = NULL;
    enum brk_err err;

    scale_corp_sizes(o, index, &sz);
    err = fixture_corp_new(o->seed, index, &sz, &c);
    if (err)
        return err;
    fixture_corp_set_strict(c, !o->leaky);
    if (o->scale.range_all) {
        memset(&p, 0, sizeof(p));
        p.level = fixture_corp_privilege(c)->level;
        p.allow_party = &root;
        p.nallow_party = 1;
        err = fixture_corp_set_privilege(c, &p);
        if (err) {
            fixture_corp_free(c);
            return err;
        }
    }
    *out = c;
    return BRK_OK;
}

static int
parse_opts(struct server *s, struct opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"port-file", required_argument, NULL, 'P'},
        {"suite", required_argument, NULL, 's'},
        {"seed", required_argument, NULL, 'S'},
        {"corps", required_argument, NULL, 'C'},
        {"departments", required_argument, NULL, 'D'},
        {"members", required_argument, NULL, 'M'},
        {"tags", required_argument, NULL, 'T'},
        {"customers", required_argument, NULL, 'E'},
        {"chats", required_argument, NULL, 'G'},
        {"token-lifetime", required_argument, NULL, 'L'},
        {"ticket-lifetime", required_argument, NULL, 'U'},
        {"leaky", no_argument, NULL, 'K'},
        {"latency", required_argument, NULL, 'A'},
        {"quiet", no_argument, NULL, 'q'},
        {"members-spread", required_argument, NULL, 'm'},
        {"big-corp", required_argument, NULL, 'B'},
        {"range-all", no_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *colon;
    char *end;
    int ch, rc = 0;

    optind = 1;
    while (rc == 0 &&
           (ch = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'l':
            o->listen = optarg;
            break;
        case 'P':
            o->port_file = optarg;
            break;
        case 'c':
            rc = load_conf_suites(s, optarg);
            break;
        case 's':
            colon = strchr(optarg, ':');
            rc = colon
                     ? add_suite(s, optarg, (size_t)(colon - optarg), colon + 1)
                     : add_suite(s, optarg, 0, "");
            break;
        case 'S':
            errno = 0;
            o->seed = strtoull(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || optarg[0] == '\0' ||
                optarg[0] == '-') {
                fprintf(stderr, "mock-wecom: --seed wants a number\n");
                rc = -1;
            }
            break;
        case 'C':
            rc = parse_size("corps", optarg, 1, MAX_CORPS, &o->corps);
            break;
        case 'D':
            rc = parse_size("departments", optarg, 3, FIXTURE_MAX_DEPARTMENTS,
                            &o->sz.departments);
            break;
        case 'M':
            rc = parse_size("members", optarg, 3, FIXTURE_MAX_MEMBERS,
                            &o->sz.members);
            break;
        case 'T':
            rc = parse_size("tags", optarg, 1, FIXTURE_MAX_TAGS, &o->sz.tags);
            break;
        case 'E':
            rc = parse_size("customers", optarg, 0, FIXTURE_MAX_CUSTOMERS,
                            &o->sz.customers);
            break;
        case 'G':
            rc =
                parse_size("chats", optarg, 0, FIXTURE_MAX_CHATS, &o->sz.chats);
            break;
        case 'L':
            rc = parse_size("token-lifetime", optarg, 1, 86400 * 365,
                            &s->lifetime);
            break;
        case 'U':
            rc = parse_size("ticket-lifetime", optarg, 1, 86400 * 365,
                            &s->ticket_lifetime);
            break;
        case 'K':
            o->leaky = 1;
            break;
        case 'A':
            rc = parse_size("latency", optarg, 0, MAX_DELAY_MS, &s->latency_ms);
            break;
        case 'q':
            s->quiet = 1;
            break;
        case 'm':
            rc = scale_parse_spread(&o->scale, optarg);
            break;
        case 'B':
            rc = scale_parse_big(&o->scale, optarg);
            break;
        case 'R':
            o->scale.range_all = 1;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (rc != 0)
        return -1;
    if (optind < argc) {
        fprintf(stderr, "mock-wecom: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    if (s->nsuites == 0) {
        fprintf(stderr, "mock-wecom: give at least one --suite ID:SECRET "
                        "(or -c BROKER_CONF)\n");
        return -1;
    }
    return 0;
}

static void
server_free(struct server *s)
{
    long i;
    int j;

    for (i = 0; s->corps != NULL && i < s->ncorps; i++)
        fixture_corp_free(s->corps[i]);
    brk_free(s->corps);
    for (i = 0; s->perm != NULL && i < s->ncorps * s->nsuites; i++)
        brk_free_secret_str(s->perm[i]);
    brk_free(s->perm);
    mock_writes_free(s->writes);
    for (j = 0; j < s->nsuites; j++) {
        brk_free(s->suites[j].id);
        brk_free_secret_str(s->suites[j].secret);
    }
    while (s->log_len > 0)
        log_drop_oldest(s);
    OPENSSL_cleanse(s->tokens, sizeof(s->tokens));
    OPENSSL_cleanse(s->codes, sizeof(s->codes));
    OPENSSL_cleanse(s->ocodes, sizeof(s->ocodes));
    OPENSSL_cleanse(s->tickets, sizeof(s->tickets));
    brk_free(s);
}

static int
run(struct server *s, const struct opts *o)
{
    struct event *sigs[2] = {NULL, NULL};
    struct evhttp_bound_socket *bs;
    char *host = NULL;
    int port, rc = 1;
    size_t i;

    if (split_listen(o->listen, &host, &port) != 0) {
        fprintf(stderr, "mock-wecom: --listen wants HOST:PORT\n");
        return 2;
    }
    s->base = event_base_new();
    s->http = s->base ? evhttp_new(s->base) : NULL;
    if (s->http == NULL)
        goto out;
    evhttp_set_max_body_size(s->http, MAX_BODY);
    evhttp_set_max_headers_size(s->http, MAX_HEADERS);
    evhttp_set_timeout(s->http, 120);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
                                            EVHTTP_REQ_DELETE);
    evhttp_set_gencb(s->http, on_request, s);
    bs = evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)port);
    if (bs == NULL) {
        fprintf(stderr, "mock-wecom: cannot listen on %s: %s\n", o->listen,
                strerror(errno));
        goto out;
    }
    port = bound_port(bs);
    if (o->port_file != NULL && write_port_file(o->port_file, port) != 0) {
        fprintf(stderr, "mock-wecom: cannot write %s\n", o->port_file);
        goto out;
    }
    sigs[0] = evsignal_new(s->base, SIGTERM, on_signal, s->base);
    sigs[1] = evsignal_new(s->base, SIGINT, on_signal, s->base);
    for (i = 0; i < 2; i++)
        if (sigs[i] == NULL || event_add(sigs[i], NULL) != 0)
            goto out;
    printf("mock-wecom serving on %s%s%s:%d\n", strchr(host, ':') ? "[" : "",
           host, strchr(host, ':') ? "]" : "", port);
    fflush(stdout);
    event_base_dispatch(s->base);
    rc = 0;
out:
    for (i = 0; i < 2; i++)
        if (sigs[i] != NULL)
            event_free(sigs[i]);
    /* frees the connections, and with them any pending reply */
    if (s->http != NULL)
        evhttp_free(s->http);
    if (s->base != NULL)
        event_base_free(s->base);
    brk_free(host);
    return rc;
}

/*
 * Entry point of `mock-wecom serve`. Returns 0 after SIGTERM/SIGINT, 1 on
 * a runtime failure, 2 on usage errors.
 */
int
serve_main(int argc, char **argv)
{
    struct opts o = {LISTEN_DEFAULT, NULL, 1, 1, FIXTURE_SIZES_DEFAULT, 0,
                     {0, 0, 0, 0, 0}};
    struct server *s = NULL;
    struct sigaction sa;
    long i;
    int rc;

    json_set_alloc_funcs(brk_malloc, brk_free);
    s = brk_calloc(1, sizeof(*s));
    if (s == NULL)
        return 1;
    s->lifetime = 7200;
    s->ticket_lifetime = TICKET_TTL_S;
    rc = parse_opts(s, &o, argc, argv);
    if (rc != 0) {
        server_free(s);
        return rc > 0 ? 0 : 2;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    s->ncorps = scale_ncorps(&o);
    s->corps = brk_calloc((size_t)s->ncorps, sizeof(*s->corps));
    s->perm =
        brk_calloc((size_t)s->ncorps * (size_t)s->nsuites, sizeof(*s->perm));
    rc = s->corps == NULL || s->perm == NULL ||
         mock_writes_new(&s->writes) != BRK_OK;
    for (i = 0; rc == 0 && i < s->ncorps; i++)
        rc = scale_corp_new(&o, i + 1, &s->corps[i]) != BRK_OK;
    if (rc != 0) {
        fprintf(stderr, "mock-wecom: cannot generate the corps\n");
        server_free(s);
        return 1;
    }
    rc = run(s, &o);
    server_free(s);
    return rc;
}
