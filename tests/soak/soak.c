/*
 * `make soak`: mixed service traffic (gettoken and data calls) and signed
 * callbacks at a steady rate against one broker and the WeCom simulator
 * for SOAK_SECONDS (default 300) at SOAK_RATE requests per second (default
 * 200). Every answer is checked; the broker's RSS is sampled every 10 s
 * and must stay within 10% of its value after a 30 s warm-up; every
 * acknowledged callback must have been processed at the end. Prints one
 * summary table and exits 0 only when all of that holds.
 *
 * Knobs (environment): SOAK_SECONDS, SOAK_RATE, SOAK_KEEP (non-empty:
 * keep the temporary directory), SOAK_RSS_CHECK=0 (report the RSS but do
 * not judge it: under the sanitizers it grows by design). Runs from the
 * repository root, where bin/ and scopes/ are.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "../integ/harness.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#define S1          H_SUITE
#define CORP        "wwmockcorp0001"
#define MEMBER      "u00003"
#define INFLIGHT    64
#define SAMPLE_S    10
#define WARMUP_S    30
#define MAX_SAMPLES 4096

static struct harness H;
static struct wecom_crypto *C;
static pid_t Mock;
static int MockPort;
static char Secret[200], Token[200];

static void __attribute__((format(printf, 1, 2), noreturn))
die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "soak: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (H.broker_pid > 0)
        h_broker_stop(&H, SIGKILL);
    if (Mock > 0)
        h_stop(Mock, SIGKILL);
    setenv("KEEP_TEST_DIR", "1", 1);
    h_teardown(&H);
    exit(2);
}

static long
env_long(const char *name, long def)
{
    const char *v = getenv(name);
    char *end;
    long n;

    if (v == NULL || *v == '\0')
        return def;
    n = strtol(v, &end, 10);
    if (*end != '\0' || n <= 0)
        die("%s must be a positive integer", name);
    return n;
}

/*---- Simulator and broker set-up ----*/

static json_t *
sim_json(const char *method, const char *path, const char *body)
{
    char url[1024], *out = NULL;
    json_error_t e;
    json_t *v;
    long st;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", MockPort, path);
    st = h_http(method, url, body, body ? strlen(body) : 0, &out);
    v = st == 200 ? json_loads(out, 0, &e) : NULL;
    if (v == NULL)
        die("simulator %s %s: %ld %s", method, path, st, out ? out : "");
    free(out);
    return v;
}

static const char *
str_of(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));

    return s ? s : "";
}

/* The signed envelope and the path+query of an event (both owned). */
static void
build_event(const char *const *kv, size_t npairs, char **env, size_t *envlen,
            char **pq)
{
    const char *k[16], *v[16];
    char *xml = NULL, *enc = NULL, sig[WECOM_CRYPTO_SIG_SIZE], ts[24];
    char nonce[32];
    static unsigned long seq;
    size_t len, i;
    const char *ek[] = {"ToUserName", "Encrypt"};
    const char *evv[2];

    for (i = 0; i < npairs; i++) {
        k[i] = kv[2 * i];
        v[i] = kv[2 * i + 1];
    }
    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    snprintf(nonce, sizeof(nonce), "k%lu", ++seq);
    if (wecom_xml_build(k, v, npairs, &xml, &len) ||
        wecom_crypto_encrypt(C, xml, len, S1, &enc) ||
        wecom_crypto_sign(C, ts, nonce, enc, sig))
        die("cannot build an event");
    evv[0] = S1;
    evv[1] = enc;
    if (wecom_xml_build(ek, evv, 2, env, envlen))
        die("cannot build an envelope");
    *pq = malloc(512);
    snprintf(*pq, 512,
             "/wecom/suite/%s/callback?msg_signature=%s&timestamp=%s"
             "&nonce=%s",
             S1, sig, ts, nonce);
    brk_free(enc);
    brk_free(xml);
}

static void
post_event(const char *const *kv, size_t npairs)
{
    char *env, *pq, *url, *body = NULL;
    size_t len;
    long st;

    build_event(kv, npairs, &env, &len, &pq);
    url = h_cb_url(&H, pq);
    st = h_http("POST", url, env, len, &body);
    if (st != 200 || strcmp(body, "success") != 0)
        die("callback refused: %ld %s", st, body);
    free(body);
    free(url);
    free(pq);
    brk_free(env);
}

