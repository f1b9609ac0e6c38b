/*
 * The client side of `make bench-scale` (scripts/bench-scale.sh): installs
 * many tenants through the real install path and touches each through the
 * service API. Not part of `make test`.
 *
 *   bench_scale install -c CONF --suite ID --mock URL --cb URL
 *                       --redis SOCKET --first N --last M [--window W]
 *       For each corp wwmockcorp<N..M>: the simulator mints an AuthCode
 *       (/__mock/install), create_auth is signed and encrypted as WeCom
 *       does and POSTed to the callback listener; at most W (default 48)
 *       tenants are outstanding (sent, not yet active in Redis). Prints
 *       "BENCH tenants=N failed=F seconds=S p50_ms=A p99_ms=B max_ms=C":
 *       per-tenant time from the callback's POST to status active.
 *
 *   bench_scale touch --int URL --secret SECRET --first N --last M
 *                     [--user USERID]
 *       For each corp: gettoken with the service secret, then one
 *       user/get of USERID (default u00001) through the broker. Prints
 *       "BENCH touched=N ok=K seconds=S".
 *
 * Exit status 0 when every tenant went active (install) or every user/get
 * answered errcode 0 (touch), 1 otherwise, 2 on usage errors.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "config.h"
#include "dynbuf.h"
#include "keys.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#define CORP_FMT          "wwmockcorp%04ld"
#define CORP_MAX          32
#define URL_MAX           2048
#define WINDOW_MAX        1000 /* below the simulator's 1024 live auth codes */
#define POLL_US           10000
#define TENANT_TIMEOUT_MS (10L * 60 * 1000)

struct opts {
    const char *conf, *suite, *mock, *cb, *redis, *intl, *secret, *user;
    long first, last, window;
};

static long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t
collect(char *ptr, size_t size, size_t nmemb, void *arg)
{
    if (dynbuf_add(arg, ptr, size * nmemb) != BRK_OK)
        return 0;
    return size * nmemb;
}

/* One request on the reused handle c (keep-alive); the reply body into
 * *out (owned, NUL-terminated). Returns the HTTP status or -1. */
static long
http(CURL *c, const char *url, const char *body, size_t len, char **out)
{
    struct dynbuf reply;
    long status = -1;

    *out = NULL;
    dynbuf_init(&reply, 1 << 20);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    if (curl_easy_perform(c) == CURLE_OK &&
        dynbuf_add(&reply, "", 1) == BRK_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        *out = reply.buf;
        reply.buf = NULL;
    }
    dynbuf_free(&reply);
    return status;
}

/*---- install ----*/

struct pending {
    long corp;
    long long sent_ms;
};

static int
cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;

    return x < y ? -1 : x > y;
}

/* The AuthCode the simulator mints for corp (owned), or NULL. */
static char *
mint_code(CURL *c, const struct opts *o, const char *corp)
{
    char url[URL_MAX], body[256], *reply = NULL, *code = NULL;
    json_error_t e;
    json_t *j;

    snprintf(url, sizeof(url), "%s/__mock/install", o->mock);
    snprintf(body, sizeof(body), "{\"suite_id\":\"%s\",\"corpid\":\"%s\"}",
             o->suite, corp);
    if (http(c, url, body, strlen(body), &reply) == 200 &&
        (j = json_loads(reply, 0, &e)) != NULL) {
        const char *s = json_string_value(json_object_get(j, "auth_code"));

        code = s ? brk_strdup(s) : NULL;
        json_decref(j);
    }
    if (code == NULL)
        fprintf(stderr, "bench_scale: /__mock/install %s: %s\n", corp,
                reply ? reply : "no reply");
    brk_free(reply);
    return code;
}

/* create_auth for corp, signed and encrypted as WeCom does; 0 when the
 * broker answered `success`. */
