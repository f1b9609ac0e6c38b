/*
 * Fuzz the callback path that runs before Redis with callback.c's own
 * checks: query_parse and callback_check_query, then callback_open
 * (outer XML and its Encrypt element, signature, decryption, receiveid,
 * inner event XML) and callback_event_type, and the Redis key names built
 * from what they accept.
 *
 * The first byte picks a suite (fixed Token and EncodingAESKey: the
 * integration tests' and the two protocol test vectors'), the route
 * (callback or data), the method (GET verification or POST event) and how
 * the rest is used:
 *   raw:     QUERY '\n' BODY, used as received (GET: BODY unused);
 *   signed:  NONCE '\n' TIMESTAMP '\n' BODY; the query is built with a
 *            correct signature over the Encrypt text found in BODY (GET:
 *            over BODY as echostr), so any ciphertext reaches decryption;
 *   sealed:  NONCE '\n' RECEIVEID '\n' RANDOM(16) EVENT; EVENT is
 *            encrypted for RECEIVEID with wecom_crypto_encrypt_with_random
 *            (the random prefix from the input, so a run replays),
 *            wrapped with wecom_xml_build and signed, so the inner event
 *            parser is reached;
 *   damaged: as sealed, then two input bytes pick a ciphertext position
 *            and a new character before signing.
 * Properties: whatever the harness signed verifies; what it sealed
 * decrypts to the same event and receiveid; a built envelope parses.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "callback.h"
#include "codec.h"
#include "keys.h"
#include "query.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#include "fuzz.h"

/* as callback.c */
#define ENV_MAX_QUERY_PARAMS 16
#define ENV_MAX_BODY         CALLBACK_MAX_BODY
/* the harness's clock and callback_max_skew: both vectors fall inside */
#define ENV_NOW  1583968000LL
#define ENV_SKEW 30000LL

struct env_suite {
    const char *suite_id, *token, *aes_key, *provider_corpid;
};

static const struct env_suite env_suites[4] = {
    /* tests/integ/harness.h */
    {"wwtestsuite00001", "QDG6eK3hXn2Ls8bVtEo",
     "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2A", "wwtestprovider01"},
    /* wecom-protocol.md §1.8 vector A: receiveid is the suite id */
    {"ww6a112864f8022910", "kjr2TKI8umCBfVF3wAHk8JiPwma5VBme",
     "4Ma3YBrSBbX2aez8MJpXGBne5LSDwgGqHbhM9WPYIws", "wwprovider000001"},
    /* vector B: a data callback for the corp wwf181555a13a31443 */
    {"wwsuitevectorb01", "kz7Yx62CH8SaLN",
     "cD0d7jx4tYvVtzqrmh3Dm3QFCXe6f8SlHoMtMh3qQEP", NULL},
    /* no provider corpid */
    {"wwtestsuite00002", "QDG6eK3hXn2Ls8bVtEo",
     "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2A", NULL},
};

static struct wecom_crypto *env_crypto[4];

/* callback.c's limits for the envelope: Encrypt may fill the body */
static const struct wecom_xml_limits env_limits = {ENV_MAX_BODY, 0, 0,
                                                   ENV_MAX_BODY};

static void
env_init(void)
{
    size_t i;

    if (env_crypto[0] != NULL)
        return;
    for (i = 0; i < 4; i++)
        FUZZ_CHECK(wecom_crypto_new(env_suites[i].token, env_suites[i].aes_key,
                                    &env_crypto[i]) == BRK_OK);
}

enum env_mode { ENV_RAW, ENV_SIGNED, ENV_SEALED, ENV_DAMAGED };

/* What the harness built, to check the path gives it back. */
struct env_expect {
    int signed_ok;   /* the query carries a signature we made */
    const char *msg; /* sealed event (NULL: not sealed) */
    size_t msglen;
    const char *receiveid; /* sealed receiveid */
};

/* A decrypted event through callback_event_type, and the key names
 * handle_event then builds. */
