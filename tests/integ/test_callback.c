/*
 * Callback intake end to end: the real broker on loopback, a real
 * redis-server, requests signed and encrypted as WeCom does.
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
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "codec.h"
#include "harness.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

static struct harness H;
static struct wecom_crypto *C;

/*---- helpers ----*/

static char *
xml_of(const char *const *kv, size_t npairs)
{
    const char *k[32], *v[32];
    char *out = NULL;
    size_t len, i;

    for (i = 0; i < npairs; i++) {
        k[i] = kv[2 * i];
        v[i] = kv[2 * i + 1];
    }
    assert_int_equal(wecom_xml_build(k, v, npairs, &out, &len), BRK_OK);
    return out;
}

static long
now_s(void)
{
    return (long)time(NULL);
}

/* POST an already encrypted Encrypt text with a correct signature. */
static long
post_encrypted(const char *path, const char *enc, const char *ts,
               const char *nonce, char **body)
{
    char sig[WECOM_CRYPTO_SIG_SIZE], q[512], *env, *url;
    const char *ek[] = {"ToUserName", "Encrypt", "AgentID"};
    const char *ev[] = {H_SUITE, enc, ""};
    size_t envlen;
    long st;

    assert_int_equal(wecom_crypto_sign(C, ts, nonce, enc, sig), BRK_OK);
    assert_int_equal(wecom_xml_build(ek, ev, 3, &env, &envlen), BRK_OK);
    snprintf(q, sizeof(q), "%s?msg_signature=%s&timestamp=%s&nonce=%s", path,
             sig, ts, nonce);
    url = h_cb_url(&H, q);
    st = h_http("POST", url, env, envlen, body);
    free(url);
    brk_free(env);
    return st;
}

static long
post_event_as(const char *receiveid, const char *xml, char **body)
{
    char *enc = NULL, ts[24], nonce[24];
    static unsigned counter;
    long st;

    snprintf(ts, sizeof(ts), "%ld", now_s());
    snprintf(nonce, sizeof(nonce), "n%u%ld", ++counter, h_now_ms());
    assert_int_equal(wecom_crypto_encrypt(C, xml, strlen(xml), receiveid, &enc),
                     BRK_OK);
    st = post_encrypted("/wecom/suite/" H_SUITE "/callback", enc, ts, nonce,
                        body);
    brk_free(enc);
    return st;
}

static long
post_event(const char *xml, char **body)
{
    return post_event_as(H_SUITE, xml, body);
}

static char *
ticket_xml(const char *ticket, long ts)
{
    char tsb[24];
    const char *kv[] = {"SuiteId",   H_SUITE, "InfoType",    "suite_ticket",
                        "TimeStamp", tsb,     "SuiteTicket", ticket};

    snprintf(tsb, sizeof(tsb), "%ld", ts);
    return xml_of(kv, 4);
}

static long long
redis_int(const char *fmt, ...)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    va_list ap;
    long long v = -1;

    assert_non_null(c);
    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

static char *
redis_str(const char *fmt, ...)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    va_list ap;
    char *v = NULL;

    assert_non_null(c);
    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r != NULL && r->type == REDIS_REPLY_STRING)
        v = strdup(r->str);
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

/* Every string inside every stream entry, concatenated. */
static char *
stream_dump(void)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    size_t i, j, n = 1, o = 0;
    char *out;

    r = redisCommand(c, "XRANGE wb:{" H_SUITE "}:events - +");
    assert_non_null(r);
    for (i = 0; i < r->elements; i++)
        for (j = 0; j < r->element[i]->element[1]->elements; j++)
            n += r->element[i]->element[1]->element[j]->len + 1;
    out = calloc(1, n);
    for (i = 0; i < r->elements; i++)
        for (j = 0; j < r->element[i]->element[1]->elements; j++) {
            redisReply *e = r->element[i]->element[1]->element[j];
            memcpy(out + o, e->str, e->len);
            o += e->len;
            out[o++] = '\n';
        }
    freeReplyObject(r);
    redisFree(c);
    return out;
}

/* Entries ever added to the suite's stream: the workers delete entries
 * they finish, so the length alone would race with them. */
static long long
xlen(void)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    long long v = 0;
    size_t i;

    assert_non_null(c);
    r = redisCommand(c, "XINFO STREAM wb:{" H_SUITE "}:events");
    if (r != NULL && r->type == REDIS_REPLY_ARRAY)
        for (i = 0; i + 1 < r->elements; i += 2)
            if (strcmp(r->element[i]->str, "entries-added") == 0)
                v = r->element[i + 1]->integer;
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

/* Events queued so far, whichever queue took them: one dedupe mark each
 * (a worker may already have drained a tenant's queue). */