static int
send_create_auth(CURL *c, const struct opts *o, const struct wecom_crypto *wc,
                 const char *corp, long seq)
{
    const char *k[] = {"SuiteId", "AuthCode", "InfoType", "TimeStamp", "State"};
    const char *ek[] = {"ToUserName", "Encrypt"};
    const char *v[5], *ev[2];
    char ts[24], nonce[32], sig[WECOM_CRYPTO_SIG_SIZE], url[URL_MAX];
    char *code, *xml = NULL, *enc = NULL, *env = NULL, *reply = NULL;
    size_t len;
    int rc = -1;

    code = mint_code(c, o, corp);
    if (code == NULL)
        return -1;
    snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
    snprintf(nonce, sizeof(nonce), "scale%ld", seq);
    v[0] = o->suite;
    v[1] = code;
    v[2] = "create_auth";
    v[3] = ts;
    v[4] = "";
    if (wecom_xml_build(k, v, 5, &xml, &len) != BRK_OK ||
        wecom_crypto_encrypt(wc, xml, len, o->suite, &enc) != BRK_OK ||
        wecom_crypto_sign(wc, ts, nonce, enc, sig) != BRK_OK)
        goto out;
    ev[0] = o->suite;
    ev[1] = enc;
    if (wecom_xml_build(ek, ev, 2, &env, &len) != BRK_OK)
        goto out;
    snprintf(url, sizeof(url),
             "%s/wecom/suite/%s/callback?msg_signature=%s&timestamp=%s"
             "&nonce=%s",
             o->cb, o->suite, sig, ts, nonce);
    if (http(c, url, env, len, &reply) == 200 && strcmp(reply, "success") == 0)
        rc = 0;
    else
        fprintf(stderr, "bench_scale: create_auth %s: %s\n", corp,
                reply ? reply : "no reply");
out:
    brk_free(code);
    brk_free(xml);
    brk_free(enc);
    brk_free(env);
    brk_free(reply);
    return rc;
}

/* Poll the outstanding tenants once (one pipelined round trip); each that
 * is active leaves p[] and its time goes to done[]. Returns how many
 * remain, or -1 when Redis fails. */
static long
poll_active(redisContext *rc, const struct config *cfg, const struct opts *o,
            struct pending *p, long n, long long *done, long *ndone)
{
    char key[KEYS_MAX], corp[CORP_MAX];
    long i, kept = 0;
    long long t;
    redisReply *r;

    for (i = 0; i < n; i++) {
        snprintf(corp, sizeof(corp), CORP_FMT, p[i].corp);
        if (keys_tenant(key, sizeof(key), cfg->key_prefix, corp, o->suite) ||
            redisAppendCommand(rc, "HGET %s status", key) != REDIS_OK)
            return -1;
    }
    t = now_ms();
    for (i = 0; i < n; i++) {
        if (redisGetReply(rc, (void **)&r) != REDIS_OK)
            return -1;
        if (r->type == REDIS_REPLY_STRING && strcmp(r->str, "active") == 0)
            done[(*ndone)++] = t - p[i].sent_ms;
        else
            p[kept++] = p[i];
        freeReplyObject(r);
    }
    return kept;
}