static void
push_ticket(void)
{
    char ts[24];
    json_t *t = sim_json("GET", "/__mock/suite_ticket?suite_id=" S1, NULL);
    const char *kv[8] = {"SuiteId",   S1, "InfoType",    "suite_ticket",
                         "TimeStamp", ts, "SuiteTicket", NULL};

    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    kv[7] = str_of(t, "suite_ticket");
    post_event(kv, 4);
    json_decref(t);
}

static int
tenant_active(void *arg)
{
    const char *argv[] = {"bin/brokerctl", "-c",   H.conf, "--json",
                          "tenant",        "show", CORP,   NULL};
    char *out = NULL;
    int ok;

    (void)arg;
    ok = h_run(argv, &out) == 0 && strstr(out, "\"active\"") != NULL;
    free(out);
    return ok;
}

static void
install(void)
{
    char tsb[24];
    json_t *r = sim_json("POST", "/__mock/install",
                         "{\"suite_id\":\"" S1 "\",\"corpid\":\"" CORP "\"}");
    const char *kv[10] = {
        "SuiteId",     S1,          "AuthCode", NULL,    "InfoType",
        "create_auth", "TimeStamp", tsb,        "State", ""};

    snprintf(tsb, sizeof(tsb), "%ld", (long)time(NULL));
    kv[3] = str_of(r, "auth_code");
    post_event(kv, 5);
    json_decref(r);
    if (!h_wait(tenant_active, NULL, 30000))
        die("the tenant never became active");
}

static void
add_service(void)
{
    const char *argv[] = {"bin/brokerctl", "-c",  H.conf, "--json",
                          "service",       "add", "soak", "--scopes",
                          "contacts.read", NULL};
    char *out = NULL, url[512], *body = NULL;
    json_error_t e;
    json_t *v;

    if (h_run(argv, &out) != 0 || (v = json_loads(out, 0, &e)) == NULL)
        die("service add: %s", out);
    snprintf(Secret, sizeof(Secret), "%s", str_of(v, "secret"));
    json_decref(v);
    free(out);
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/cgi-bin/gettoken?corpid=" CORP
             "&corpsecret=%s",
             H.int_port, Secret);
    if (h_http("GET", url, NULL, 0, &body) != 200 ||
        (v = json_loads(body, 0, &e)) == NULL)
        die("gettoken: %s", body);
    snprintf(Token, sizeof(Token), "%s", str_of(v, "access_token"));
    if (strlen(Token) < 16)
        die("gettoken: %s", body);
    json_decref(v);
    free(body);
}

/* log_level info: debug lines at this rate only fill the disk. */
static void
quiet_conf(void)
{
    char *txt = h_slurp(H.conf), *p = strstr(txt, "log_level = debug");
    FILE *f;

    if (p == NULL)
        die("no log_level in %s", H.conf);
    memcpy(p, "log_level = info ", 17);
    f = fopen(H.conf, "w");
    if (f == NULL || fputs(txt, f) < 0 || fclose(f) != 0)
        die("cannot write %s", H.conf);
    free(txt);
}

/*---- Load ----*/

enum kind {
    K_GETTOKEN,
    K_USER_GET,
    K_DEPT_LIST,
    K_TAG_LIST,
    K_SIMPLELIST,
    K_CALLBACK,
    K_KINDS
};

static const char *const kind_name[K_KINDS] = {"gettoken",        "user/get",
                                               "department/list", "tag/list",
                                               "user/simplelist", "callback"};

/* Out of every 20 requests: 2 gettoken, 10 data calls, 8 callbacks. */
static const enum kind mix[20] = {
    K_CALLBACK, K_USER_GET, K_CALLBACK,   K_DEPT_LIST, K_CALLBACK,
    K_GETTOKEN, K_USER_GET, K_CALLBACK,   K_TAG_LIST,  K_SIMPLELIST,
    K_CALLBACK, K_USER_GET, K_CALLBACK,   K_DEPT_LIST, K_GETTOKEN,
    K_USER_GET, K_CALLBACK, K_SIMPLELIST, K_CALLBACK,  K_USER_GET};

struct req {
    CURL *e;
    enum kind kind;
    long marker;
    long t0;
    char *body;
    size_t len;
    char *env;
    struct curl_slist *hdr;
};

struct stats {
    long sent[K_KINDS];
    long errors[K_KINDS];
    long acked;
    long shown;
    long *lat; /* ms */
    size_t nlat, cap;
};