static long long
queued_marks(void)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    long long v = -1;

    assert_non_null(c);
    r = redisCommand(c, "KEYS wb:{" H_SUITE "}:seen:*");
    if (r != NULL && r->type == REDIS_REPLY_ARRAY)
        v = (long long)r->elements;
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

/*---- fixtures ----*/

static int
setup(void **state)
{
    (void)state;
    /* WeCom unreachable and retries unbounded: queued events stay put */
    if (h_setup(&H) != 0 ||
        h_write_conf(&H, 0,
                     "wecom_api_base = http://127.0.0.1:9\n"
                     "event_max_attempts = 1000\n") != 0 ||
        h_broker_start(&H) != 0) {
        fprintf(stderr, "cannot start redis-server and the broker\n");
        return -1;
    }
    return wecom_crypto_new(H_TOKEN, H_AESKEY, &C) == BRK_OK ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    wecom_crypto_free(C);
    h_teardown(&H);
    return 0;
}

/* Flush Redis before a test, keeping the suite data key. */
static int
fresh(void **state)
{
    (void)state;
    redisContext *c = h_redis(&H);
    redisReply *keys = redisCommand(c, "KEYS *");
    size_t i;

    for (i = 0; i < keys->elements; i++)
        if (strstr(keys->element[i]->str, ":dk") == NULL)
            freeReplyObject(redisCommand(c, "DEL %s", keys->element[i]->str));
    freeReplyObject(keys);
    redisFree(c);
    return 0;
}

/*---- URL verification ----*/

static void
verify_get(const char *route, const char *receiveid, const char *plain,
           int literal_plus, long want_status)
{
    char *enc = NULL, sig[WECOM_CRYPTO_SIG_SIZE], ts[24], *pct, *q, *url;
    char *body = NULL;
    long st;
    size_t i, n;
    int tries = 0;

    snprintf(ts, sizeof(ts), "%ld", now_s());
    /* for the '+' case, draw ciphertexts until one contains '+' */
    do {
        brk_free(enc);
        enc = NULL;
        assert_int_equal(
            wecom_crypto_encrypt(C, plain, strlen(plain), receiveid, &enc),
            BRK_OK);
    } while (literal_plus && strchr(enc, '+') == NULL && ++tries < 1000);
    assert_int_equal(wecom_crypto_sign(C, ts, "12345", enc, sig), BRK_OK);
    n = strlen(enc);
    pct = malloc(n * 3 + 1);
    if (literal_plus) {
        /* percent-encode everything but '+', which is sent as is */
        size_t o = 0;
        for (i = 0; i < n; i++) {
            if (enc[i] == '+')
                pct[o++] = '+';
            else if (enc[i] == '/' || enc[i] == '=')
                o += (size_t)snprintf(pct + o, 4, "%%%02X", enc[i]);
            else
                pct[o++] = enc[i];
        }
        pct[o] = '\0';
    } else {
        codec_pct_encode(enc, pct);
    }
    q = malloc(strlen(pct) + 256);
    snprintf(q, strlen(pct) + 256,
             "/wecom/suite/" H_SUITE "/%s?msg_signature=%s&timestamp=%s"
             "&nonce=12345&echostr=%s",
             route, sig, ts, pct);
    url = h_cb_url(&H, q);
    st = h_http("GET", url, NULL, 0, &body);
    assert_int_equal(st, want_status);
    if (want_status == 200)
        assert_string_equal(body, plain);
    free(body);
    free(url);
    free(q);
    free(pct);
    brk_free(enc);
}

static void
test_verify_suite_id(void **state)
{
    (void)state;
    verify_get("callback", H_SUITE, "1616140317555161061", 0, 200);
}

static void
test_verify_provider_corpid(void **state)
{
    (void)state;
    verify_get("callback", H_PROVIDER, "echo-provider-88", 0, 200);
}

static void
test_verify_literal_plus(void **state)
{
    (void)state;
    verify_get("callback", H_SUITE, "plus+stays+plus", 1, 200);
}

static void
test_verify_data_route(void **state)
{
    (void)state;
    verify_get("data", H_SUITE, "data-route-echo", 0, 200);
    verify_get("data", H_PROVIDER, "data-route-echo2", 0, 200);
}

static void
test_verify_foreign_receiveid(void **state)
{
    (void)state;
    verify_get("callback", "wwsomeoneelse", "nope", 0, 403);
}

/*---- suite_ticket ----*/

