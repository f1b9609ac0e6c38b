/*
 * Event delivery to services end to end: real redis-server, the WeCom
 * simulator and the broker over loopback, and receivers run by this test
 * that check each delivery exactly as a service's WeCom callback code
 * would — the signature and the decryption written here from WeCom's
 * published algorithm with OpenSSL, not with the broker's own crypto.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "harness.h"
#include "simclient.h"
#include "svcclient.h"
#include "tenantclient.h"

#define S1        H_SUITE
#define S2        "wwtestsuite00002"
#define CORP1     "wwmockcorp0001"
#define CORP2     "wwmockcorp0002"
#define CORP3     "wwmockcorp0003"
#define CORP4     "wwmockcorp0004"
#define CORP5     "wwmockcorp0005"
#define CORP6     "wwmockcorp0006"
#define CORP7     "wwmockcorp0007"
#define CORP8     "wwmockcorp0008"
#define MAX_AGE   6 /* delivery_max_age of the broker under test */
#define NITEMS(a) (sizeof(a) / sizeof((a)[0]))

static struct harness H;
static pid_t Mock;
static int MockPort;

/*---- A receiver, as a service runs one ----*/

enum mode {
    M_OK,
    M_OK_NL,
    M_GARBAGE,
    M_REDIRECT,
    M_HANG,
    M_500,
    M_FAIL_AUTH /* 500 to create_auth, success to anything else */
};

struct hit {
    char info_type[32], corp[80], suite[80], event_id[64], nonce[64];
    char sig[64];
    int verified; /* signature and decryption as WeCom's code checks */
    int has_authcode;
    long long at_ms; /* when it arrived */
    char change_type[32];
    char msg[2048]; /* the decrypted inner XML (cut) */
    int data;       /* a data callback: receiveid the corp, AgentID set */
};

struct rcv {
    int port, lfd;
    pthread_t th;
    volatile int stop;
    volatile enum mode mode;
    char token[64], aes[64];
    pthread_mutex_t mu;
    struct hit hits[256];
    int nhits;
    int requests;
};

static int
b64dec(const char *in, size_t n, unsigned char *out, size_t cap, size_t *len)
{
    int k;
    size_t pad = 0;

    if (n == 0 || n % 4 != 0 || (n / 4) * 3 > cap)
        return -1;
    k = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (k < 0)
        return -1;
    if (in[n - 1] == '=')
        pad++;
    if (in[n - 2] == '=')
        pad++;
    *len = (size_t)k - pad;
    return 0;
}

static int
cmpstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* WeCom's msg_signature: SHA-1 of the sorted token, timestamp, nonce and
 * ciphertext, lower-case hex. */