static void
env_event(const struct env_suite *su, const struct wecom_xml *ev, int data,
          const char *rid)
{
    struct callback_refusal why;
    char seen[KEYS_MAX], stream[KEYS_MAX], tenant[KEYS_MAX], hmac[65];
    const char *type = NULL, *sid, *it, *ticket, *ts;

    /* the seen key carries an HMAC; any 64 hex digits do here */
    memset(hmac, 'a', 64);
    hmac[64] = '\0';
    if (data) {
        if (keys_suite_seen(seen, sizeof(seen), "wb:", su->suite_id, hmac) ==
                BRK_OK &&
            keys_suite_events(stream, sizeof(stream), "wb:", su->suite_id) ==
                BRK_OK &&
            keys_tenant(tenant, sizeof(tenant), "wb:", rid, su->suite_id) ==
                BRK_OK)
            FUZZ_CHECK(strlen(tenant) < sizeof(tenant));
        return;
    }
    if (callback_event_type(ev, su->suite_id, &type, &why) != BRK_OK) {
        FUZZ_CHECK(why.status >= 400 && why.reason != NULL);
        return;
    }
    /* what it accepted has the shape it promised */
    sid = wecom_xml_get(ev, "SuiteId");
    it = wecom_xml_get(ev, "InfoType");
    FUZZ_CHECK(sid != NULL && strcmp(sid, su->suite_id) == 0);
    FUZZ_CHECK(it != NULL && it[0] != '\0');
    if (type == NULL)
        return;
    FUZZ_CHECK(strcmp(type, it) == 0);
    if (strcmp(type, "suite_ticket") == 0) {
        ticket = wecom_xml_get(ev, "SuiteTicket");
        ts = wecom_xml_get(ev, "TimeStamp");
        FUZZ_CHECK(ticket != NULL && ticket[0] != '\0' &&
                   strlen(ticket) <= CALLBACK_TICKET_MAX);
        FUZZ_CHECK(ts != NULL && strspn(ts, "0123456789") == strlen(ts));
        FUZZ_CHECK(keys_suite_ticket(seen, sizeof(seen), "wb:", su->suite_id) ==
                   BRK_OK);
        return;
    }
    FUZZ_CHECK(keys_suite_seen(seen, sizeof(seen), "wb:", su->suite_id, hmac) ==
               BRK_OK);
    FUZZ_CHECK(keys_suite_events(stream, sizeof(stream), "wb:", su->suite_id) ==
               BRK_OK);
}

/*
 * One request through the path. body is bodylen bytes (POST); the query is
 * NUL-terminated. Returns BRK_OK when the request would be accepted.
 */
static enum brk_err
env_request(size_t si, int get, int data, const char *rawq, const char *body,
            size_t bodylen, const struct env_expect *want)
{
    const struct env_suite *su = &env_suites[si];
    struct query *q = NULL;
    struct callback_refusal why;
    struct callback_msg m;
    enum brk_err err;

    memset(&m, 0, sizeof(m));
    err = query_parse(rawq, ENV_MAX_QUERY_PARAMS, &q);
    if (err) {
        FUZZ_CHECK(!want->signed_ok);
        goto out;
    }
    if (callback_check_query(q, get, ENV_NOW, ENV_SKEW, &why) != 0) {
        FUZZ_CHECK(why.status == 400 && why.reason != NULL);
        err = BRK_ERR_INVAL;
        goto out;
    }
    err = callback_open(env_crypto[si], q, get, data, su->suite_id,
                        su->provider_corpid, body, bodylen, &m, &why);
    if (err) {
        FUZZ_CHECK(m.msg == NULL && m.receiveid == NULL && m.env == NULL &&
                   m.ev == NULL);
        FUZZ_CHECK(why.status >= 400 && why.status < 500 && why.reason != NULL);
        /* a signature we made never fails, nor does what we sealed */
        FUZZ_CHECK(!want->signed_ok || err != BRK_ERR_WX_SIGNATURE);
        FUZZ_CHECK(want->msg == NULL || err == BRK_ERR_WX_PARSE_XML ||
                   err == BRK_ERR_WX_RECEIVEID || err == BRK_ERR_TOOBIG ||
                   (!get && strcmp(why.reason, "bad_event") == 0));
        goto out;
    }
    FUZZ_CHECK(m.encrypt != NULL && m.encrypt[0] != '\0');
    FUZZ_CHECK(m.msg[m.msglen] == '\0' && m.receiveid[0] != '\0');
    if (want->msg != NULL) {
        FUZZ_CHECK(m.msglen == want->msglen &&
                   memcmp(m.msg, want->msg, m.msglen) == 0);
        FUZZ_CHECK(strcmp(m.receiveid, want->receiveid) == 0);
    }
    if (get) {
        FUZZ_CHECK(m.which < 2);
        FUZZ_CHECK(strcmp(m.receiveid,
                          m.which == 0 ? su->suite_id : su->provider_corpid) ==
                   0);
        goto out;
    }
    FUZZ_CHECK(m.ev != NULL && m.env != NULL);
    if (!data)
        FUZZ_CHECK(strcmp(m.receiveid, su->suite_id) == 0);
    env_event(su, m.ev, data, m.receiveid);
out:
    callback_msg_clear(&m);
    query_free(q);
    return err;
}