static void
test_ticket_stored_sealed(void **state)
{
    char *xml = ticket_xml("TICKET-plaintext-AAAA-1111", now_s()), *body;
    char *ts, *snap;

    (void)state;
    assert_int_equal(post_event(xml, &body), 200);
    assert_string_equal(body, "success");
    ts = redis_str("HGET wb:{" H_SUITE "}:ticket ts");
    assert_non_null(ts);
    assert_true(redis_int("TTL wb:{" H_SUITE "}:ticket") > 1700);
    snap = h_snapshot(&H);
    assert_null(strstr(snap, "TICKET-plaintext"));
    free(snap);
    free(ts);
    free(body);
    brk_free(xml);
}

static void
test_ticket_older_never_overwrites(void **state)
{
    long t = now_s();
    char *newer = ticket_xml("TICKET-NEWER", t);
    char *older = ticket_xml("TICKET-OLDER", t - 100);
    char *body, *ts, *sealed1, *sealed2;

    (void)state;
    assert_int_equal(post_event(newer, &body), 200);
    free(body);
    sealed1 = redis_str("HGET wb:{" H_SUITE "}:ticket ticket");
    assert_int_equal(post_event(older, &body), 200);
    assert_string_equal(body, "success");
    free(body);
    ts = redis_str("HGET wb:{" H_SUITE "}:ticket ts");
    sealed2 = redis_str("HGET wb:{" H_SUITE "}:ticket ticket");
    assert_int_equal(strtol(ts, NULL, 10), t);
    assert_string_equal(sealed1, sealed2);
    free(ts);
    free(sealed1);
    free(sealed2);
    brk_free(newer);
    brk_free(older);
}

/*---- events ----*/

static char *
create_auth_xml(const char *authcode, long ts)
{
    char tsb[24];
    const char *kv[] = {"SuiteId",  H_SUITE,       "AuthCode",  authcode,
                        "InfoType", "create_auth", "TimeStamp", tsb,
                        "State",    "st-123",      "ExtraInfo", ""};

    snprintf(tsb, sizeof(tsb), "%ld", ts);
    return xml_of(kv, 6);
}

static void
test_create_auth_queued_encrypted(void **state)
{
    char *xml = create_auth_xml("AUTHCODE-SECRET-ZZZ-0001", now_s());
    char *body, *dump;

    (void)state;
    assert_int_equal(post_event(xml, &body), 200);
    assert_string_equal(body, "success");
    free(body);
    assert_int_equal(xlen(), 1);
    dump = stream_dump();
    assert_null(strstr(dump, "AUTHCODE-SECRET"));
    assert_null(strstr(dump, "create_auth"));
    assert_null(strstr(dump, "st-123"));
    assert_non_null(strstr(dump, "encrypt"));
    free(dump);
    brk_free(xml);
}

static void
test_large_event_accepted(void **state)
{
    /* ~20 KiB of event seals to an Encrypt of ~27 KiB: under the 64 KiB
     * body cap, so it must be accepted, not refused for its size */
    char *xml = create_auth_xml("AUTHCODE-LARGE-0004", now_s());
    char *big, *body, *p;
    size_t n = strlen(xml), cap, i, k;
    int w;

    (void)state;
    cap = n + 4 * (5000 + 16) + 1;
    big = malloc(cap);
    assert_non_null(big);
    p = strstr(xml, "</xml>");
    assert_non_null(p);
    k = (size_t)(p - xml);
    memcpy(big, xml, k);
    for (i = 0; i < 4; i++) {
        w = snprintf(big + k, cap - k, "<Pad%zu>", i);
        assert_true(w > 0 && (size_t)w < cap - k);
        k += (size_t)w;
        memset(big + k, 'a', 5000);
        k += 5000;
        w = snprintf(big + k, cap - k, "</Pad%zu>", i);
        assert_true(w > 0 && (size_t)w < cap - k);
        k += (size_t)w;
    }
    w = snprintf(big + k, cap - k, "</xml>");
    assert_true(w > 0 && (size_t)w < cap - k);
    assert_true(strlen(big) > 20000);
    assert_int_equal(post_event(big, &body), 200);
    assert_string_equal(body, "success");
    free(body);
    assert_int_equal(xlen(), 1);
    free(big);
    brk_free(xml);
}

static void
test_redelivery_queued_once(void **state)
{
    char *xml = create_auth_xml("AUTHCODE-REDELIVER-0002", now_s());
    char *other = create_auth_xml("AUTHCODE-OTHER-0003", now_s());
    char *body;
    int i;

    (void)state;
    /* fresh nonce, timestamp and ciphertext every time */
    for (i = 0; i < 3; i++) {
        assert_int_equal(post_event(xml, &body), 200);
        assert_string_equal(body, "success");
        free(body);
    }
    assert_int_equal(xlen(), 1);
    assert_int_equal(post_event(other, &body), 200);
    free(body);
    assert_int_equal(xlen(), 2);
    brk_free(xml);
    brk_free(other);
}