static void
sign(const char *token, const char *ts, const char *nonce, const char *enc,
     char out[41])
{
    const char *v[4] = {token, ts, nonce, enc};
    unsigned char md[20];
    unsigned int n = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int i;

    qsort(v, 4, sizeof(v[0]), cmpstr);
    EVP_DigestInit_ex(c, EVP_sha1(), NULL);
    for (i = 0; i < 4; i++)
        EVP_DigestUpdate(c, v[i], strlen(v[i]));
    EVP_DigestFinal_ex(c, md, &n);
    EVP_MD_CTX_free(c);
    for (i = 0; i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Decrypt as WeCom's sample does: AES-256-CBC, IV the key's first 16
 * bytes, PKCS#7 to 32, random(16) | be32 len | msg | receiveid. msg
 * (cap bytes) gets the message; 0 when receiveid equals want. */
static int
decrypt(const char *aeskey, const char *enc, const char *want, char *msg,
        size_t cap)
{
    char k64[80];
    unsigned char key[48], *ct = NULL, *pt = NULL;
    size_t klen = 0, clen = 0, len;
    int outl = 0, fin = 0, rc = -1;
    unsigned pad, mlen;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

    snprintf(k64, sizeof(k64), "%s=", aeskey);
    if (strlen(aeskey) != 43 || b64dec(k64, 44, key, sizeof(key), &klen) ||
        klen != 32)
        goto out;
    ct = malloc(strlen(enc));
    pt = malloc(strlen(enc) + 32);
    if (b64dec(enc, strlen(enc), ct, strlen(enc), &clen) || clen % 32 != 0)
        goto out;
    EVP_DecryptInit_ex(c, EVP_aes_256_cbc(), NULL, key, key);
    EVP_CIPHER_CTX_set_padding(c, 0);
    if (EVP_DecryptUpdate(c, pt, &outl, ct, (int)clen) != 1 ||
        EVP_DecryptFinal_ex(c, pt + outl, &fin) != 1)
        goto out;
    len = (size_t)(outl + fin);
    pad = pt[len - 1];
    if (pad < 1 || pad > 32 || len < pad + 20)
        goto out;
    len -= pad;
    mlen = (unsigned)pt[16] << 24 | (unsigned)pt[17] << 16 |
           (unsigned)pt[18] << 8 | pt[19];
    if (20 + (size_t)mlen > len || mlen >= cap)
        goto out;
    memcpy(msg, pt + 20, mlen);
    msg[mlen] = '\0';
    if (len - 20 - mlen != strlen(want) ||
        memcmp(pt + 20 + mlen, want, strlen(want)) != 0)
        goto out;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(c);
    free(ct);
    free(pt);
    return rc;
}

/* The text of <name> in xml (CDATA or plain) into out. */
static int
xml_text(const char *xml, const char *name, char *out, size_t cap)
{
    char open[64], close[64];
    const char *a, *b;
    size_t n;

    snprintf(open, sizeof(open), "<%s>", name);
    snprintf(close, sizeof(close), "</%s>", name);
    a = strstr(xml, open);
    if (a == NULL)
        return -1;
    a += strlen(open);
    b = strstr(a, close);
    if (b == NULL)
        return -1;
    if (strncmp(a, "<![CDATA[", 9) == 0 && b - a >= 12 &&
        strncmp(b - 3, "]]>", 3) == 0) {
        a += 9;
        b -= 3;
    }
    n = (size_t)(b - a);
    if (n >= cap)
        return -1;
    memcpy(out, a, n);
    out[n] = '\0';
    return 0;
}

/* The value of query parameter name in the request line's target. */
static int
query_param(const char *target, const char *name, char *out, size_t cap)
{
    const char *q = strchr(target, '?'), *p;
    size_t n = strlen(name), m;

    if (q == NULL)
        return -1;
    for (p = q + 1; *p != '\0' && *p != ' ';) {
        m = strcspn(p, "& ");
        if (m > n && strncmp(p, name, n) == 0 && p[n] == '=') {
            if (m - n - 1 >= cap)
                return -1;
            memcpy(out, p + n + 1, m - n - 1);
            out[m - n - 1] = '\0';
            return 0;
        }
        p += m;
        if (*p == '&')
            p++;
    }
    return -1;
}

static void
handle(struct rcv *r, int fd)
{
    char buf[65536], msg[8192], enc[16384], to[128], *hdr_end, *cl, *eid;
    struct hit h;
    size_t got = 0, body_len = 0, need;
    ssize_t k;
    const char *reply;
    char out[512];
    long long deadline;

    memset(&h, 0, sizeof(h));
    while (got < sizeof(buf) - 1) {
        k = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (k <= 0)
            return;
        got += (size_t)k;
        buf[got] = '\0';
        hdr_end = strstr(buf, "\r\n\r\n");
        if (hdr_end == NULL)
            continue;
        cl = strcasestr(buf, "\r\nContent-Length:");
        body_len = cl ? strtoul(cl + 17, NULL, 10) : 0;
        need = (size_t)(hdr_end + 4 - buf) + body_len;
        if (got >= need)
            break;
    }
    hdr_end = strstr(buf, "\r\n\r\n");
    if (hdr_end == NULL)
        return;
    h.at_ms = h_now_ms();
    eid = strcasestr(buf, "\r\nX-Broker-Event-Id: ");
    if (eid != NULL)
        sscanf(eid + 21, "%63[0-9a-f]", h.event_id);
    {
        char ts[64], calc[41];

        if (query_param(buf, "msg_signature", h.sig, sizeof(h.sig)) == 0 &&
            query_param(buf, "timestamp", ts, sizeof(ts)) == 0 &&
            query_param(buf, "nonce", h.nonce, sizeof(h.nonce)) == 0 &&
            xml_text(hdr_end + 4, "Encrypt", enc, sizeof(enc)) == 0 &&
            xml_text(hdr_end + 4, "ToUserName", to, sizeof(to)) == 0 &&
            labs(strtol(ts, NULL, 10) - (long)time(NULL)) < 60) {
            char agent[32];

            sign(r->token, ts, h.nonce, enc, calc);
            if (strcmp(calc, h.sig) == 0 &&
                decrypt(r->aes, enc, to, msg, sizeof(msg)) == 0 &&
                xml_text(msg, "SuiteId", h.suite, sizeof(h.suite)) != 0 &&
                xml_text(msg, "MsgType", h.info_type, sizeof(h.info_type)) ==
                    0 &&
                xml_text(msg, "ToUserName", h.corp, sizeof(h.corp)) == 0 &&
                strcmp(h.corp, to) == 0 &&
                xml_text(hdr_end + 4, "AgentID", agent, sizeof(agent)) == 0 &&
                agent[0] != '\0') {
                /* a data callback: WeCom's data envelope */
                h.verified = 1;
                h.data = 1;
                memcpy(h.msg, msg, sizeof(h.msg) - 1);
                h.msg[sizeof(h.msg) - 1] = '\0';
            } else if (strcmp(calc, h.sig) == 0 &&
                       decrypt(r->aes, enc, to, msg, sizeof(msg)) == 0 &&
                       xml_text(msg, "SuiteId", h.suite, sizeof(h.suite)) ==
                           0 &&
                       strcmp(h.suite, to) == 0 &&
                       xml_text(msg, "InfoType", h.info_type,
                                sizeof(h.info_type)) == 0 &&
                       xml_text(msg, "AuthCorpId", h.corp, sizeof(h.corp)) ==
                           0) {
                h.verified = 1;
                h.has_authcode = strstr(msg, "AuthCode") != NULL;
                (void)xml_text(msg, "ChangeType", h.change_type,
                               sizeof(h.change_type));
                memcpy(h.msg, msg, sizeof(h.msg) - 1);
                h.msg[sizeof(h.msg) - 1] = '\0';
            }
        }
    }
    pthread_mutex_lock(&r->mu);
    r->requests++;
    if (r->nhits < (int)NITEMS(r->hits))
        r->hits[r->nhits++] = h;
    pthread_mutex_unlock(&r->mu);
    if (!h.verified &&
        (r->mode == M_OK || r->mode == M_OK_NL || r->mode == M_FAIL_AUTH)) {
        /* what a service's WeCom code does with a bad signature */
        snprintf(out, sizeof(out),
                 "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                 "Connection: close\r\n\r\n");
        (void)!write(fd, out, strlen(out));
        return;
    }
    switch (r->mode) {
    case M_FAIL_AUTH:
        if (strcmp(h.info_type, "create_auth") == 0) {
            snprintf(out, sizeof(out),
                     "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n");
            (void)!write(fd, out, strlen(out));
            return;
        }
        reply = "success";
        break;
    case M_OK:
        reply = "success";
        break;
    case M_OK_NL:
        reply = "success\r\n";
        break;
    case M_GARBAGE:
        reply = "{\"errcode\":0} success?";
        break;
    case M_500:
        snprintf(out, sizeof(out),
                 "HTTP/1.1 500 Oops\r\nContent-Length: 7\r\n"
                 "Connection: close\r\n\r\nsuccess");
        (void)!write(fd, out, strlen(out));
        return;
    case M_REDIRECT:
        snprintf(out, sizeof(out),
                 "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\n"
                 "Content-Length: 7\r\nConnection: close\r\n\r\nsuccess");
        (void)!write(fd, out, strlen(out));
        return;
    case M_HANG:
    default:
        /* never answers: the broker must give up by itself */
        deadline = h_now_ms() + 15000;
        while (!r->stop && h_now_ms() < deadline)
            usleep(20000);
        return;
    }
    snprintf(out, sizeof(out),
             "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n"
             "\r\n%s",
             strlen(reply), reply);
    (void)!write(fd, out, strlen(out));
}

static void *
rcv_main(void *arg)
{
    struct rcv *r = arg;
    struct pollfd p;
    int fd;

    while (!r->stop) {
        p.fd = r->lfd;
        p.events = POLLIN;
        if (poll(&p, 1, 50) <= 0)
            continue;
        fd = accept(r->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        handle(r, fd);
        close(fd);
    }
    return NULL;
}

/* Listen on port (0: any) and serve in a thread. */
static struct rcv *
rcv_start(int port, enum mode mode)
{
    struct rcv *r = calloc(1, sizeof(*r));
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    int one = 1;

    assert_non_null(r);
    pthread_mutex_init(&r->mu, NULL);
    r->mode = mode;
    r->lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(r->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    assert_int_equal(bind(r->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(r->lfd, 64), 0);
    getsockname(r->lfd, (struct sockaddr *)&a, &al);
    r->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&r->th, NULL, rcv_main, r), 0);
    return r;
}

static void
rcv_stop(struct rcv *r)
{
    if (r == NULL)
        return;
    r->stop = 1;
    pthread_join(r->th, NULL);
    close(r->lfd);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* Verified deliveries of info_type for corp so far. */
static int
rcv_count(struct rcv *r, const char *info_type, const char *corp)
{
    int i, n = 0;

    pthread_mutex_lock(&r->mu);
    for (i = 0; i < r->nhits; i++)
        if (r->hits[i].verified &&
            (info_type == NULL ||
             strcmp(r->hits[i].info_type, info_type) == 0) &&
            (corp == NULL || strcmp(r->hits[i].corp, corp) == 0))
            n++;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static int
rcv_unverified(struct rcv *r)
{
    int i, n = 0;

    pthread_mutex_lock(&r->mu);
    for (i = 0; i < r->nhits; i++)
        n += !r->hits[i].verified;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static int
rcv_requests(struct rcv *r)
{
    int n;

    pthread_mutex_lock(&r->mu);
    n = r->requests;
    pthread_mutex_unlock(&r->mu);
    return n;
}

struct want {
    struct rcv *r;
    const char *it, *corp;
    int n;
};

static int
have(void *arg)
{
    struct want *w = arg;

    return rcv_count(w->r, w->it, w->corp) >= w->n;
}

static int
wait_for(struct rcv *r, const char *it, const char *corp, int n, long ms)
{
    struct want w = {r, it, corp, n};

    return h_wait(have, &w, ms);
}

static int
requests_at_least(void *arg)
{
    struct want *w = arg;

    return rcv_requests(w->r) >= w->n;
}

/*---- brokerctl ----*/

/* service deliver NAME --url http://127.0.0.1:PORT/cb [extra...]: the
 * token and key into r (asserting success). */
static void
deliver(struct rcv *r, const char *name, int port, const char *a1,
        const char *a2)
{
    char url[128];
    int rc;
    json_t *v;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/wecom/cb?svc=%s", port,
             name);
    v = tc_ctl(&rc, "service", "deliver", name, "--url", url, a1, a2,
               (const char *)NULL);
    assert_int_equal(rc, 0);
    assert_non_null(v);
    assert_int_equal(strlen(h_str(v, "encoding_aes_key")), 43);
    assert_int_equal(strspn(h_str(v, "encoding_aes_key"),
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwx"
                            "yz0123456789"),
                     43);
    assert_true(strlen(h_str(v, "token")) >= 16);
    if (r != NULL) {
        snprintf(r->token, sizeof(r->token), "%s", h_str(v, "token"));
        snprintf(r->aes, sizeof(r->aes), "%s", h_str(v, "encoding_aes_key"));
    }
    json_decref(v);
}

/* The end of the broker's log, when a test is about to fail. */
static void
dump_log(void)
{
    char *log = h_slurp(H.log);
    size_t n = log ? strlen(log) : 0;

    fprintf(stderr, "# broker log:\n%s\n",
            log ? log + (n > 3000 ? n - 3000 : 0) : "-");
    free(log);
}

static json_t *
deliveries(const char *name, const char *opt)
{
    int rc;
    json_t *v = tc_ctl(&rc, "deliveries", name, opt, (const char *)NULL);

    assert_int_equal(rc, 0);
    assert_non_null(v);
    return v;
}

static long long
jint(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/*---- Fixture ----*/

static int
setup(void **state)
{
    const char *extra[] = {
        "--suite", H_SUITE ":" H_SECRET, "--corps", "8", "--members",
        "20",      "--departments",      "4",       NULL};
    char conf[1024];
    FILE *f;

    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (h_setup(&H) != 0)
        return -1;
    Mock = h_mock_start(H.dir, extra, &MockPort);
    if (Mock == 0)
        return -1;
    snprintf(conf, sizeof(conf),
             "wecom_api_base = http://127.0.0.1:%d\n"
             "wecom_install_url = http://127.0.0.1:%d/3rdapp/install\n"
             "event_claim_idle = 3\n"
             "event_max_attempts = 3\n"
             "delivery_max_age = %d\n",
             MockPort, MockPort, MAX_AGE);
    if (h_write_conf(&H, 0, conf) != 0)
        return -1;
    /* a second suite, for a service of another suite */
    f = fopen(H.conf, "a");
    if (f == NULL)
        return -1;
    fprintf(f, "\n[suite " S2 "]\ntoken = " H_TOKEN
               "\nencoding_aes_key = " H_AESKEY
               "\nsecret = second-suite-secret-0002\n");
    fclose(f);
    if (h_broker_start(&H) != 0)
        return -1;
    tc_init(&H, MockPort);
    tc_push_ticket(S1);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    tc_done();
    if (Mock > 0)
        h_stop(Mock, SIGTERM);
    h_teardown(&H);
    return 0;
}

/*---- Tests ----*/

static void
test_deliver_refuses_hostile_arguments(void **state)
{
    static const char *const bad[][4] = {
        {"--url", "ftp://127.0.0.1/x", NULL, NULL},
        {"--url", "http://user:pw@127.0.0.1/x", NULL, NULL},
        {"--url", "http://127.0.0.1/x#frag", NULL, NULL},
        {"--url", "http://127.0.0.1/a b", NULL, NULL},
        {"--url", "http:///nohost", NULL, NULL},
        {"--url", "http://127.0.0.1:99999999/x", NULL, NULL},
        {"--url", "", NULL, NULL},
        {"--url", "http://127.0.0.1/x", "--events", "no_such_event"},
        {"--url", "http://127.0.0.1/x", "--events", "create_auth,create_auth"},
        {"--url", "http://127.0.0.1/x", "--events", "change_contact/nope"},
        {"--url", "http://127.0.0.1/x", "--events", ""},
        {"--url", "http://127.0.0.1/x", "--events", "create_auth,"},
        {"--off", "--url", "http://127.0.0.1/x", NULL},
        {"--events", "create_auth", NULL, NULL},
        {"--bogus", NULL, NULL, NULL},
        {NULL, NULL, NULL, NULL},
    };
    char longurl[2200], *sec, dlvk[128], dkk[128];
    size_t i;
    int rc;
    json_t *v;

    (void)state;
    sec = tc_svc_add("hostile", "contacts.read", NULL, NULL);
    free(sec);
    {
        json_t *sh =
            tc_ctl(&rc, "service", "show", "hostile", (const char *)NULL);

        snprintf(dlvk, sizeof(dlvk), "wb:svc:{%s}:dlv", h_str(sh, "id"));
        snprintf(dkk, sizeof(dkk), "wb:svc:{%s}:dk", h_str(sh, "id"));
        json_decref(sh);
    }
    for (i = 0; i < NITEMS(bad); i++) {
        v = tc_ctl(&rc, "service", "deliver", "hostile", bad[i][0], bad[i][1],
                   bad[i][2], bad[i][3], (const char *)NULL);
        json_decref(v);
        if (rc != 2)
            fprintf(stderr, "# case %zu: exit %d\n", i, rc);
        assert_int_equal(rc, 2);
    }
    memset(longurl, 'a', sizeof(longurl));
    memcpy(longurl, "http://h/", 9);
    longurl[sizeof(longurl) - 1] = '\0';
    v = tc_ctl(&rc, "service", "deliver", "hostile", "--url", longurl,
               (const char *)NULL);
    json_decref(v);
    assert_int_equal(rc, 2);
    /* a service that is not there: a failure, not a usage error */
    v = tc_ctl(&rc, "service", "deliver", "nosuch", "--url",
               "http://127.0.0.1/x", (const char *)NULL);
    json_decref(v);
    assert_int_equal(rc, 1);
    /* --off or --rotate-key with nothing set */
    v = tc_ctl(&rc, "service", "deliver", "hostile", "--off",
               (const char *)NULL);
    json_decref(v);
    assert_int_equal(rc, 1);
    /* nothing stored: neither a setting nor a data key for it */
    assert_int_equal(h_redis_int(&H, "EXISTS %s", dlvk), 0);
    assert_int_equal(h_redis_int(&H, "EXISTS %s", dkk), 0);
}

/* Lifecycle notices reach the services allowed the tenant and no other,
 * in order, verified as WeCom's own code verifies them. */
static void
test_lifecycle_notices_reach_subscribed_services(void **state)
{
    struct rcv *all = rcv_start(0, M_OK), *chg = rcv_start(0, M_OK_NL);
    struct rcv *none = rcv_start(0, M_OK), *other = rcv_start(0, M_OK);
    struct rcv *rev = rcv_start(0, M_OK), *s2 = rcv_start(0, M_OK);
    char *sec, *text, *log;
    json_t *v;
    int rc, i;
    long long t0;
    struct hit seq[3];

    (void)state;
    sec = tc_svc_add("all", "contacts.read", NULL, NULL);
    free(sec);
    sec = tc_svc_add("chg", "contacts.read", NULL, NULL);
    free(sec);
    sec = tc_svc_add("quiet", "contacts.read", NULL, NULL);
    free(sec);
    sec = tc_svc_add("other", "contacts.read", "--corps", CORP4);
    free(sec);
    sec = tc_svc_add("gone", "contacts.read", NULL, NULL);
    free(sec);
    sec = tc_svc_add("suite2", "contacts.read", "--suite", S2);
    free(sec);
    deliver(all, "all", all->port, NULL, NULL);
    deliver(chg, "chg", chg->port, "--events", "change_auth");
    deliver(other, "other", other->port, NULL, NULL);
    deliver(rev, "gone", rev->port, NULL, NULL);
    deliver(s2, "suite2", s2->port, NULL, NULL);
    (void)none; /* "quiet" has no delivery: it gets nothing */
    v = tc_ctl(&rc, "service", "revoke", "gone", (const char *)NULL);
    assert_int_equal(rc, 0);
    json_decref(v);
    /* show: the URL, events and status, never the token or key */
    v = tc_ctl(&rc, "service", "show", "chg", (const char *)NULL);
    assert_int_equal(rc, 0);
    text = json_dumps(v, 0);
    assert_non_null(strstr(text, "change_auth"));
    assert_non_null(strstr(text, "\"status\": \"on\""));
    assert_null(strstr(text, chg->token));
    assert_null(strstr(text, chg->aes));
    free(text);
    json_decref(v);

    t0 = h_now_ms();
    tc_install(S1, CORP1, (long)time(NULL));
    tc_wait_status(S1, CORP1, "active", 30000);
    assert_true(wait_for(all, "create_auth", CORP1, 1, 10000));
    tc_corp_event(S1, "change_auth", CORP1, (long)time(NULL) + 1, NULL, NULL);
    assert_true(wait_for(all, "change_auth", CORP1, 1, 20000));
    assert_true(wait_for(chg, "change_auth", CORP1, 1, 10000));
    tc_corp_event(S1, "cancel_auth", CORP1, (long)time(NULL) + 2, NULL, NULL);
    assert_true(wait_for(all, "cancel_auth", CORP1, 1, 20000));
    /* the purge came first */
    text = tc_status(S1, CORP1);
    assert_string_not_equal(text, "active");
    free(text);
    fprintf(stderr, "# create_auth to cancel_auth received in %lld ms\n",
            h_now_ms() - t0);
    /* in WeCom's order, each once, no AuthCode, every one verified */
    pthread_mutex_lock(&all->mu);
    assert_int_equal(all->nhits, 3);
    for (i = 0; i < 3; i++)
        seq[i] = all->hits[i];
    pthread_mutex_unlock(&all->mu);
    assert_string_equal(seq[0].info_type, "create_auth");
    assert_string_equal(seq[1].info_type, "change_auth");
    assert_string_equal(seq[2].info_type, "cancel_auth");
    for (i = 0; i < 3; i++) {
        assert_true(seq[i].verified);
        assert_false(seq[i].has_authcode);
        assert_string_equal(seq[i].suite, S1);
        assert_int_equal(strlen(seq[i].event_id), 32);
    }
    assert_string_not_equal(seq[0].event_id, seq[1].event_id);
    /* --events change_auth: that one only (its "success\r\n" counts) */
    assert_int_equal(rcv_count(chg, NULL, NULL), 1);
    assert_int_equal(rcv_requests(chg), 1);
    /* one more event to a subscribed service proves the others had their
     * chance: nothing reached them */
    assert_int_equal(rcv_requests(none), 0);
    assert_int_equal(rcv_requests(other), 0);
    assert_int_equal(rcv_requests(rev), 0);
    assert_int_equal(rcv_requests(s2), 0);
    assert_int_equal(rcv_unverified(all), 0);
    /* audited with names only; counted */
    text = tc_redis_text();
    assert_non_null(strstr(text, "SuiteId,AuthCorpId,InfoType,TimeStamp"));
    free(text);
    assert_true(tc_metric("wecom_broker_deliveries_total{service=\"all\","
                          "result=\"delivered\"}") >= 3);
    /* neither the token nor the key anywhere in the log or in Redis */
    log = h_slurp(H.log);
    text = tc_redis_text();
    assert_null(strstr(log, all->token));
    assert_null(strstr(log, all->aes));
    assert_null(strstr(text, all->token));
    assert_null(strstr(text, all->aes));
    free(log);
    free(text);
    rcv_stop(all);
    rcv_stop(chg);
    rcv_stop(none);
    rcv_stop(other);
    rcv_stop(rev);
    rcv_stop(s2);
    v = tc_ctl(&rc, "service", "deliver", "all", "--off", (const char *)NULL);
    json_decref(v);
    v = tc_ctl(&rc, "service", "deliver", "chg", "--off", (const char *)NULL);
    json_decref(v);
}

/* The provider-site install (no create_auth pushed by WeCom) notifies
 * too, once the tenant is active. */
static void
test_browser_install_notifies(void **state)
{
    struct rcv *r = rcv_start(0, M_OK);
    char url[2048], *body = NULL, *loc = NULL, *loc2 = NULL, *sec;
    long st;

    (void)state;
    sec = tc_svc_add("browser", "contacts.read", NULL, NULL);
    free(sec);
    deliver(r, "browser", r->port, "--events", "create_auth");
    /* the simulator's admin installing is CORP6's */
    h_sim_ok(MockPort, "POST", "/__mock/oauth_corp",
             "{\"corpid\":\"" CORP6 "\"}");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/wecom/suite/%s/install",
             H.cb_port, S1);
    st = h_http_loc(url, &body, &loc);
    free(body);
    assert_int_equal(st, 302);
    assert_non_null(loc);
    /* the simulator's admin approves and sends the browser back */
    st = h_http_loc(loc, &body, &loc2);
    free(body);
    free(loc);
    assert_int_equal(st, 302);
    assert_non_null(loc2);
    /* public_base_url is not this listener: go to the same path here */
    {
        const char *p = strstr(loc2, "/wecom/suite/");

        assert_non_null(p);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", H.cb_port, p);
    }
    free(loc2);
    st = h_http_loc(url, &body, &loc);
    if (st != 200 && st != 302)
        fprintf(stderr, "# install/done %s: %ld %s\n", url, st, body);
    free(body);
    free(loc);
    assert_true(st == 200 || st == 302);
    if (!wait_for(r, "create_auth", CORP6, 1, 30000)) {
        fprintf(stderr, "# hits %d corp %s\n", r->nhits,
                r->nhits ? r->hits[0].corp : "-");
        dump_log();
        fail();
    }
    assert_int_equal(rcv_unverified(r), 0);
    pthread_mutex_lock(&r->mu);
    assert_false(r->hits[0].has_authcode);
    assert_string_equal(r->hits[0].corp, CORP6);
    pthread_mutex_unlock(&r->mu);
    rcv_stop(r);
    {
        int rc;

        json_decref(tc_ctl(&rc, "service", "deliver", "browser", "--off",
                           (const char *)NULL));
        assert_int_equal(rc, 0);
    }
}

/* Receivers that hang, answer garbage, redirect or are down get nothing
 * counted as delivered, and delay no healthy service. */
static void
test_hostile_receivers_delay_no_other(void **state)
{
    struct rcv *ok = rcv_start(0, M_OK), *hang = rcv_start(0, M_HANG);
    struct rcv *junk = rcv_start(0, M_GARBAGE),
               *redir = rcv_start(0, M_REDIRECT);
    struct rcv *err5 = rcv_start(0, M_500);
    int down_port = h_free_port(), rc, i;
    char *sec;
    struct want w;
    json_t *v;
    long long t0, took;
    const char *names[] = {"h_ok",    "h_hang", "h_junk",
                           "h_redir", "h_500",  "h_down"};
    struct rcv *rs[] = {ok, hang, junk, redir, err5, NULL};

    (void)state;
    for (i = 0; i < 6; i++) {
        sec = tc_svc_add(names[i], "contacts.read", "--corps", CORP2);
        free(sec);
        deliver(rs[i], names[i], rs[i] ? rs[i]->port : down_port, NULL, NULL);
    }
    tc_install(S1, CORP2, (long)time(NULL));
    tc_wait_status(S1, CORP2, "active", 30000);
    t0 = h_now_ms();
    assert_true(wait_for(ok, "create_auth", CORP2, 1, 10000));
    /* a second event while the others fail: the healthy one gets it at
     * once, whatever the others are doing */
    w.r = junk;
    w.n = 2;
    if (!h_wait(requests_at_least, &w, 10000)) {
        fprintf(stderr, "# junk requests %d\n", rcv_requests(junk));
        dump_log();
        fail();
    }
    t0 = h_now_ms();
    tc_corp_event(S1, "change_auth", CORP2, (long)time(NULL) + 1, NULL, NULL);
    assert_true(wait_for(ok, "change_auth", CORP2, 1, 20000));
    took = h_now_ms() - t0;
    fprintf(stderr,
            "# change_auth reached the healthy service %lld ms after "
            "the callback, five failing services beside it\n",
            took);
    /* the grant re-read and directory sync are part of that time */
    assert_true(took < 10000);
    /* the failing ones were tried, and again with fresh signatures */
    w.n = 1;
    w.r = hang;
    assert_true(h_wait(requests_at_least, &w, 10000));
    w.n = 2;
    w.r = redir;
    assert_true(h_wait(requests_at_least, &w, 10000));
    w.r = err5;
    assert_true(h_wait(requests_at_least, &w, 10000));
    pthread_mutex_lock(&junk->mu);
    assert_true(junk->nhits >= 2);
    assert_true(junk->hits[0].verified && junk->hits[1].verified);
    assert_string_equal(junk->hits[0].event_id, junk->hits[1].event_id);
    assert_string_not_equal(junk->hits[0].nonce, junk->hits[1].nonce);
    assert_string_not_equal(junk->hits[0].sig, junk->hits[1].sig);
    pthread_mutex_unlock(&junk->mu);
    /* none of them counts as delivered: still queued */
    v = deliveries("h_junk", NULL);
    assert_true(jint(v, "backlog") + jint(v, "dead") >= 1);
    json_decref(v);
    v = deliveries("h_ok", NULL);
    assert_int_equal(jint(v, "backlog"), 0);
    json_decref(v);
    assert_true(tc_metric("wecom_broker_deliveries_total{service=\"h_junk\","
                          "result=\"retry\"}") >= 1);
    /* past delivery_max_age: dead letters, shown per tenant */
    {
        long long deadline = h_now_ms() + (MAX_AGE + 25) * 1000LL;
        long long dead = 0;

        while (h_now_ms() < deadline) {
            v = deliveries("h_down", NULL);
            dead = jint(v, "dead");
            json_decref(v);
            if (dead >= 2)
                break;
            usleep(200000); /* polling brokerctl: pacing, with a deadline */
        }
        if (dead < 2) {
            dump_log();
        }
        assert_true(dead >= 2);
    }
    v = deliveries("h_down", NULL);
    {
        json_t *t = json_array_get(json_object_get(v, "tenants"), 0);

        assert_string_equal(h_str(t, "corpid"), CORP2);
        assert_true(jint(t, "dead") >= 2);
        assert_true(jint(t, "oldest_age_s") >= 1);
    }
    json_decref(v);
    /* the receiver comes up: --retry delivers what was dead, in order */
    rs[5] = rcv_start(down_port, M_OK);
    {
        int r2;
        json_t *x = tc_ctl(&r2, "service", "deliver", "h_down", "--rotate-key",
                           (const char *)NULL);

        assert_int_equal(r2, 0);
        snprintf(rs[5]->token, sizeof(rs[5]->token), "%s", h_str(x, "token"));
        snprintf(rs[5]->aes, sizeof(rs[5]->aes), "%s",
                 h_str(x, "encoding_aes_key"));
        json_decref(x);
    }
    v = deliveries("h_down", "--retry");
    assert_true(jint(v, "retried") >= 2);
    json_decref(v);
    if (!wait_for(rs[5], "create_auth", CORP2, 1, 10000)) {
        fprintf(stderr, "# requests %d unverified %d\n", rcv_requests(rs[5]),
                rcv_unverified(rs[5]));
        dump_log();
        fail();
    }
    assert_true(wait_for(rs[5], "change_auth", CORP2, 1, 10000));
    /* in order; a first attempt may still carry the key rotated away
     * (settings are read again every second), refused like any bad
     * signature */
    pthread_mutex_lock(&rs[5]->mu);
    for (i = 0; i < rs[5]->nhits && !rs[5]->hits[i].verified; i++)
        ;
    assert_true(i < rs[5]->nhits);
    assert_string_equal(rs[5]->hits[i].info_type, "create_auth");
    pthread_mutex_unlock(&rs[5]->mu);
    /* the rest: purged with the tenant, pending and dead alike */
    v = tc_ctl(&rc, "tenant", "purge", CORP2, "--yes", (const char *)NULL);
    assert_int_equal(rc, 0);
    json_decref(v);
    for (i = 1; i < 5; i++) {
        v = deliveries(names[i], NULL);
        assert_int_equal(jint(v, "backlog"), 0);
        assert_int_equal(jint(v, "dead"), 0);
        json_decref(v);
    }
    for (i = 0; i < 6; i++)
        rcv_stop(rs[i]);
}

/* A receiver down, then up within delivery_max_age: delivered after the
 * backoff; and a cancel_auth purges what waits for that tenant before it
 * is queued itself. */
static void
test_down_then_up_and_purge(void **state)
{
    int port = h_free_port(), rc, n_change;
    struct rcv *r;
    char *sec, tok[64], aes[64];
    json_t *v;

    (void)state;
    sec = tc_svc_add("flaky", "contacts.read", "--corps", CORP3);
    free(sec);
    {
        char url[128];

        snprintf(url, sizeof(url), "http://127.0.0.1:%d/cb", port);
        v = tc_ctl(&rc, "service", "deliver", "flaky", "--url", url,
                   (const char *)NULL);
        assert_int_equal(rc, 0);
        snprintf(tok, sizeof(tok), "%s", h_str(v, "token"));
        snprintf(aes, sizeof(aes), "%s", h_str(v, "encoding_aes_key"));
        json_decref(v);
        /* a new --url keeps the key */
        v = tc_ctl(&rc, "service", "deliver", "flaky", "--url", url,
                   (const char *)NULL);
        assert_int_equal(rc, 0);
        assert_null(json_object_get(v, "token"));
        json_decref(v);
    }
    tc_install(S1, CORP3, (long)time(NULL));
    tc_wait_status(S1, CORP3, "active", 30000);
    {
        long long deadline = h_now_ms() + 10000, n = 0;

        while (h_now_ms() < deadline && n == 0) {
            v = deliveries("flaky", NULL);
            n = jint(v, "backlog");
            json_decref(v);
            if (n == 0)
                usleep(100000); /* pacing, with a deadline */
        }
        assert_int_equal(n, 1);
    }
    r = rcv_start(port, M_OK);
    snprintf(r->token, sizeof(r->token), "%s", tok);
    snprintf(r->aes, sizeof(r->aes), "%s", aes);
    assert_true(wait_for(r, "create_auth", CORP3, 1, MAX_AGE * 1000));
    assert_int_equal(rcv_unverified(r), 0);
    /* cancel_auth with the receiver failing meanwhile: the queue holds
     * change_auth; the purge drops it, then cancel_auth is queued */
    r->mode = M_500;
    tc_corp_event(S1, "change_auth", CORP3, (long)time(NULL) + 1, NULL, NULL);
    {
        struct want w = {r, NULL, NULL, 2};

        assert_true(h_wait(requests_at_least, &w, 20000));
    }
    tc_corp_event(S1, "cancel_auth", CORP3, (long)time(NULL) + 2, NULL, NULL);
    /* still failing until cancel_auth, queued after the purge, is tried:
     * change_auth cannot get through before */
    assert_true(wait_for(r, "cancel_auth", CORP3, 1, 20000));
    n_change = rcv_count(r, "change_auth", CORP3);
    r->mode = M_OK;
    assert_true(wait_for(r, "cancel_auth", CORP3, 2, 20000));
    /* the purge dropped it: never tried again */
    assert_int_equal(rcv_count(r, "change_auth", CORP3), n_change);
    v = deliveries("flaky", NULL);
    assert_int_equal(jint(v, "backlog"), 0);
    json_decref(v);
    rcv_stop(r);
}

/* The n-th verified hit of (info_type, change_type), copied; 0 or -1. */
static int
rcv_hit(struct rcv *r, const char *it, const char *ct, int n, struct hit *out)
{
    int i, k = 0, rc = -1;

    pthread_mutex_lock(&r->mu);
    for (i = 0; i < r->nhits; i++)
        if (r->hits[i].verified && strcmp(r->hits[i].info_type, it) == 0 &&
            strcmp(r->hits[i].change_type, ct) == 0 && k++ == n) {
            *out = r->hits[i];
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static int
rcv_count_ct(struct rcv *r, const char *it, const char *ct)
{
    struct hit h;
    int n = 0;

    while (rcv_hit(r, it, ct, n, &h) == 0)
        n++;
    return n;
}

struct want_ct {
    struct rcv *r;
    const char *it, *ct;
    int n;
};

static int
have_ct(void *arg)
{
    struct want_ct *w = arg;

    return rcv_count_ct(w->r, w->it, w->ct) >= w->n;
}

static int
wait_ct(struct rcv *r, const char *it, const char *ct, int n, long ms)
{
    struct want_ct w = {r, it, ct, n};

    if (h_wait(have_ct, &w, ms))
        return 1;
    dump_log();
    return 0;
}

/* A change_contact event for corp, with up to four more fields. */
static void
contact_event(const char *corp, const char *ct, const char *const *kv,
              size_t npairs)
{
    char ts[24];
    const char *all[24];
    size_t n = 0, i;

    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    all[n++] = "SuiteId";
    all[n++] = S1;
    all[n++] = "AuthCorpId";
    all[n++] = corp;
    all[n++] = "InfoType";
    all[n++] = "change_contact";
    all[n++] = "TimeStamp";
    all[n++] = ts;
    all[n++] = "ChangeType";
    all[n++] = ct;
    for (i = 0; i < 2 * npairs && n + 2 <= NITEMS(all); i++)
        all[n++] = kv[i];
    tc_post_event(S1, all, n / 2);
}

/* change_contact reaches the services whose grant and range allow it,
 * with only the fields they may see; a deletion by the range before it;
 * the queue holds no plaintext. */
static void
test_contact_events_filtered_and_ranged(void **state)
{
    struct rcv *wide = rcv_start(0, M_OK), *narrow = rcv_start(0, M_OK);
    struct rcv *sens = rcv_start(0, M_OK), *ext = rcv_start(0, M_OK);
    static const char *const outside[] = {"UserID", "evt-outside", "Department",
                                          "1",      "Gender",      "1",
                                          "Mobile", "13912345678"};
    static const char *const inside[] = {"UserID", "evt-inside", "Department",
                                         "2",      "Gender",     "2"};
    static const char *const gone[] = {"UserID", "evt-inside"};
    char *sec, *text;
    struct hit h;

    (void)state;
    sec = tc_svc_add("c-wide", "contacts.read", NULL, NULL);
    free(sec);
    /* the tenant's range is department 2; this service's a department
     * outside it */
    sec = tc_svc_add("c-narrow", "contacts.read", "--parties", CORP5 ":3");
    free(sec);
    sec = tc_svc_add("c-sens", "contacts.read,member.sensitive", NULL, NULL);
    free(sec);
    sec = tc_svc_add("c-ext", "external.customers", NULL, NULL);
    free(sec);
    deliver(wide, "c-wide", wide->port, NULL, NULL);
    deliver(narrow, "c-narrow", narrow->port, NULL, NULL);
    deliver(sens, "c-sens", sens->port, NULL, NULL);
    deliver(ext, "c-ext", ext->port, NULL, NULL);
    /* the tenant grants the gender: only the service's scopes decide */
    h_sim_ok(MockPort, "POST", "/__mock/permissions",
             "{\"corpid\":\"" CORP5 "\",\"app_permissions\":["
             "\"contact:base:base\",\"contact:sensitive:gender\"]}");
    tc_install(S1, CORP5, (long)time(NULL));
    tc_wait_status(S1, CORP5, "active", 30000);
    assert_true(wait_for(wide, "create_auth", CORP5, 1, 10000));

    contact_event(CORP5, "create_user", outside, NITEMS(outside) / 2);
    contact_event(CORP5, "create_user", inside, NITEMS(inside) / 2);
    assert_true(wait_ct(wide, "change_contact", "create_user", 1, 15000));
    assert_true(wait_ct(sens, "change_contact", "create_user", 1, 15000));
    /* the member and what contacts.read allows; no gender, never a mobile */
    assert_int_equal(rcv_hit(wide, "change_contact", "create_user", 0, &h), 0);
    assert_non_null(strstr(h.msg, "evt-inside"));
    assert_non_null(strstr(h.msg, "<Department>"));
    assert_null(strstr(h.msg, "Gender"));
    assert_null(strstr(h.msg, "13912345678"));
    /* member.sensitive: the gender too */
    assert_int_equal(rcv_hit(sens, "change_contact", "create_user", 0, &h), 0);
    assert_non_null(strstr(h.msg, "<Gender>"));
    assert_null(strstr(h.msg, "13912345678"));
    /* a service without the contact grant gets none of it */
    assert_int_equal(rcv_count(ext, "change_contact", NULL), 0);

    /* the deletion: by the range before it, though the member is gone */
    contact_event(CORP5, "delete_user", gone, 1);
    assert_true(wait_ct(wide, "change_contact", "delete_user", 1, 15000));
    assert_true(wait_ct(sens, "change_contact", "delete_user", 1, 15000));
    /* the member outside the tenant's range reached no one; the narrowed
     * service nothing of the tenant's department; each event once */
    assert_int_equal(rcv_count_ct(wide, "change_contact", "create_user"), 1);
    assert_int_equal(rcv_count_ct(sens, "change_contact", "create_user"), 1);
    assert_int_equal(rcv_count(narrow, "change_contact", NULL), 0);
    assert_int_equal(rcv_count(ext, "change_contact", NULL), 0);

    /* queued as WeCom's ciphertext: no value of the event in Redis */
    text = tc_redis_text();
    assert_null(strstr(text, "13912345678"));
    free(text);
    /* audited with the names delivered and removed */
    text = tc_redis_text();
    assert_non_null(strstr(text, "Gender"));
    free(text);
    rcv_stop(wide);
    rcv_stop(narrow);
    rcv_stop(sens);
    rcv_stop(ext);
}

/* change_external_tag names no member: only to services without a range
 * of their own; the external grant is needed. */
static void
test_external_tag_whole_tenant_only(void **state)
{
    struct rcv *wide = rcv_start(0, M_OK), *narrow = rcv_start(0, M_OK);
    struct rcv *noext = rcv_start(0, M_OK);
    static const char *const member[] = {"UserID", "evt-tagcheck", "Department",
                                         "2"};
    const char *kv[12];
    char ts[24], *sec;
    size_t n = 0;

    (void)state;
    sec = tc_svc_add("x-wide", "external.customers", NULL, NULL);
    free(sec);
    sec = tc_svc_add("x-narrow", "external.customers,contacts.read",
                     "--parties", CORP6 ":2");
    free(sec);
    sec = tc_svc_add("x-none", "contacts.read", NULL, NULL);
    free(sec);
    deliver(wide, "x-wide", wide->port, NULL, NULL);
    deliver(narrow, "x-narrow", narrow->port, NULL, NULL);
    deliver(noext, "x-none", noext->port, NULL, NULL);
    h_sim_ok(MockPort, "POST", "/__mock/permissions",
             "{\"corpid\":\"" CORP6 "\",\"app_permissions\":["
             "\"contact:base:base\",\"externalcontact:base:base\"]}");
    tc_install(S1, CORP6, (long)time(NULL));
    tc_wait_status(S1, CORP6, "active", 30000);
    assert_true(wait_for(narrow, "create_auth", CORP6, 1, 10000));

    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    kv[n++] = "SuiteId";
    kv[n++] = S1;
    kv[n++] = "AuthCorpId";
    kv[n++] = CORP6;
    kv[n++] = "InfoType";
    kv[n++] = "change_external_tag";
    kv[n++] = "TimeStamp";
    kv[n++] = ts;
    kv[n++] = "ChangeType";
    kv[n++] = "create";
    kv[n++] = "Id";
    kv[n++] = "etTAG0001";
    tc_post_event(S1, kv, n / 2);
    contact_event(CORP6, "create_user", member, NITEMS(member) / 2);
    assert_true(wait_ct(wide, "change_external_tag", "create", 1, 15000));
    /* the narrowed service's queue is in order: the member's event after
     * the tag's proves the tag's was decided */
    assert_true(wait_ct(narrow, "change_contact", "create_user", 1, 15000));
    assert_true(wait_ct(noext, "change_contact", "create_user", 1, 15000));
    assert_int_equal(rcv_count(narrow, "change_external_tag", NULL), 0);
    assert_int_equal(rcv_count(noext, "change_external_tag", NULL), 0);
    rcv_stop(wide);
    rcv_stop(narrow);
    rcv_stop(noext);
}

/*---- External contact events, the WelcomeCode, data callbacks ----*/

/* brokerctl service add with capabilities (may be NULL); the secret. */
static char *
svc_caps(const char *name, const char *scopes, const char *caps,
         const char *parties)
{
    json_t *v;
    char *sec;
    int rc;

    v = tc_ctl(&rc, "service", "add", name, "--scopes", scopes,
               caps ? "--capabilities" : NULL, caps,
               parties ? "--parties" : NULL, parties, (const char *)NULL);
    assert_int_equal(rc, 0);
    sec = strdup(h_str(v, "secret"));
    json_decref(v);
    return sec;
}

/* POST body to externalcontact/API through the broker: the errcode. */
static long
ext_write(const char *tok, const char *api, const char *body)
{
    struct sc_resp r;
    long e;

    sc_resp_init(&r);
    sc_call(&r, H.int_port, "POST", body,
            "/cgi-bin/externalcontact/%s?access_token=%s", api, tok);
    e = sc_ecode(&r);
    sc_resp_free(&r);
    return e;
}

/* A change_external_contact event of corp. */
static void
external_event(const char *corp, const char *ct, const char *user,
               const char *cust, const char *code)
{
    char ts[24];
    const char *kv[16];
    size_t n = 0;

    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    kv[n++] = "SuiteId";
    kv[n++] = S1;
    kv[n++] = "AuthCorpId";
    kv[n++] = corp;
    kv[n++] = "InfoType";
    kv[n++] = "change_external_contact";
    kv[n++] = "TimeStamp";
    kv[n++] = ts;
    kv[n++] = "ChangeType";
    kv[n++] = ct;
    kv[n++] = "UserID";
    kv[n++] = user;
    kv[n++] = "ExternalUserID";
    kv[n++] = cust;
    if (code != NULL) {
        kv[n++] = "WelcomeCode";
        kv[n++] = code;
    }
    tc_post_event(S1, kv, n / 2);
}

/* The index of the first verified hit of (it, ct) in r's hits, -1. */
static int
hit_index(struct rcv *r, const char *it, const char *ct)
{
    int i, at = -1;

    pthread_mutex_lock(&r->mu);
    for (i = 0; i < r->nhits && at < 0; i++)
        if (r->hits[i].verified && strcmp(r->hits[i].info_type, it) == 0 &&
            strcmp(r->hits[i].change_type, ct) == 0)
            at = i;
    pthread_mutex_unlock(&r->mu);
    return at;
}

/* Requests of (it) after hit index i. */
static int
requests_after(struct rcv *r, const char *it, int i)
{
    int k, n = 0;

    pthread_mutex_lock(&r->mu);
    for (k = i + 1; k < r->nhits; k++)
        if (strcmp(r->hits[k].info_type, it) == 0)
            n++;
    pthread_mutex_unlock(&r->mu);
    return n;
}

struct after {
    struct rcv *r;
    const char *it;
    int i;
};

static int
have_after(void *arg)
{
    struct after *a = arg;

    return requests_after(a->r, a->it, a->i) > 0;
}

struct welcome_try {
    const char *tok, *body;
    long code;
};

/* send_welcome_msg until the broker knows the code was delivered (its
 * record follows the receiver's success). */
static int
welcome_taken(void *arg)
{
    struct welcome_try *w = arg;

    w->code = ext_write(w->tok, "send_welcome_msg", w->body);
    return w->code != 41050;
}

/*
 * change_external_contact reaches the services whose range holds the follow
 * user; an event carrying a WelcomeCode goes to the welcome service ahead
 * of its backlog, to the others without the code, and send_welcome_msg
 * takes the code delivered, once; the customer index follows the events.
 */
static void
test_external_contact_welcome_and_index(void **state)
{
    struct rcv *wel = rcv_start(0, M_FAIL_AUTH), *oth = rcv_start(0, M_OK);
    struct rcv *nar = rcv_start(0, M_OK);
    static const char cust[] = "wmEVTCUSTOMER0000000000000001";
    char *wsec, *osec, *nsec, *wtok, *otok, code[80], body[512], tag[80];
    struct welcome_try wt;
    struct after af;
    struct hit h;
    json_t *j;
    size_t before;
    int add_at;

    (void)state;
    wsec = svc_caps("e-wel",
                    "external.customers,externalcontact:contact:welcome_msg",
                    "external.welcome", NULL);
    osec = svc_caps("e-oth", "external.customers,externalcontact:contact:tag",
                    "external.write", NULL);
    nsec =
        svc_caps("e-nar", "external.customers,contacts.read", NULL, CORP7 ":3");
    deliver(wel, "e-wel", wel->port, NULL, NULL);
    deliver(oth, "e-oth", oth->port, NULL, NULL);
    deliver(nar, "e-nar", nar->port, NULL, NULL);
    h_sim_ok(MockPort, "POST", "/__mock/permissions",
             "{\"corpid\":\"" CORP7 "\",\"app_permissions\":["
             "\"contact:base:base\",\"externalcontact:base:base\","
             "\"externalcontact:contact:tag\","
             "\"externalcontact:contact:welcome_msg\"]}");
    tc_install(S1, CORP7, (long)time(NULL));
    tc_wait_status(S1, CORP7, "active", 30000);
    assert_true(wait_for(oth, "create_auth", CORP7, 1, 10000));
    /* the welcome service's backlog: create_auth, failing */
    {
        struct want w = {wel, NULL, NULL, 1};

        assert_true(h_wait(requests_at_least, &w, 10000));
    }
    wtok = tc_token_for(0, wsec, CORP7);
    otok = tc_token_for(0, osec, CORP7);

    /* a customer known to the broker from no event yet: out of range */
    snprintf(body, sizeof(body),
             "{\"userid\":\"u00001\",\"external_userid\":\"%s\","
             "\"add_tag\":[\"etNOSUCHTAG\"]}",
             cust);
    assert_int_equal(ext_write(otok, "mark_tag", body), 60011);

    /* a follow user outside the tenant's range: no one */
    external_event(CORP7, "edit_external_contact", "zz-outside", cust, NULL);
    j = h_sim_json(MockPort, "POST", "/__mock/welcome_code",
                   "{\"corpid\":\"" CORP7 "\"}");
    h_copy_str(code, sizeof(code), h_need_str(j, "welcome_code"));
    json_decref(j);
    external_event(CORP7, "add_external_contact", "u00001", cust, code);

    /* ahead of the backlog: create_auth is still being retried after */
    assert_true(wait_ct(wel, "change_external_contact", "add_external_contact",
                        1, 15000));
    add_at = hit_index(wel, "change_external_contact", "add_external_contact");
    af.r = wel;
    af.it = "create_auth";
    af.i = add_at;
    if (!h_wait(have_after, &af, 10000))
        dump_log();
    assert_true(requests_after(wel, "create_auth", add_at) > 0);
    assert_int_equal(
        rcv_hit(wel, "change_external_contact", "add_external_contact", 0, &h),
        0);
    assert_non_null(strstr(h.msg, code));
    /* the others: without the code; the narrowed service nothing */
    assert_true(wait_ct(oth, "change_external_contact", "add_external_contact",
                        1, 15000));
    assert_int_equal(
        rcv_hit(oth, "change_external_contact", "add_external_contact", 0, &h),
        0);
    assert_non_null(strstr(h.msg, cust));
    assert_null(strstr(h.msg, "WelcomeCode"));
    assert_null(strstr(h.msg, code));
    assert_int_equal(
        rcv_count_ct(oth, "change_external_contact", "edit_external_contact"),
        0);
    /* the narrowed service: as its range holds the follow user or not */
    if (tc_user_get_errcode(nsec, CORP7, "u00001") == 0) {
        assert_true(wait_ct(nar, "change_external_contact",
                            "add_external_contact", 1, 15000));
        assert_int_equal(rcv_hit(nar, "change_external_contact",
                                 "add_external_contact", 0, &h),
                         0);
        assert_null(strstr(h.msg, code));
    } else {
        assert_int_equal(rcv_count_ct(nar, "change_external_contact",
                                      "add_external_contact"),
                         0);
    }
    assert_int_equal(
        rcv_count_ct(nar, "change_external_contact", "edit_external_contact"),
        0);

    /* the code, from the service it was delivered to, once */
    snprintf(body, sizeof(body),
             "{\"welcome_code\":\"%s\",\"text\":{\"content\":\"hi\"}}", code);
    wt.tok = wtok;
    wt.body = body;
    wt.code = -1;
    assert_true(h_wait(welcome_taken, &wt, 10000));
    assert_int_equal(wt.code, 0);
    assert_int_equal(ext_write(wtok, "send_welcome_msg", body), 41051);
    /* a code the service was never given */
    assert_int_equal(
        ext_write(wtok, "send_welcome_msg",
                  "{\"welcome_code\":\"WCnotdelivered\",\"text\":{\"content\":"
                  "\"hi\"}}"),
        41050);

    /* the customer, known from the event, may be tagged */
    j = NULL;
    {
        struct sc_resp r;

        sc_resp_init(&r);
        sc_call(&r, H.int_port, "POST",
                "{\"group_name\":\"evt\",\"tag\":[{\"name\":\"gold\"}]}",
                "/cgi-bin/externalcontact/add_corp_tag?access_token=%s", otok);
        assert_int_equal(sc_ecode(&r), 0);
        h_copy_str(
            tag, sizeof(tag),
            json_string_value(json_object_get(
                json_array_get(json_object_get(
                                   json_object_get(r.json, "tag_group"), "tag"),
                               0),
                "id")));
        sc_resp_free(&r);
    }
    snprintf(body, sizeof(body),
             "{\"userid\":\"u00001\",\"external_userid\":\"%s\","
             "\"add_tag\":[\"%s\"]}",
             cust, tag);
    before = tc_mock_count("/cgi-bin/externalcontact/mark_tag", NULL);
    /* passed on to WeCom (which knows no such customer in the simulator:
     * its own errcode), not refused by the broker */
    assert_int_not_equal(ext_write(otok, "mark_tag", body), 60011);
    assert_int_equal(tc_mock_count("/cgi-bin/externalcontact/mark_tag", NULL),
                     before + 1);
    /* the customer deleted the member: no more */
    external_event(CORP7, "del_follow_user", "u00001", cust, NULL);
    assert_true(
        wait_ct(oth, "change_external_contact", "del_follow_user", 1, 15000));
    assert_int_equal(ext_write(otok, "mark_tag", body), 60011);
    assert_int_equal(tc_mock_count("/cgi-bin/externalcontact/mark_tag", NULL),
                     before + 1);
    free(wsec);
    free(osec);
    free(nsec);
    free(wtok);
    free(otok);
    rcv_stop(wel);
    rcv_stop(oth);
    rcv_stop(nar);
}

/* A data callback reaches the messages service in WeCom's data envelope,
 * and no other. */
static void
test_data_callback_to_messages_service(void **state)
{
    struct rcv *msg = rcv_start(0, M_OK), *plain = rcv_start(0, M_OK);
    static const char *const member[] = {"UserID", "evt-after-data",
                                         "Department", "2"};
    char ts[24], *sec;
    const char *text[] = {"ToUserName", CORP8,       "FromUserName", "u00001",
                          "CreateTime", ts,          "MsgType",      "text",
                          "Content",    "evt-hello", "MsgId",        "77",
                          "AgentID",    "1000002"};
    struct hit h;
    int i, n = 0;

    (void)state;
    sec = svc_caps("m-msg", "contacts.read", "messages", NULL);
    free(sec);
    sec = svc_caps("m-plain", "contacts.read", NULL, NULL);
    free(sec);
    deliver(msg, "m-msg", msg->port, NULL, NULL);
    deliver(plain, "m-plain", plain->port, NULL, NULL);
    h_sim_ok(MockPort, "POST", "/__mock/permissions",
             "{\"corpid\":\"" CORP8 "\",\"app_permissions\":["
             "\"contact:base:base\"]}");
    tc_install(S1, CORP8, (long)time(NULL));
    tc_wait_status(S1, CORP8, "active", 30000);
    assert_true(wait_for(plain, "create_auth", CORP8, 1, 10000));
    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    tc_post_data(S1, CORP8, text, NITEMS(text) / 2);
    /* the order of the plain service's queue: the member's event after
     * the message proves the message was decided for it */
    contact_event(CORP8, "create_user", member, NITEMS(member) / 2);
    assert_true(wait_ct(plain, "change_contact", "create_user", 1, 15000));
    assert_true(wait_for(msg, "text", CORP8, 1, 15000));
    pthread_mutex_lock(&msg->mu);
    for (i = 0; i < msg->nhits; i++)
        if (msg->hits[i].verified && msg->hits[i].data) {
            h = msg->hits[i];
            n++;
        }
    pthread_mutex_unlock(&msg->mu);
    assert_int_equal(n, 1);
    assert_non_null(strstr(h.msg, "evt-hello"));
    assert_non_null(strstr(h.msg, "u00001"));
    assert_int_equal(rcv_count(plain, "text", NULL), 0);
    rcv_stop(msg);
    rcv_stop(plain);
}

/*---- The engine's tenant copies ----*/

#define TENANT_READS "wecom_broker_delivery_tenant_reads_total{result=\"ok\"}"

/* One create_user in the tenant's range (department 2), gender given. */
static void
member_created(const char *corp, int i)
{
    char uid[32];
    const char *kv[6] = {"UserID", uid, "Department", "2", "Gender", "1"};

    snprintf(uid, sizeof(uid), "cache-m%03d", i);
    contact_event(corp, "create_user", kv, 3);
}

/* A grant narrowed by change_auth applies to the sends after it though
 * the tenant was just read for the same service: every delivery arriving
 * more than 1 s after the change was stored goes without the field. */
static void
test_narrowed_grant_applies_with_copy_warm(void **state)
{
    struct rcv *r = rcv_start(0, M_OK);
    struct hit h;
    char *sec;
    long long stored_ms = 0, last_ms = 0;
    int i, n, sent = 0, after = 0;

    (void)state;
    sec = tc_svc_add("k-sens", "contacts.read,member.sensitive", "--corps",
                     CORP4);
    free(sec);
    deliver(r, "k-sens", r->port, NULL, NULL);
    h_sim_ok(MockPort, "POST", "/__mock/permissions",
             "{\"corpid\":\"" CORP4 "\",\"app_permissions\":["
             "\"contact:base:base\",\"contact:sensitive:gender\"]}");
    tc_install(S1, CORP4, (long)time(NULL));
    tc_wait_status(S1, CORP4, "active", 30000);
    assert_true(wait_for(r, "create_auth", CORP4, 1, 10000));
    /* warm: the tenant read for these sends, the gender granted */
    for (i = 0; i < 3; i++) {
        member_created(CORP4, sent++);
        assert_true(wait_ct(r, "change_contact", "create_user", sent, 15000));
        assert_int_equal(rcv_hit(r, "change_contact", "create_user", i, &h), 0);
        assert_non_null(strstr(h.msg, "<Gender>"));
    }

    /* the gender taken away; change_auth is delivered once it is stored */
    h_sim_ok(MockPort, "POST", "/__mock/permissions",
             "{\"corpid\":\"" CORP4 "\",\"app_permissions\":["
             "\"contact:base:base\"]}");
    tc_corp_event(S1, "change_auth", CORP4, (long)time(NULL) + 1, NULL, NULL);
    assert_true(wait_for(r, "change_auth", CORP4, 1, 20000));
    n = rcv_count(r, "change_auth", CORP4);
    pthread_mutex_lock(&r->mu);
    for (i = 0; i < r->nhits; i++)
        if (strcmp(r->hits[i].info_type, "change_auth") == 0)
            stored_ms = r->hits[i].at_ms;
    pthread_mutex_unlock(&r->mu);
    assert_int_equal(n, 1);
    assert_true(stored_ms > 0);

    /* sends for 3 s after it: each one past 1 s without the gender */
    while (last_ms < stored_ms + 3000 && sent < 200) {
        member_created(CORP4, sent++);
        assert_true(wait_ct(r, "change_contact", "create_user", sent, 15000));
        assert_int_equal(
            rcv_hit(r, "change_contact", "create_user", sent - 1, &h), 0);
        last_ms = h.at_ms;
        if (h.at_ms >= stored_ms + 1000) {
            after++;
            if (strstr(h.msg, "<Gender>") != NULL) {
                print_message("# the gender was delivered %lld ms after the "
                              "change was stored\n",
                              h.at_ms - stored_ms);
                fail();
            }
        }
    }
    assert_true(after > 0);
    rcv_stop(r);
}

/* Five services, one tenant: it is read and decoded far less often than
 * it is sent (before, once per send). */
static void
test_tenant_read_once_for_many_sends(void **state)
{
    static const char *const names[] = {"k-a", "k-b", "k-c", "k-d", "k-e"};
    struct rcv *rs[NITEMS(names)];
    long before, reads;
    char *sec;
    size_t i;
    int j, events = 20;

    (void)state;
    for (i = 0; i < NITEMS(names); i++) {
        rs[i] = rcv_start(0, M_OK);
        sec = tc_svc_add(names[i], "contacts.read", "--corps", CORP4);
        free(sec);
        deliver(rs[i], names[i], rs[i]->port, NULL, NULL);
    }
    /* every service read by the engine before the count starts */
    member_created(CORP4, 500);
    for (i = 0; i < NITEMS(names); i++)
        assert_true(wait_ct(rs[i], "change_contact", "create_user", 1, 15000));
    before = tc_metric(TENANT_READS);
    for (j = 0; j < events; j++)
        member_created(CORP4, 501 + j);
    for (i = 0; i < NITEMS(names); i++)
        assert_true(
            wait_ct(rs[i], "change_contact", "create_user", events + 1, 30000));
    reads = tc_metric(TENANT_READS) - before;
    print_message("# %d events to %zu services: %ld tenant reads\n", events,
                  NITEMS(names), reads);
    /* a read per change notice at most, never one per send */
    assert_true(before > 0);
    assert_true(reads >= 0 && reads <= events);
    for (i = 0; i < NITEMS(names); i++)
        rcv_stop(rs[i]);
}

/*---- The event workers keep the tenant ----*/

#define EV_READ    "wecom_broker_event_tenant_reads_total{result=\"read\"}"
#define EV_APPLIED "wecom_broker_event_tenant_reads_total{result=\"applied\"}"

static void
member_event(const char *corp, const char *ct, const char *uid,
             const char *dept)
{
    const char *kv[4] = {"UserID", uid, "Department", dept};

    contact_event(corp, ct, kv, dept ? 2 : 1);
}

/* The nth update_user the receiver got names uid. */
static int
update_names(struct rcv *r, int n, const char *uid)
{
    struct hit h;
    char want[64];

    if (rcv_hit(r, "change_contact", "update_user", n, &h) != 0)
        return 0;
    snprintf(want, sizeof(want), "<UserID><![CDATA[%s]]>", uid);
    return strstr(h.msg, want) != NULL;
}

/* A stream of members' changes to one tenant is decided with the tenant
 * the worker keeps, each change applied to it as Redis applied it: no
 * whole read per event (before: one per event, the whole directory), and
 * the range after each change is the one Redis holds. A deletion, decided
 * with the range before it, makes the next event read the tenant again. */
static void
test_member_changes_applied_to_tenant_kept(void **state)
{
    struct rcv *r = rcv_start(0, M_OK), *nr = rcv_start(0, M_OK);
    long reads0, applied0, reads, applied;
    char *sec, uid[32];
    int j, events = 20;

    (void)state;
    sec = tc_svc_add("k-apply", "contacts.read", "--corps", CORP4);
    free(sec);
    deliver(r, "k-apply", r->port, NULL, NULL);
    /* a service narrowed to department 2, decided through a view of the
     * tenant's range */
    sec = tc_svc_add("k-narrow2", "contacts.read", "--parties", CORP4 ":2");
    free(sec);
    deliver(nr, "k-narrow2", nr->port, NULL, NULL);
    member_created(CORP4, 700);
    assert_true(wait_ct(r, "change_contact", "create_user", 1, 15000));
    assert_true(wait_ct(nr, "change_contact", "create_user", 1, 15000));
    reads0 = tc_metric(EV_READ);
    applied0 = tc_metric(EV_APPLIED);
    for (j = 0; j < events; j++)
        member_created(CORP4, 701 + j);
    assert_true(wait_ct(r, "change_contact", "create_user", events + 1, 30000));
    reads = tc_metric(EV_READ) - reads0;
    applied = tc_metric(EV_APPLIED) - applied0;
    print_message("# %d member events: %ld whole reads, %ld applied to the "
                  "tenant kept\n",
                  events, reads, applied);
    assert_int_equal(reads, 0);
    assert_int_equal(applied, events);

    /* out of the range (department 1), then one into it: the first is
     * not sent, so the first update the service gets is the second */
    member_event(CORP4, "update_user", "cache-m701", "1");
    member_event(CORP4, "update_user", "cache-m702", "1,2");
    assert_true(wait_ct(r, "change_contact", "update_user", 1, 15000));
    assert_true(update_names(r, 0, "cache-m702"));
    /* back into the range: sent again */
    member_event(CORP4, "update_user", "cache-m701", "2");
    assert_true(wait_ct(r, "change_contact", "update_user", 2, 15000));
    assert_true(update_names(r, 1, "cache-m701"));
    assert_int_equal(tc_metric(EV_READ) - reads0, 0);
    /* the narrowed service got the same, by its own range */
    assert_true(
        wait_ct(nr, "change_contact", "create_user", events + 1, 15000));
    assert_true(wait_ct(nr, "change_contact", "update_user", 2, 15000));
    assert_true(update_names(nr, 0, "cache-m702"));
    assert_true(update_names(nr, 1, "cache-m701"));

    /* a deletion is decided with the range before it; the change after
     * it reads the tenant whole once */
    member_event(CORP4, "delete_user", "cache-m703", NULL);
    assert_true(wait_ct(r, "change_contact", "delete_user", 1, 15000));
    snprintf(uid, sizeof(uid), "cache-m%03d", 750);
    member_event(CORP4, "update_user", uid, "2");
    assert_true(wait_ct(r, "change_contact", "update_user", 3, 15000));
    assert_true(update_names(r, 2, uid));
    assert_true(tc_metric(EV_READ) - reads0 >= 1);
    rcv_stop(r);
    rcv_stop(nr);
}

/*---- A backlog is read in batches ----*/

#define HEAD_READS "wecom_broker_delivery_head_reads_total{service=\"k-bl\"}"
#define BACKLOG_N  48

struct want_uid {
    struct rcv *r;
    char uid[32];
};

/* uid has been received (sent only once those before it succeeded) */
static int
have_uid(void *arg)
{
    struct want_uid *w = arg;
    struct hit h;
    int i;

    for (i = 0; rcv_hit(w->r, "change_contact", "create_user", i, &h) == 0; i++)
        if (strstr(h.msg, w->uid) != NULL)
            return 1;
    return 0;
}

/* A backlog of BACKLOG_N entries for one (service, tenant), its receiver
 * failing while it builds up, is sent in queue order once the receiver
 * answers, with far fewer queue reads than entries (before: one per
 * entry, plus one acknowledgement each). */
static void
test_backlog_read_in_batches(void **state)
{
    struct rcv *r = rcv_start(0, M_500);
    struct want w = {r, NULL, NULL, 1};
    struct want_uid wu;
    struct hit h;
    char *sec, uid[32];
    long before, reads;
    int i, next = 0, n = 0;

    (void)state;
    sec = tc_svc_add("k-bl", "contacts.read", "--corps", CORP4);
    free(sec);
    deliver(r, "k-bl", r->port, NULL, NULL);
    for (i = 0; i < BACKLOG_N; i++)
        member_created(CORP4, 600 + i);
    /* the first entry failed: the rest wait behind it */
    assert_true(h_wait(requests_at_least, &w, 20000));
    before = tc_metric(HEAD_READS);
    assert_true(before > 0);
    r->mode = M_OK;
    wu.r = r;
    snprintf(wu.uid, sizeof(wu.uid), "cache-m%03d", 600 + BACKLOG_N - 1);
    assert_true(h_wait(have_uid, &wu, 60000));
    reads = tc_metric(HEAD_READS) - before;
    print_message("# a backlog of %d entries: %ld queue reads\n", BACKLOG_N,
                  reads);
    /* one read per HEAD_BATCH (16) entries, and a few for the retries */
    assert_true(reads >= 1 && reads <= BACKLOG_N / 4);
    /* in queue order: retries repeat an entry, nothing goes back */
    for (i = 0; rcv_hit(r, "change_contact", "create_user", i, &h) == 0; i++) {
        snprintf(uid, sizeof(uid), "cache-m%03d", 600 + next);
        if (strstr(h.msg, uid) != NULL) {
            next++;
            n++;
            continue;
        }
        snprintf(uid, sizeof(uid), "cache-m%03d", 600 + next - 1);
        assert_true(next > 0 && strstr(h.msg, uid) != NULL);
    }
    assert_int_equal(next, BACKLOG_N);
    assert_int_equal(n, BACKLOG_N);
    rcv_stop(r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deliver_refuses_hostile_arguments),
        cmocka_unit_test(test_lifecycle_notices_reach_subscribed_services),
        cmocka_unit_test(test_browser_install_notifies),
        cmocka_unit_test(test_down_then_up_and_purge),
        cmocka_unit_test(test_hostile_receivers_delay_no_other),
        cmocka_unit_test(test_contact_events_filtered_and_ranged),
        cmocka_unit_test(test_external_tag_whole_tenant_only),
        cmocka_unit_test(test_external_contact_welcome_and_index),
        cmocka_unit_test(test_data_callback_to_messages_service),
        cmocka_unit_test(test_narrowed_grant_applies_with_copy_warm),
        cmocka_unit_test(test_tenant_read_once_for_many_sends),
        cmocka_unit_test(test_member_changes_applied_to_tenant_kept),
        cmocka_unit_test(test_backlog_read_in_batches),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