static size_t
body_cb(char *p, size_t size, size_t n, void *arg)
{
    struct req *q = arg;
    size_t add = size * n;
    char *nb;

    if (q->len + add > 1 << 22)
        return 0;
    nb = realloc(q->body, q->len + add + 1);
    if (nb == NULL)
        return 0;
    q->body = nb;
    memcpy(q->body + q->len, p, add);
    q->len += add;
    q->body[q->len] = '\0';
    return add;
}

static struct req *
req_start(CURLM *m, enum kind k, long marker)
{
    struct req *q = calloc(1, sizeof(*q));
    char url[1024], *pq = NULL;
    size_t envlen = 0;

    q->kind = k;
    q->marker = marker;
    q->t0 = h_now_ms();
    q->e = curl_easy_init();
    switch (k) {
    case K_GETTOKEN:
        snprintf(url, sizeof(url),
                 "http://127.0.0.1:%d/cgi-bin/gettoken?corpid=" CORP
                 "&corpsecret=%s",
                 H.int_port, Secret);
        break;
    case K_USER_GET:
        snprintf(url, sizeof(url),
                 "http://127.0.0.1:%d/cgi-bin/user/get?access_token=%s"
                 "&userid=" MEMBER,
                 H.int_port, Token);
        break;
    case K_DEPT_LIST:
        snprintf(url, sizeof(url),
                 "http://127.0.0.1:%d/cgi-bin/department/list?access_token=%s",
                 H.int_port, Token);
        break;
    case K_TAG_LIST:
        snprintf(url, sizeof(url),
                 "http://127.0.0.1:%d/cgi-bin/tag/list?access_token=%s",
                 H.int_port, Token);
        break;
    case K_SIMPLELIST:
        snprintf(url, sizeof(url),
                 "http://127.0.0.1:%d/cgi-bin/user/simplelist?access_token=%s"
                 "&department_id=2",
                 H.int_port, Token);
        break;
    default: {
        char uid[32], tsb[24];
        const char *kv[14] = {"SuiteId",        S1,
                              "InfoType",       "change_external_contact",
                              "TimeStamp",      tsb,
                              "AuthCorpId",     CORP,
                              "ChangeType",     "edit_external_contact",
                              "UserID",         MEMBER,
                              "ExternalUserID", uid};

        snprintf(uid, sizeof(uid), "wmsoak%08ld", marker);
        snprintf(tsb, sizeof(tsb), "%ld", (long)time(NULL));
        build_event(kv, 7, &q->env, &envlen, &pq);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", H.cb_port, pq);
        free(pq);
        curl_easy_setopt(q->e, CURLOPT_POSTFIELDS, q->env);
        curl_easy_setopt(q->e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)envlen);
    }
    }
    curl_easy_setopt(q->e, CURLOPT_URL, url);
    curl_easy_setopt(q->e, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(q->e, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(q->e, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(q->e, CURLOPT_PRIVATE, q);
    curl_multi_add_handle(m, q->e);
    return q;
}

/* Whether the answer is the one a healthy broker gives. */
static int
answer_ok(const struct req *q, long status)
{
    json_error_t e;
    json_t *v;
    int ok;

    if (status != 200 || q->body == NULL)
        return 0;
    if (q->kind == K_CALLBACK)
        return strcmp(q->body, "success") == 0;
    v = json_loads(q->body, 0, &e);
    ok = v != NULL && json_integer_value(json_object_get(v, "errcode")) == 0 &&
         json_is_integer(json_object_get(v, "errcode"));
    switch (q->kind) {
    case K_GETTOKEN:
        /* the current token while more than 5 minutes of it remain */
        ok = ok && strcmp(str_of(v, "access_token"), Token) == 0;
        break;
    case K_USER_GET:
        ok = ok && strcmp(str_of(v, "userid"), MEMBER) == 0 &&
             json_object_get(v, "mobile") == NULL;
        break;
    case K_DEPT_LIST:
        ok = ok && json_array_size(json_object_get(v, "department")) > 0;
        break;
    case K_TAG_LIST:
        ok = ok && json_is_array(json_object_get(v, "taglist"));
        break;
    default:
        ok = ok && json_array_size(json_object_get(v, "userlist")) > 0;
    }
    json_decref(v);
    return ok;
}

static void
req_done(CURLM *m, struct req *q, struct stats *s, char *acked)
{
    long status = -1, ms = h_now_ms() - q->t0;

    curl_easy_getinfo(q->e, CURLINFO_RESPONSE_CODE, &status);
    if (answer_ok(q, status)) {
        if (q->kind == K_CALLBACK) {
            acked[q->marker] = 1;
            s->acked++;
        }
    } else {
        s->errors[q->kind]++;
        if (s->shown++ < 10)
            fprintf(stderr, "soak: %s: %ld %.200s\n", kind_name[q->kind],
                    status, q->body ? q->body : "");
    }
    if (s->nlat == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 65536;
        s->lat = realloc(s->lat, s->cap * sizeof(*s->lat));
    }
    s->lat[s->nlat++] = ms;
    curl_multi_remove_handle(m, q->e);
    curl_easy_cleanup(q->e);
    free(q->body);
    brk_free(q->env);
    free(q);
}

static long
rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static int
cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;

    return (x > y) - (x < y);
}

/* Markers found in the audit trail (each counted once). */
static long
markers_processed(const char *acked, long n)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    char *seen = calloc((size_t)n + 1, 1);
    long found = 0, i, id;
    size_t k;

    if (c == NULL)
        die("no Redis");
    r = redisCommand(c, "XRANGE wb:audit - +");
    for (i = 0;
         r != NULL && r->type == REDIS_REPLY_ARRAY && (size_t)i < r->elements;
         i++) {
        redisReply *f = r->element[i]->element[1];

        for (k = 0; k + 1 < f->elements; k += 2)
            if (strcmp(f->element[k]->str, "ExternalUserID") == 0 &&
                strncmp(f->element[k + 1]->str, "wmsoak", 6) == 0) {
                id = strtol(f->element[k + 1]->str + 6, NULL, 10);
                if (id >= 0 && id < n && acked[id] && !seen[id]) {
                    seen[id] = 1;
                    found++;
                }
            }
    }
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    free(seen);
    return found;
}