static void
test_every_queued_type(void **state)
{
    static const char *const types[] = {"change_auth",
                                        "cancel_auth",
                                        "reset_permanent_code",
                                        "change_contact",
                                        "change_external_contact",
                                        "change_external_chat",
                                        "change_external_tag",
                                        "corp_arch_auth"};
    char tsb[24], *xml, *body;
    size_t i;

    (void)state;
    snprintf(tsb, sizeof(tsb), "%ld", now_s());
    for (i = 0; i < nitems(types); i++) {
        const char *kv[] = {"SuiteId",   H_SUITE, "InfoType",   types[i],
                            "TimeStamp", tsb,     "AuthCorpId", "wwcorpA"};
        xml = xml_of(kv, 4);
        assert_int_equal(post_event(xml, &body), 200);
        assert_string_equal(body, "success");
        free(body);
        brk_free(xml);
    }
    assert_int_equal(queued_marks(), (long long)nitems(types));
    /* only the one that names no corp waits in the suite stream */
    assert_int_equal(xlen(), 1);
}

static void
test_unknown_infotype_acked_not_queued(void **state)
{
    char tsb[24], *xml, *body;
    const char *kv[] = {"SuiteId",         H_SUITE,     "InfoType",
                        "brand_new_event", "TimeStamp", tsb};

    (void)state;
    snprintf(tsb, sizeof(tsb), "%ld", now_s());
    xml = xml_of(kv, 3);
    assert_int_equal(post_event(xml, &body), 200);
    assert_string_equal(body, "success");
    assert_int_equal(xlen(), 0);
    free(body);
    brk_free(xml);
}

/*---- refusals: each leaves Redis exactly as it was ----*/

struct refusal {
    long status;
    char *body;
};

static void
expect_refused_and_unchanged(long (*send)(char **), long want)
{
    char *before = h_snapshot(&H), *after, *body = NULL;
    long st = send(&body);

    after = h_snapshot(&H);
    if (st != want)
        fprintf(stderr, "status %ld, body: %s\n", st, body ? body : "");
    assert_int_equal(st, want);
    assert_null(strstr(body, "success"));
    assert_non_null(strchr(body, ':'));
    assert_string_equal(before, after);
    free(before);
    free(after);
    free(body);
}

static long
send_bad_signature(char **body)
{
    char *xml = create_auth_xml("AC-bad-sig", now_s()), *enc, *env, *url,
         q[256];
    const char *ek[] = {"ToUserName", "Encrypt"};
    const char *ev[2] = {H_SUITE, NULL};
    size_t envlen;
    long st;

    assert_int_equal(wecom_crypto_encrypt(C, xml, strlen(xml), H_SUITE, &enc),
                     BRK_OK);
    ev[1] = enc;
    assert_int_equal(wecom_xml_build(ek, ev, 2, &env, &envlen), BRK_OK);
    snprintf(q, sizeof(q),
             "/wecom/suite/" H_SUITE "/callback?msg_signature="
             "0123456789abcdef0123456789abcdef01234567&timestamp=%ld&nonce=1",
             now_s());
    url = h_cb_url(&H, q);
    st = h_http("POST", url, env, envlen, body);
    free(url);
    brk_free(env);
    brk_free(enc);
    brk_free(xml);
    return st;
}

static long
send_with_query(const char *tail, char **body)
{
    char *xml = create_auth_xml("AC-query", now_s()), *enc, *env, *url;
    char sig[WECOM_CRYPTO_SIG_SIZE], q[512], ts[24], path[640];
    const char *ek[] = {"ToUserName", "Encrypt"};
    const char *ev[2] = {H_SUITE, NULL};
    size_t envlen;
    long st;

    snprintf(ts, sizeof(ts), "%ld", now_s());
    assert_int_equal(wecom_crypto_encrypt(C, xml, strlen(xml), H_SUITE, &enc),
                     BRK_OK);
    assert_int_equal(wecom_crypto_sign(C, ts, "77", enc, sig), BRK_OK);
    ev[1] = enc;
    assert_int_equal(wecom_xml_build(ek, ev, 2, &env, &envlen), BRK_OK);
    snprintf(q, sizeof(q), "msg_signature=%s&timestamp=%s%s", sig, ts, tail);
    snprintf(path, sizeof(path), "/wecom/suite/" H_SUITE "/callback?%s", q);
    url = h_cb_url(&H, path);
    st = h_http("POST", url, env, envlen, body);
    free(url);
    brk_free(env);
    brk_free(enc);
    brk_free(xml);
    return st;
}

static long
send_missing_nonce(char **body)
{
    return send_with_query("", body);
}