/*
 * "msg_signature=SIG&timestamp=TS&nonce=NONCE[&echostr=ECHO]" with the
 * values percent-encoded; owned (brk_free), NULL when out of memory.
 */
static char *
env_query(const char *sig, const char *ts, const char *nonce,
          const char *echostr)
{
    char *enc_ts = NULL, *enc_nonce = NULL, *enc_echo = NULL, *q = NULL;
    size_t cap;

    enc_ts = brk_malloc(3 * strlen(ts) + 1);
    enc_nonce = brk_malloc(3 * strlen(nonce) + 1);
    enc_echo = brk_malloc(echostr ? 3 * strlen(echostr) + 1 : 1);
    if (enc_ts == NULL || enc_nonce == NULL || enc_echo == NULL)
        goto out;
    codec_pct_encode(ts, enc_ts);
    codec_pct_encode(nonce, enc_nonce);
    enc_echo[0] = '\0';
    if (echostr != NULL)
        codec_pct_encode(echostr, enc_echo);
    cap = strlen(sig) + strlen(enc_ts) + strlen(enc_nonce) + strlen(enc_echo) +
          64;
    q = brk_malloc(cap);
    if (q == NULL)
        goto out;
    snprintf(q, cap, "msg_signature=%s&timestamp=%s&nonce=%s%s%s", sig, enc_ts,
             enc_nonce, echostr ? "&echostr=" : "", enc_echo);
out:
    brk_free(enc_ts);
    brk_free(enc_nonce);
    brk_free(enc_echo);
    return q;
}

/* Sign encrypt and send it: as query echostr (GET) or in body (POST). */
static void
env_send_signed(size_t si, int get, int data, const char *nonce, const char *ts,
                const char *encrypt, const char *body, size_t bodylen,
                const struct env_expect *want)
{
    char sig[WECOM_CRYPTO_SIG_SIZE], *q;
    struct env_expect w = *want;

    if (wecom_crypto_sign(env_crypto[si], ts, nonce, encrypt, sig) != BRK_OK)
        return;
    q = env_query(sig, ts, nonce, get ? encrypt : NULL);
    if (q == NULL)
        return;
    /* a signature we made must verify once the checks before it pass */
    w.signed_ok = 1;
    (void)env_request(si, get, data, q, body, bodylen, &w);
    brk_free(q);
}

/* The Encrypt text of body, or NULL. Owned (brk_free). */
static char *
env_encrypt_of(const char *body, size_t bodylen)
{
    struct wecom_xml *x = NULL;
    const char *e;
    char *out = NULL;

    if (wecom_xml_parse(body, bodylen, &env_limits, &x, NULL) != BRK_OK)
        return NULL;
    e = wecom_xml_get(x, "Encrypt");
    if (e != NULL && e[0] != '\0')
        out = brk_strdup(e);
    wecom_xml_free(x);
    return out;
}