int
main(void)
{
    const char *mock_args[] = {"--suite", S1 ":" H_SECRET, "--corps",
                               "1",       "--quiet",       NULL};
    const char *rss_check = getenv("SOAK_RSS_CHECK");
    long seconds = env_long("SOAK_SECONDS", 300);
    long rate = env_long("SOAK_RATE", 200);
    long t0, now, due = 0, next_sample, n = 0, inflight = 0, errors = 0;
    long rss[MAX_SAMPLES], base = -1, peak = 0, low = 0, i, processed = 0;
    long total = 0, ncb = (seconds + 60) * rate;
    size_t nrss = 0;
    struct stats st;
    char *acked;
    CURLM *m;
    CURLMsg *msg;
    int running, left, flat, rc;

    memset(&st, 0, sizeof(st));
    if (h_setup(&H) != 0)
        die("cannot start redis-server");
    if (getenv("SOAK_KEEP") != NULL)
        setenv("KEEP_TEST_DIR", "1", 1);
    Mock = h_mock_start(H.dir, mock_args, &MockPort);
    if (Mock == 0)
        die("cannot start the simulator");
    {
        char extra[256];

        snprintf(extra, sizeof(extra),
                 "wecom_api_base = http://127.0.0.1:%d\n"
                 "upstream_rate_per_corp = 100000\n",
                 MockPort);
        if (h_write_conf(&H, 0, extra) != 0)
            die("cannot write the configuration");
    }
    quiet_conf();
    if (h_broker_start(&H) != 0)
        die("the broker did not start; see %s", H.log);
    if (wecom_crypto_new(H_TOKEN, H_AESKEY, &C) != BRK_OK)
        die("crypto");
    push_ticket();
    install();
    add_service();
    fprintf(stderr,
            "soak: %ld s at %ld requests/s against pid %d (RSS every %d s, "
            "warm-up %d s)\n",
            seconds, rate, (int)H.broker_pid, SAMPLE_S, WARMUP_S);
    acked = calloc((size_t)ncb, 1);
    m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)INFLIGHT);
    t0 = h_now_ms();
    next_sample = t0;
    for (;;) {
        now = h_now_ms();
        if (now >= next_sample) {
            long kb = rss_kb(H.broker_pid);

            if (kb < 0)
                die("the broker is gone; see %s", H.log);
            if (nrss < MAX_SAMPLES)
                rss[nrss++] = kb;
            fprintf(stderr,
                    "soak: t=%3lds RSS %ld kB, %ld requests, %ld "
                    "errors\n",
                    (now - t0) / 1000, kb, n, errors);
            next_sample += SAMPLE_S * 1000;
        }
        if (now - t0 >= seconds * 1000)
            break;
        /* requests due by now, paced evenly */
        due = (now - t0) * rate / 1000;
        while (n < due && inflight < INFLIGHT) {
            enum kind k = mix[n % 20];

            req_start(m, k, k == K_CALLBACK ? n : 0);
            st.sent[k]++;
            n++;
            inflight++;
        }
        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            struct req *q = NULL;

            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
            req_done(m, q, &st, acked);
            inflight--;
            errors = 0;
            for (i = 0; i < K_KINDS; i++)
                errors += st.errors[i];
        }
        curl_multi_poll(m, NULL, 0, 2, NULL);
    }
    while (inflight > 0) {
        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            struct req *q = NULL;

            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&q);
            req_done(m, q, &st, acked);
            inflight--;
        }
        curl_multi_poll(m, NULL, 0, 10, NULL);
    }
    curl_multi_cleanup(m);
    rss[nrss < MAX_SAMPLES ? nrss++ : nrss - 1] = rss_kb(H.broker_pid);
    /* every acknowledged callback processed */
    for (i = 0; i < 300; i++) {
        processed = markers_processed(acked, n);
        if (processed == st.acked)
            break;
        usleep(100000);
    }
    errors = 0;
    for (i = 0; i < K_KINDS; i++) {
        errors += st.errors[i];
        total += st.sent[i];
    }
    /* flat: every sample after the warm-up within 10% of the first one */
    for (i = 0; (size_t)i < nrss; i++) {
        if (i * SAMPLE_S < WARMUP_S)
            continue;
        if (base < 0)
            base = peak = low = rss[i];
        if (rss[i] > peak)
            peak = rss[i];
        if (rss[i] < low)
            low = rss[i];
    }
    flat = base > 0 && peak <= base + base / 10 && low >= base - base / 10;
    if (rss_check != NULL && strcmp(rss_check, "0") == 0)
        flat = 1;
    qsort(st.lat, st.nlat, sizeof(*st.lat), cmp_long);
    printf("\nsoak summary\n");
    printf("  %-34s %ld requests/s\n", "rate (target)", rate);
    printf("  %-34s %.1f requests/s\n", "rate (achieved)",
           (double)total / (double)seconds);
    printf("  %-34s %ld s\n", "duration", seconds);
    for (i = 0; i < K_KINDS; i++)
        printf("  %-34s %ld (%ld errors)\n", kind_name[i], st.sent[i],
               st.errors[i]);
    printf("  %-34s %ld\n", "requests", total);
    printf("  %-34s %ld\n", "errors", errors);
    printf("  %-34s %ld of %ld\n", "acked callbacks processed", processed,
           st.acked);
    if (st.nlat > 0)
        printf("  %-34s p50 %ld ms, p99 %ld ms, max %ld ms\n", "latency",
               st.lat[st.nlat / 2], st.lat[st.nlat * 99 / 100],
               st.lat[st.nlat - 1]);
    printf("  %-34s %ld kB\n", "RSS at start", rss[0]);
    printf("  %-34s %ld kB\n", "RSS after warm-up (30 s)", base);
    printf("  %-34s %ld kB\n", "RSS at end", rss[nrss - 1]);
    printf("  %-34s %ld .. %ld kB (%s)\n", "RSS after warm-up, min .. max", low,
           peak,
           rss_check != NULL && strcmp(rss_check, "0") == 0 ? "not judged"
           : flat                                           ? "flat within 10%"
                                                            : "NOT flat");
    printf("  %-34s", "RSS samples (kB)");
    for (i = 0; (size_t)i < nrss; i++)
        printf(" %ld", rss[i]);
    printf("\n");
    rc = errors == 0 && flat && processed == st.acked && st.acked > 0 ? 0 : 1;
    if (h_broker_stop(&H, SIGTERM) != 0) {
        fprintf(stderr, "soak: the broker did not stop cleanly; see %s\n",
                H.log);
        rc = 1;
    }
    printf("  %-34s %s\n", "result", rc == 0 ? "PASS" : "FAIL");
    h_stop(Mock, SIGTERM);
    wecom_crypto_free(C);
    free(acked);
    free(st.lat);
    if (rc != 0)
        setenv("KEEP_TEST_DIR", "1", 1);
    if (getenv("KEEP_TEST_DIR") != NULL)
        fprintf(stderr, "soak: kept %s\n", H.dir);
    h_teardown(&H);
    return rc;
}