static long
send_repeated_nonce(char **body)
{
    return send_with_query("&nonce=77&nonce=77", body);
}

static long
send_bad_escape(char **body)
{
    return send_with_query("&nonce=7%G7", body);
}

static long
send_with_ts(long ts, char **body)
{
    char *xml = create_auth_xml("AC-ts", now_s()), *enc, tsb[24];
    long st;

    snprintf(tsb, sizeof(tsb), "%ld", ts);
    assert_int_equal(wecom_crypto_encrypt(C, xml, strlen(xml), H_SUITE, &enc),
                     BRK_OK);
    st = post_encrypted("/wecom/suite/" H_SUITE "/callback", enc, tsb, "5",
                        body);
    brk_free(enc);
    brk_free(xml);
    return st;
}

static long
send_old_ts(char **body)
{
    return send_with_ts(now_s() - 301 - 5, body);
}

static long
send_future_ts(char **body)
{
    return send_with_ts(now_s() + 301 + 5, body);
}

static long
send_wrong_receiveid(char **body)
{
    char *xml = create_auth_xml("AC-rid", now_s());
    long st = post_event_as("wwnotoursuite", xml, body);

    brk_free(xml);
    return st;
}

static long
send_provider_as_receiveid_on_post(char **body)
{
    char *xml = create_auth_xml("AC-rid2", now_s());
    long st = post_event_as(H_PROVIDER, xml, body);

    brk_free(xml);
    return st;
}

static long
send_enc(const char *enc, char **body)
{
    char ts[24];

    snprintf(ts, sizeof(ts), "%ld", now_s());
    return post_encrypted("/wecom/suite/" H_SUITE "/callback", enc, ts, "9",
                          body);
}

static long
send_bad_base64(char **body)
{
    return send_enc("not*base64!", body);
}

static long
send_short_ciphertext(char **body)
{
    /* 17 bytes: not a whole number of AES blocks */
    return send_enc("AAAAAAAAAAAAAAAAAAAAAAA=", body);
}

/* AES-256-CBC without padding over a caller-built plaintext (len % 16 == 0)
 * so the test controls the padding and length fields. */
static char *
raw_encrypt(const unsigned char *pt, size_t len)
{
    unsigned char key[33], ct[1024];
    char aes[45], *out;
    size_t klen;
    int n1 = 0, n2 = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

    snprintf(aes, sizeof(aes), "%s=", H_AESKEY);
    assert_int_equal(codec_b64_decode(aes, 44, key, sizeof(key), &klen),
                     BRK_OK);
    EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, key);
    EVP_CIPHER_CTX_set_padding(ctx, 0);
    EVP_EncryptUpdate(ctx, ct, &n1, pt, (int)len);
    EVP_EncryptFinal_ex(ctx, ct + n1, &n2);
    EVP_CIPHER_CTX_free(ctx);
    out = malloc(CODEC_B64_ENC_SIZE((size_t)(n1 + n2)));
    codec_b64_encode(ct, (size_t)(n1 + n2), out);
    return out;
}

static long
send_raw_plain(const unsigned char *pt, size_t len, char **body)
{
    char *enc = raw_encrypt(pt, len);
    long st = send_enc(enc, body);

    free(enc);
    return st;
}

static void
frame(unsigned char *buf, uint32_t msglen, const char *msg, const char *rid,
      size_t total)
{
    size_t o = 16, n = strlen(msg), r = strlen(rid), pad;

    memset(buf, 'R', 16);
    buf[o++] = (unsigned char)(msglen >> 24);
    buf[o++] = (unsigned char)(msglen >> 16);
    buf[o++] = (unsigned char)(msglen >> 8);
    buf[o++] = (unsigned char)msglen;
    memcpy(buf + o, msg, n);
    o += n;
    memcpy(buf + o, rid, r);
    o += r;
    pad = total - o;
    memset(buf + o, (int)pad, pad);
}

static long
send_bad_padding(char **body)
{
    unsigned char buf[96];

    frame(buf, 8, "<xml/>xx", H_SUITE, sizeof(buf));
    buf[sizeof(buf) - 2] ^= 1; /* one pad byte wrong */
    return send_raw_plain(buf, sizeof(buf), body);
}

static long
send_length_overrun(char **body)
{
    unsigned char buf[96];

    frame(buf, 0x7fffff00u, "<xml/>xx", H_SUITE, sizeof(buf));
    return send_raw_plain(buf, sizeof(buf), body);
}

static long
send_pad_too_big(char **body)
{
    unsigned char buf[96];

    frame(buf, 8, "<xml/>xx", H_SUITE, sizeof(buf));
    buf[sizeof(buf) - 1] = 33;
    return send_raw_plain(buf, sizeof(buf), body);
}