static void
env_sealed(size_t si, int get, int data, int damaged, struct fuzz_in *in)
{
    static const char *const keys[] = {"ToUserName", "Encrypt", "AgentID"};
    const char *values[3];
    char *nonce = NULL, *rid = NULL, *ct = NULL, *body = NULL, ts[24];
    const uint8_t *rnd, *event;
    uint8_t pos, ch;
    size_t rndlen, evlen, bodylen = 0, ctlen;
    struct wecom_xml *x = NULL;
    struct env_expect want = {0, NULL, 0, NULL};

    snprintf(ts, sizeof(ts), "%lld", ENV_NOW + (int8_t)fuzz_byte(in));
    pos = fuzz_byte(in);
    ch = fuzz_byte(in);
    nonce = fuzz_field(in, '\n', NULL);
    rid = fuzz_field(in, '\n', NULL);
    rnd = fuzz_take(in, 16, &rndlen);
    if (nonce == NULL || rid == NULL || rndlen != 16)
        goto out;
    event = fuzz_take(in, in->n, &evlen);
    if (wecom_crypto_encrypt_with_random(env_crypto[si], rnd,
                                         (const char *)event, evlen, rid,
                                         &ct) != BRK_OK) {
        FUZZ_CHECK(rid[0] == '\0');
        goto out;
    }
    ctlen = strlen(ct);
    if (damaged) {
        ct[pos % ctlen] = (char)(ch ? ch : '=');
        ct[ctlen = strnlen(ct, ctlen)] = '\0';
        if (ctlen == 0)
            goto out;
    } else {
        want.msg = (const char *)event;
        want.msglen = evlen;
        want.receiveid = rid;
    }
    values[0] = env_suites[si].suite_id;
    values[1] = ct;
    values[2] = "";
    if (!get) {
        /* a damaged text may hold bytes the builder refuses; what it
         * builds, the parser must read back unchanged */
        if (wecom_xml_build(keys, values, 3, &body, &bodylen) != BRK_OK) {
            FUZZ_CHECK(damaged);
            goto out;
        }
        /* over the body limit the request is refused before parsing */
        if (bodylen <= ENV_MAX_BODY) {
            FUZZ_CHECK(wecom_xml_parse(body, bodylen, &env_limits, &x, NULL) ==
                       BRK_OK);
            FUZZ_CHECK(strcmp(wecom_xml_get(x, "Encrypt"), ct) == 0);
            wecom_xml_free(x);
        }
    }
    env_send_signed(si, get, data, nonce, ts, ct, body, bodylen, &want);
out:
    brk_free(body);
    brk_free(ct);
    brk_free(rid);
    brk_free(nonce);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = {data, size};
    struct env_expect none = {0, NULL, 0, NULL};
    uint8_t flags = fuzz_byte(&in);
    size_t si = flags & 3, bodylen;
    int get = (flags & 0x20) != 0, route_data = (flags & 0x10) != 0;
    char *a = NULL, *b = NULL, *enc = NULL;
    const char *body;

    env_init();
    switch ((enum env_mode)((flags >> 2) & 3)) {
    case ENV_RAW:
        a = fuzz_field(&in, '\n', NULL);
        body = (const char *)fuzz_take(&in, in.n, &bodylen);
        if (a != NULL)
            (void)env_request(si, get, route_data, a, body, bodylen, &none);
        break;
    case ENV_SIGNED:
        a = fuzz_field(&in, '\n', NULL);
        b = fuzz_field(&in, '\n', NULL);
        body = (const char *)fuzz_take(&in, in.n, &bodylen);
        if (a == NULL || b == NULL)
            break;
        if (get) {
            /* the rest is the echostr, up to a NUL as in a URL */
            enc = brk_strndup(body, bodylen);
            if (enc != NULL && enc[0] != '\0')
                env_send_signed(si, 1, route_data, a, b, enc, NULL, 0, &none);
        } else {
            enc = env_encrypt_of(body, bodylen);
            if (enc != NULL)
                env_send_signed(si, 0, route_data, a, b, enc, body, bodylen,
                                &none);
        }
        break;
    case ENV_SEALED:
    case ENV_DAMAGED:
        env_sealed(si, get, route_data, ((flags >> 2) & 3) == ENV_DAMAGED, &in);
        break;
    }
    brk_free(enc);
    brk_free(b);
    brk_free(a);
    return 0;
}