static int
cmd_install(const struct opts *o)
{
    struct brk_errinfo info = {"", 0, -1};
    struct config *cfg = NULL;
    struct wecom_crypto *wc = NULL;
    redisContext *rc = NULL;
    CURL *c = NULL;
    struct pending *p = NULL;
    long long *done = NULL, t0, last_progress;
    long total = o->last - o->first + 1, next = o->first, npend = 0;
    long ndone = 0, failed = 0;
    const struct suite_conf *sc = NULL;
    char msg[512];
    size_t i;
    int ret = 1;

    if (config_load(o->conf, &cfg, &info) != BRK_OK) {
        config_format_error(o->conf, &info, msg, sizeof(msg));
        fprintf(stderr, "bench_scale: %s\n", msg);
        return 1;
    }
    for (i = 0; i < cfg->nsuites; i++)
        if (strcmp(cfg->suites[i].suite_id, o->suite) == 0)
            sc = &cfg->suites[i];
    if (sc == NULL) {
        fprintf(stderr, "bench_scale: suite %s is not in %s\n", o->suite,
                o->conf);
        goto out;
    }
    if (wecom_crypto_new(sc->token, sc->encoding_aes_key, &wc) != BRK_OK)
        goto out;
    rc = redisConnectUnix(o->redis);
    c = curl_easy_init();
    p = brk_calloc((size_t)o->window, sizeof(*p));
    done = brk_calloc((size_t)total, sizeof(*done));
    if (rc == NULL || rc->err || c == NULL || p == NULL || done == NULL) {
        fprintf(stderr, "bench_scale: cannot connect to Redis at %s\n",
                o->redis);
        goto out;
    }
    t0 = now_ms();
    last_progress = t0;
    while (ndone + failed < total) {
        long before = ndone;

        while (next <= o->last && npend < o->window) {
            char corp[CORP_MAX];

            snprintf(corp, sizeof(corp), CORP_FMT, next);
            p[npend].corp = next;
            p[npend].sent_ms = now_ms();
            if (send_create_auth(c, o, wc, corp, next) == 0)
                npend++;
            else
                failed++;
            next++;
        }
        if (npend == 0)
            continue;
        usleep(POLL_US);
        npend = poll_active(rc, cfg, o, p, npend, done, &ndone);
        if (npend < 0) {
            fprintf(stderr, "bench_scale: Redis: %s\n", rc->errstr);
            goto out;
        }
        if (ndone > before)
            last_progress = now_ms();
        if (now_ms() - last_progress > TENANT_TIMEOUT_MS) {
            fprintf(stderr,
                    "bench_scale: no tenant became active in %ld s; %ld "
                    "outstanding (first wwmockcorp%04ld)\n",
                    TENANT_TIMEOUT_MS / 1000, npend, p[0].corp);
            failed += npend;
            break;
        }
    }
    qsort(done, (size_t)ndone, sizeof(*done), cmp_ll);
    printf(
        "BENCH tenants=%ld failed=%ld seconds=%.1f p50_ms=%lld "
        "p99_ms=%lld max_ms=%lld\n",
        ndone, failed, (double)(now_ms() - t0) / 1000.0,
        ndone ? done[ndone / 2] : 0,
        ndone
            ? done[(ndone * 99) / 100 < ndone ? (ndone * 99) / 100 : ndone - 1]
            : 0,
        ndone ? done[ndone - 1] : 0);
    ret = failed == 0 ? 0 : 1;
out:
    brk_free(p);
    brk_free(done);
    if (c != NULL)
        curl_easy_cleanup(c);
    if (rc != NULL)
        redisFree(rc);
    wecom_crypto_free(wc);
    config_free(cfg);
    return ret;
}

/*---- touch ----*/

/* errcode of a JSON reply, -1 when there is none. */
static long
errcode_of(const char *reply, char *token, size_t cap)
{
    json_error_t e;
    json_t *j = reply ? json_loads(reply, 0, &e) : NULL;
    const json_t *ec = json_object_get(j, "errcode");
    long code = json_is_integer(ec) ? (long)json_integer_value(ec) : -1;
    const char *t = json_string_value(json_object_get(j, "access_token"));

    if (token != NULL && cap > 0) {
        token[0] = '\0';
        if (t != NULL && strlen(t) < cap)
            memcpy(token, t, strlen(t) + 1);
    }
    json_decref(j);
    return code;
}