static long
send_body(const char *env, char **body)
{
    char q[256], *url;
    long st;

    snprintf(q, sizeof(q),
             "/wecom/suite/" H_SUITE "/callback?msg_signature=0123456789abcdef"
             "0123456789abcdef01234567&timestamp=%ld&nonce=1",
             now_s());
    url = h_cb_url(&H, q);
    st = h_http("POST", url, env, strlen(env), body);
    free(url);
    return st;
}

static long
send_malformed_xml(char **body)
{
    return send_body("<xml><Encrypt>abc</Encrypt>", body);
}

static long
send_doctype_xml(char **body)
{
    return send_body("<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e "
                     "SYSTEM \"file:///etc/passwd\">]><xml><Encrypt>&e;"
                     "</Encrypt></xml>",
                     body);
}

static long
send_duplicate_child(char **body)
{
    char *xml = create_auth_xml("AC-dup", now_s()), *enc, *env;
    char sig[WECOM_CRYPTO_SIG_SIZE], ts[24], q[256], *url;
    size_t n;
    long st;

    snprintf(ts, sizeof(ts), "%ld", now_s());
    assert_int_equal(wecom_crypto_encrypt(C, xml, strlen(xml), H_SUITE, &enc),
                     BRK_OK);
    assert_int_equal(wecom_crypto_sign(C, ts, "3", enc, sig), BRK_OK);
    n = strlen(enc) * 2 + 128;
    env = malloc(n);
    snprintf(env, n,
             "<xml><Encrypt><![CDATA[%s]]></Encrypt><Encrypt><![CDATA[%s]]>"
             "</Encrypt></xml>",
             enc, enc);
    snprintf(q, sizeof(q),
             "/wecom/suite/" H_SUITE "/callback?msg_signature=%s&timestamp=%s"
             "&nonce=3",
             sig, ts);
    url = h_cb_url(&H, q);
    st = h_http("POST", url, env, strlen(env), body);
    free(url);
    free(env);
    brk_free(enc);
    brk_free(xml);
    return st;
}

static long
send_oversized(char **body)
{
    size_t n = 64 * 1024 + 1;
    char *big = malloc(n + 1), q[256], *url;
    long st;

    memset(big, 'A', n);
    memcpy(big, "<xml><Encrypt>", 14);
    big[n] = '\0';
    snprintf(q, sizeof(q),
             "/wecom/suite/" H_SUITE "/callback?msg_signature=0123456789abcdef"
             "0123456789abcdef01234567&timestamp=%ld&nonce=1",
             now_s());
    url = h_cb_url(&H, q);
    st = h_http("POST", url, big, n, body);
    free(url);
    free(big);
    return st;
}

static long
send_unknown_suite(char **body)
{
    char *url = h_cb_url(&H, "/wecom/suite/wwnosuchsuite/callback?"
                             "msg_signature=a&timestamp=1&nonce=1");
    long st = h_http("POST", url, "<xml/>", 6, body);

    free(url);
    return st;
}

static long
send_bad_inner_xml(char **body)
{
    const char *inner = "<xml><InfoType>create_auth</InfoType><xml>";
    char *enc;
    long st;

    assert_int_equal(
        wecom_crypto_encrypt(C, inner, strlen(inner), H_SUITE, &enc), BRK_OK);
    st = send_enc(enc, body);
    brk_free(enc);
    return st;
}

static long
send_suite_mismatch(char **body)
{
    char tsb[24], *xml;
    const char *kv[] = {
        "SuiteId", "wwanothersuite", "InfoType", "create_auth", "TimeStamp",
        tsb,       "AuthCode",       "AC-x"};
    long st;

    snprintf(tsb, sizeof(tsb), "%ld", now_s());
    xml = xml_of(kv, 4);
    st = post_event(xml, body);
    brk_free(xml);
    return st;
}

static long
send_data_unknown_tenant(char **body)
{
    const char *inner = "<xml><ToUserName><![CDATA[wwcorpNOTKNOWN]]>"
                        "</ToUserName><MsgType>text</MsgType></xml>";
    char *enc, ts[24];
    long st;

    snprintf(ts, sizeof(ts), "%ld", now_s());
    assert_int_equal(
        wecom_crypto_encrypt(C, inner, strlen(inner), "wwcorpNOTKNOWN", &enc),
        BRK_OK);
    st = post_encrypted("/wecom/suite/" H_SUITE "/data", enc, ts, "4", body);
    brk_free(enc);
    return st;
}

static long
send_put(char **body)
{
    char *url = h_cb_url(&H, "/wecom/suite/" H_SUITE "/callback");
    long st = h_http("PUT", url, "x", 1, body);

    free(url);
    return st;
}

static long
send_empty_ticket(char **body)
{
    char *xml = ticket_xml("", now_s());
    long st = post_event(xml, body);

    brk_free(xml);
    return st;
}

#define REFUSAL(name, fn, status)                                              \
    static void name(void **state)                                             \
    {                                                                          \
        (void)state;                                                           \
        expect_refused_and_unchanged(fn, status);                              \
    }

REFUSAL(test_refuse_bad_signature, send_bad_signature, 403)
REFUSAL(test_refuse_missing_nonce, send_missing_nonce, 400)
REFUSAL(test_refuse_repeated_nonce, send_repeated_nonce, 400)
REFUSAL(test_refuse_bad_escape, send_bad_escape, 400)
REFUSAL(test_refuse_old_timestamp, send_old_ts, 400)
REFUSAL(test_refuse_future_timestamp, send_future_ts, 400)
REFUSAL(test_refuse_wrong_receiveid, send_wrong_receiveid, 403)
REFUSAL(test_refuse_provider_on_post, send_provider_as_receiveid_on_post, 403)
REFUSAL(test_refuse_bad_base64, send_bad_base64, 400)
REFUSAL(test_refuse_short_ciphertext, send_short_ciphertext, 400)
REFUSAL(test_refuse_bad_padding, send_bad_padding, 400)
REFUSAL(test_refuse_pad_too_big, send_pad_too_big, 400)
REFUSAL(test_refuse_length_overrun, send_length_overrun, 400)
REFUSAL(test_refuse_malformed_xml, send_malformed_xml, 400)
REFUSAL(test_refuse_doctype, send_doctype_xml, 400)
REFUSAL(test_refuse_duplicate_child, send_duplicate_child, 400)
REFUSAL(test_refuse_oversized, send_oversized, 413)
REFUSAL(test_refuse_unknown_suite, send_unknown_suite, 404)
REFUSAL(test_refuse_bad_inner_xml, send_bad_inner_xml, 400)
REFUSAL(test_refuse_suite_mismatch, send_suite_mismatch, 403)
REFUSAL(test_refuse_data_unknown_tenant, send_data_unknown_tenant, 403)
REFUSAL(test_refuse_put, send_put, 405)
REFUSAL(test_refuse_empty_ticket, send_empty_ticket, 400)

static void
test_rejections_counted(void **state)
{
    char *url = h_int_url(&H, "/metrics"), *body;

    (void)state;
    assert_int_equal(h_http("GET", url, NULL, 0, &body), 200);
    assert_non_null(strstr(body,
                           "wecom_broker_callback_rejections_total{"
                           "suite=\"" H_SUITE "\",reason=\"bad_signature\"}"));
    assert_non_null(strstr(body, "# TYPE wecom_broker_callbacks_total "
                                 "counter"));
    free(body);
    free(url);
}

/*---- the simulator's sender against the broker ----*/

static void
test_mock_wecom_sender(void **state)
{
    char url[256], *out = NULL;
    const char *argv[] = {"bin/mock-wecom",
                          "callback",
                          "--url",
                          url,
                          "-c",
                          H.conf,
                          "--suite",
                          H_SUITE,
                          "create_auth",
                          "AuthCode=AUTH-FROM-MOCK-0042",
                          "State=s",
                          NULL};
    const char *echo[] = {
        "bin/mock-wecom", "callback", "--url",  url,      "-c", H.conf,
        "--suite",        H_SUITE,    "--echo", "x+y/z=", NULL};

    (void)state;
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/wecom/suite/" H_SUITE "/callback", H.cb_port);
    assert_int_equal(h_run(argv, &out), 0);
    assert_non_null(strstr(out, "success"));
    free(out);
    assert_int_equal(xlen(), 1);
    assert_int_equal(h_run(echo, &out), 0);
    free(out);
}

/*---- Redis down, crash safety, shutdown ----*/

static void
test_redis_down_503_then_recovers(void **state)
{
    char *xml = create_auth_xml("AC-redis-down", now_s()), *body;
    long st = 0, end;

    (void)state;
    h_redis_stop(&H);
    assert_int_equal(post_event(xml, &body), 503);
    assert_null(strstr(body, "success"));
    free(body);
    assert_int_equal(h_redis_start(&H), 0);
    /* the broker reconnects with backoff; poll */
    end = h_now_ms() + 20000;
    while (h_now_ms() < end) {
        st = post_event(xml, &body);
        free(body);
        if (st == 200)
            break;
        usleep(100000);
    }
    assert_int_equal(st, 200);
    assert_int_equal(xlen(), 1);
    brk_free(xml);
}