static int
cmd_touch(const struct opts *o)
{
    CURL *c = curl_easy_init();
    char url[URL_MAX], corp[CORP_MAX], token[256], *reply = NULL;
    long i, ok = 0, n = 0;
    long long t0 = now_ms();

    if (c == NULL)
        return 1;
    for (i = o->first; i <= o->last; i++) {
        snprintf(corp, sizeof(corp), CORP_FMT, i);
        n++;
        snprintf(url, sizeof(url),
                 "%s/cgi-bin/gettoken?corpid=%s&corpsecret=%s", o->intl, corp,
                 o->secret);
        if (http(c, url, NULL, 0, &reply) != 200 ||
            errcode_of(reply, token, sizeof(token)) != 0 || token[0] == '\0') {
            fprintf(stderr, "bench_scale: gettoken %s: %s\n", corp,
                    reply ? reply : "no reply");
            brk_free(reply);
            reply = NULL;
            continue;
        }
        brk_free(reply);
        snprintf(url, sizeof(url),
                 "%s/cgi-bin/user/get?userid=%s&access_token=%s", o->intl,
                 o->user, token);
        if (http(c, url, NULL, 0, &reply) == 200 &&
            errcode_of(reply, NULL, 0) == 0)
            ok++;
        else
            fprintf(stderr, "bench_scale: user/get %s: %.200s\n", corp,
                    reply ? reply : "no reply");
        brk_free(reply);
        reply = NULL;
    }
    curl_easy_cleanup(c);
    printf("BENCH touched=%ld ok=%ld seconds=%.1f\n", n, ok,
           (double)(now_ms() - t0) / 1000.0);
    return ok == n ? 0 : 1;
}

/*---- main ----*/

static int
usage(void)
{
    fprintf(stderr,
            "usage: bench_scale install -c CONF --suite ID --mock URL --cb URL"
            " --redis SOCKET\n"
            "                   --first N --last M [--window W]\n"
            "       bench_scale touch --int URL --secret SECRET --first N "
            "--last M [--user ID]\n");
    return 2;
}

static int
num(const char *v, long min, long max, long *out)
{
    char *end;
    long n = strtol(v, &end, 10);

    if (*v == '\0' || *end != '\0' || n < min || n > max)
        return -1;
    *out = n;
    return 0;
}

int
main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"suite", required_argument, NULL, 's'},
        {"mock", required_argument, NULL, 'm'},
        {"cb", required_argument, NULL, 'b'},
        {"redis", required_argument, NULL, 'r'},
        {"int", required_argument, NULL, 'i'},
        {"secret", required_argument, NULL, 'S'},
        {"user", required_argument, NULL, 'u'},
        {"first", required_argument, NULL, 'f'},
        {"last", required_argument, NULL, 'l'},
        {"window", required_argument, NULL, 'w'},
        {NULL, 0, NULL, 0},
    };
    struct opts o = {NULL, NULL,     NULL, NULL, NULL, NULL,
                     NULL, "u00001", 0,    0,    48};
    const char *cmd;
    int ch, bad = 0, rc;

    if (argc < 2)
        return usage();
    cmd = argv[1];
    optind = 2;
    while ((ch = getopt_long(argc, argv, "c:", lo, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o.conf = optarg;
            break;
        case 's':
            o.suite = optarg;
            break;
        case 'm':
            o.mock = optarg;
            break;
        case 'b':
            o.cb = optarg;
            break;
        case 'r':
            o.redis = optarg;
            break;
        case 'i':
            o.intl = optarg;
            break;
        case 'S':
            o.secret = optarg;
            break;
        case 'u':
            o.user = optarg;
            break;
        case 'f':
            bad |= num(optarg, 1, 99999, &o.first);
            break;
        case 'l':
            bad |= num(optarg, 1, 99999, &o.last);
            break;
        case 'w':
            bad |= num(optarg, 1, WINDOW_MAX, &o.window);
            break;
        default:
            bad = 1;
        }
    }
    if (bad || optind != argc || o.first < 1 || o.last < o.first)
        return usage();
    json_set_alloc_funcs(brk_malloc, brk_free);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (strcmp(cmd, "install") == 0 && o.conf && o.suite && o.mock && o.cb &&
        o.redis)
        rc = cmd_install(&o);
    else if (strcmp(cmd, "touch") == 0 && o.intl && o.secret)
        rc = cmd_touch(&o);
    else
        rc = usage();
    curl_global_cleanup();
    return rc;
}