static void
test_acked_event_survives_kill(void **state)
{
    char *xml = create_auth_xml("AC-crash", now_s()), *body;

    (void)state;
    assert_int_equal(post_event(xml, &body), 200);
    assert_string_equal(body, "success");
    free(body);
    assert_int_equal(h_broker_stop(&H, SIGKILL), 128 + SIGKILL);
    assert_int_equal(xlen(), 1);
    /* still in the stream itself, not only counted: WeCom is unreachable
     * here, so no worker can have finished it */
    assert_int_equal(redis_int("XLEN wb:{" H_SUITE "}:events"), 1);
    assert_int_equal(h_broker_start(&H), 0);
    /* and a restarted broker still recognises it as already queued */
    assert_int_equal(post_event(xml, &body), 200);
    free(body);
    assert_int_equal(xlen(), 1);
    brk_free(xml);
}

static void
test_no_secret_in_logs(void **state)
{
    char *log = h_slurp(H.log);

    (void)state;
    assert_true(strlen(log) > 0);
    assert_null(strstr(log, H_TOKEN));
    assert_null(strstr(log, H_AESKEY));
    assert_null(strstr(log, H_SECRET));
    assert_null(strstr(log, "TICKET-"));
    assert_null(strstr(log, "AUTHCODE-"));
    assert_null(strstr(log, "AUTH-FROM-MOCK"));
    assert_null(strstr(log, "AC-crash"));
    free(log);
}

static void
test_sigterm_exits_zero(void **state)
{
    (void)state;
    assert_int_equal(h_broker_stop(&H, SIGTERM), 0);
    assert_int_equal(h_broker_start(&H), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_verify_suite_id, fresh),
        cmocka_unit_test_setup(test_verify_provider_corpid, fresh),
        cmocka_unit_test_setup(test_verify_literal_plus, fresh),
        cmocka_unit_test_setup(test_verify_data_route, fresh),
        cmocka_unit_test_setup(test_verify_foreign_receiveid, fresh),
        cmocka_unit_test_setup(test_ticket_stored_sealed, fresh),
        cmocka_unit_test_setup(test_ticket_older_never_overwrites, fresh),
        cmocka_unit_test_setup(test_create_auth_queued_encrypted, fresh),
        cmocka_unit_test_setup(test_large_event_accepted, fresh),
        cmocka_unit_test_setup(test_redelivery_queued_once, fresh),
        cmocka_unit_test_setup(test_every_queued_type, fresh),
        cmocka_unit_test_setup(test_unknown_infotype_acked_not_queued, fresh),
        cmocka_unit_test_setup(test_refuse_bad_signature, fresh),
        cmocka_unit_test_setup(test_refuse_missing_nonce, fresh),
        cmocka_unit_test_setup(test_refuse_repeated_nonce, fresh),
        cmocka_unit_test_setup(test_refuse_bad_escape, fresh),
        cmocka_unit_test_setup(test_refuse_old_timestamp, fresh),
        cmocka_unit_test_setup(test_refuse_future_timestamp, fresh),
        cmocka_unit_test_setup(test_refuse_wrong_receiveid, fresh),
        cmocka_unit_test_setup(test_refuse_provider_on_post, fresh),
        cmocka_unit_test_setup(test_refuse_bad_base64, fresh),
        cmocka_unit_test_setup(test_refuse_short_ciphertext, fresh),
        cmocka_unit_test_setup(test_refuse_bad_padding, fresh),
        cmocka_unit_test_setup(test_refuse_pad_too_big, fresh),
        cmocka_unit_test_setup(test_refuse_length_overrun, fresh),
        cmocka_unit_test_setup(test_refuse_malformed_xml, fresh),
        cmocka_unit_test_setup(test_refuse_doctype, fresh),
        cmocka_unit_test_setup(test_refuse_duplicate_child, fresh),
        cmocka_unit_test_setup(test_refuse_oversized, fresh),
        cmocka_unit_test_setup(test_refuse_unknown_suite, fresh),
        cmocka_unit_test_setup(test_refuse_bad_inner_xml, fresh),
        cmocka_unit_test_setup(test_refuse_suite_mismatch, fresh),
        cmocka_unit_test_setup(test_refuse_data_unknown_tenant, fresh),
        cmocka_unit_test_setup(test_refuse_put, fresh),
        cmocka_unit_test_setup(test_refuse_empty_ticket, fresh),
        cmocka_unit_test(test_rejections_counted),
        cmocka_unit_test_setup(test_mock_wecom_sender, fresh),
        cmocka_unit_test_setup(test_redis_down_503_then_recovers, fresh),
        cmocka_unit_test_setup(test_acked_event_survives_kill, fresh),
        cmocka_unit_test(test_sigterm_exits_zero),
        cmocka_unit_test(test_no_secret_in_logs),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
