/*
 * Tests for the stored-record decoders: each accepts exactly its shape and
 * refuses anything else (truncated JSON, JSON of another shape, a corpid
 * in other letter cases, numbers with signs or junk, NUL bytes, replies of
 * the wrong type), never decodes to a wider default, and under allocation
 * failure at every step answers BRK_ERR_NOMEM without leaking. Replies are
 * real hiredis replies, read from RESP text.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "broker.h"
#include "cache.h"
#include "capability.h"
#include "record.h"
#include "visible_range.h"

#define SVC_ID "0123456789abcdef"
#define SALT   "00112233445566778899aabbccddeeff"
#define HASH   "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define CORP   "wwcorp0001"
#define TOKEN  "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

/*---- Replies ----*/

/* A reply read from RESP text (freeReplyObject it). */
static redisReply *
resp(const char *text, size_t len)
{
    redisReader *rd = redisReaderCreate();
    void *r = NULL;

    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, text, len), REDIS_OK);
    assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
    assert_non_null(r);
    redisReaderFree(rd);
    return r;
}

static redisReply *
resp_s(const char *text)
{
    return resp(text, strlen(text));
}

/* Append a bulk string of len bytes to buf. */
static void
bulk(char *buf, size_t cap, const char *s, size_t len)
{
    size_t n = strlen(buf);

    snprintf(buf + n, cap - n, "$%zu\r\n", len);
    n = strlen(buf);
    assert_true(n + len + 3 < cap);
    memcpy(buf + n, s, len);
    memcpy(buf + n + len, "\r\n", 3);
}

/* The RESP of a hash: n field/value pairs (NULL-terminated list); into
 * buf, its length returned. Values may hold NUL when given with a length
 * through hash_text_n. */
static size_t
hash_text(char *buf, size_t cap, const char *const *kv)
{
    size_t n = 0, i;

    while (kv[n] != NULL)
        n++;
    snprintf(buf, cap, "*%zu\r\n", n);
    for (i = 0; i < n; i++)
        bulk(buf, cap, kv[i], strlen(kv[i]));
    return strlen(buf);
}

static redisReply *
hash_reply(const char *const *kv)
{
    char buf[16384];
    size_t len = hash_text(buf, sizeof(buf), kv);

    return resp(buf, len);
}

/*---- Delivery settings ----*/

/* A valid delivery hash with field f set to v (NULL: removed; a field not
 * among them: added). */
static enum brk_err
dlv_decode(const char *f, const char *v, struct record_delivery *out)
{
    const char *kv[24] = {
        "url",        "http://127.0.0.1:9/cb",
        "events",     "create_auth,change_contact/create_user",
        "suite",      "",
        "on",         "1",
        "since_ms",   "1700000000000",
        "gen",        "1",
        "token",      "s1.AAAA",
        "key",        "s1.BBBB",
        "updated_at", "1700000000"};
    size_t i, n = 18;
    redisReply *r;
    enum brk_err err;

    for (i = 0; f != NULL && i < n; i += 2) {
        if (strcmp(kv[i], f) == 0) {
            if (v == NULL) {
                kv[i] = kv[n - 2];
                kv[i + 1] = kv[n - 1];
                n -= 2;
            } else {
                kv[i + 1] = v;
            }
            break;
        }
    }
    if (f != NULL && i >= n && v != NULL) {
        kv[n++] = f;
        kv[n++] = v;
    }
    kv[n] = NULL;
    r = hash_reply(kv);
    err = record_delivery_decode(r, out);
    freeReplyObject(r);
    return err;
}

static void
test_delivery_setting(void **state)
{
    struct record_delivery d;
    static const char *const bad[][2] = {
        {"url", "ftp://h/x"},
        {"url", "http://u:p@h/"},
        {"url", NULL},
        {"events", "nope"},
        {"events", "create_auth,create_auth"},
        {"suite", "a b"},
        {"on", "yes"},
        {"on", NULL},
        {"since_ms", "-1"},
        {"since_ms", "01"},
        {"gen", "0"},
        {"token", "plain"},
        {"key", NULL},
        {"updated_at", "x"},
        {"colour", "blue"},
    };
    size_t i;

    (void)state;
    assert_int_equal(dlv_decode(NULL, NULL, &d), BRK_OK);
    assert_string_equal(d.url, "http://127.0.0.1:9/cb");
    assert_true(d.on);
    assert_int_equal(d.gen, 1);
    assert_int_equal(d.since_ms, 1700000000000LL);
    assert_int_equal(dlv_decode("on", "0", &d), BRK_OK);
    assert_false(d.on);
    assert_int_equal(dlv_decode("events", "", &d), BRK_OK);
    assert_string_equal(d.events, "");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&d, 0x5a, sizeof(d));
        if (dlv_decode(bad[i][0], bad[i][1], &d) != BRK_ERR_INVAL)
            fprintf(stderr, "# case %zu: %s\n", i, bad[i][0]);
        assert_int_equal(dlv_decode(bad[i][0], bad[i][1], &d), BRK_ERR_INVAL);
    }
    {
        redisReply *r = resp_s("*0\r\n");

        assert_int_equal(record_delivery_decode(r, &d), BRK_ERR_NOTFOUND);
        freeReplyObject(r);
    }
}

/*---- Services ----*/

/* A valid service hash with one field replaced (or removed, value NULL,
 * or added when not among them). */
static redisReply *
svc_reply(const char *field, const char *value)
{
    static const char *const base[] = {
        "name",  "reader",     "salt",          SALT,         "hash",
        HASH,    "scopes",     "contacts.read", "gen",        "0",
        "suite", "",           "corps",         "",           "parties",
        "",      "created_at", "1700000000",    "updated_at", "1700000000",
    };
    const char *kv[40];
    size_t n = 0, i;
    int seen = 0;

    for (i = 0; i < nitems(base); i += 2) {
        if (field != NULL && strcmp(base[i], field) == 0) {
            seen = 1;
            if (value == NULL)
                continue;
            kv[n++] = base[i];
            kv[n++] = value;
            continue;
        }
        kv[n++] = base[i];
        kv[n++] = base[i + 1];
    }
    if (field != NULL && !seen && value != NULL) {
        kv[n++] = field;
        kv[n++] = value;
    }
    kv[n] = NULL;
    return hash_reply(kv);
}

static enum brk_err
svc_decode_with(const char *field, const char *value,
                struct record_service **out)
{
    redisReply *r = svc_reply(field, value);
    enum brk_err err = record_service_decode(SVC_ID, r, out);

    freeReplyObject(r);
    return err;
}

static void
svc_refused(const char *field, const char *value)
{
    struct record_service *s = NULL;
    enum brk_err err = svc_decode_with(field, value, &s);

    if (err != BRK_ERR_INVAL)
        fprintf(stderr, "# %s = %s: %s\n", field, value ? value : "(none)",
                brk_strerror(err));
    assert_int_equal(err, BRK_ERR_INVAL);
    assert_null(s);
}

static struct record_service *
svc_ok(const char *field, const char *value)
{
    struct record_service *s = NULL;

    assert_int_equal(svc_decode_with(field, value, &s), BRK_OK);
    assert_non_null(s);
    assert_int_equal(s->refs, 1);
    return s;
}

static void
test_service_valid(void **state)
{
    struct record_service *s;
    const struct record_parties *p = NULL;

    (void)state;
    s = svc_ok(NULL, NULL);
    assert_string_equal(s->id, SVC_ID);
    assert_string_equal(s->name, "reader");
    assert_int_equal(s->gen, 0);
    assert_false(s->revoked);
    assert_true(s->any_corp);
    assert_true(record_service_allows_corp(s, CORP));
    assert_int_equal(record_service_parties(s, CORP, &p), BRK_OK);
    assert_null(p);
    record_service_unref(s);

    s = svc_ok("corps", "[\"" CORP "\",\"wwcorp0002\"]");
    assert_false(s->any_corp);
    assert_true(record_service_allows_corp(s, CORP));
    assert_true(record_service_allows_corp(s, "wwcorp0002"));
    assert_false(record_service_allows_corp(s, "wwcorp0003"));
    /* other letter cases name another corp: not allowed */
    assert_false(record_service_allows_corp(s, "WWCORP0001"));
    record_service_unref(s);

    s = svc_ok("parties", "{\"" CORP "\":[2,3],\"wwcorp0002\":[]}");
    assert_int_equal(record_service_parties(s, CORP, &p), BRK_OK);
    assert_non_null(p);
    assert_int_equal(p->n, 2);
    assert_int_equal(p->ids[0], 2);
    assert_int_equal(p->ids[1], 3);
    assert_int_equal(record_service_parties(s, "wwcorp0002", &p), BRK_OK);
    assert_non_null(p);
    assert_int_equal(p->n, 0);
    assert_int_equal(record_service_parties(s, "wwcorp0003", &p), BRK_OK);
    assert_null(p);
    /* an entry for this corp in other letter cases: doubt */
    p = NULL;
    assert_int_equal(record_service_parties(s, "WWCORP0001", &p),
                     BRK_ERR_INVAL);
    assert_null(p);
    record_service_unref(s);

    s = svc_ok("gen", "4294967296");
    assert_int_equal(s->gen, 4294967296L);
    record_service_unref(s);
    s = svc_ok("revoked_at", "1700000001");
    assert_true(s->revoked);
    record_service_unref(s);
    s = svc_ok("suite", "wwsuite01");
    assert_string_equal(s->suite, "wwsuite01");
    record_service_unref(s);
    /* fields it does not know are left alone */
    s = svc_ok("budget", "{whatever");
    record_service_unref(s);
    s = svc_ok("scopes", "contacts.read,member.sensitive");
    record_service_unref(s);
    /* capabilities: absent or "" is none; names in any order */
    s = svc_ok(NULL, NULL);
    assert_int_equal(s->caps, 0);
    record_service_unref(s);
    s = svc_ok("capabilities", "");
    assert_int_equal(s->caps, 0);
    record_service_unref(s);
    s = svc_ok("capabilities", "messages,external.write");
    assert_int_equal(s->caps, CAP_MESSAGES | CAP_EXTERNAL_WRITE);
    record_service_unref(s);
    /* a write rate: absent is none of its own */
    s = svc_ok(NULL, NULL);
    assert_int_equal(s->write_rate, 0);
    record_service_unref(s);
    s = svc_ok("write_rate", "30");
    assert_int_equal(s->write_rate, 30);
    record_service_unref(s);
    /* white space as JSON allows it */
    s = svc_ok("corps", " [ \"" CORP "\" ,\n\"wwcorp0002\" ] ");
    assert_int_equal(s->ncorps, 2);
    assert_true(record_service_allows_corp(s, "wwcorp0002"));
    record_service_unref(s);
    s = svc_ok("parties", "{ \"" CORP "\" : [ 2 , 3 ] }");
    assert_int_equal(record_service_parties(s, CORP, &p), BRK_OK);
    assert_int_equal(p->n, 2);
    record_service_unref(s);
}

static void
test_service_refusals(void **state)
{
    static const char *const bad[][2] = {
        /* missing fields */
        {"name", NULL},
        {"salt", NULL},
        {"hash", NULL},
        {"scopes", NULL},
        {"gen", NULL},
        /* scalar fields out of shape */
        {"name", ""},
        {"name", "a b"},
        {"salt", "0011"},
        {"salt", "00112233445566778899AABBCCDDEEFF"},
        {"hash", "xyz"},
        {"scopes", ""},
        {"scopes", "contacts.read,"},
        {"scopes", ",contacts.read"},
        {"scopes", "contacts.read,no.such.scope"},
        {"scopes", "never"},
        {"gen", ""},
        {"gen", "0abc"},
        {"gen", "01"},
        {"gen", "-1"},
        {"gen", "+1"},
        {"gen", " 1"},
        {"gen", "1 "},
        {"gen", "0x10"},
        {"gen", "99999999999999999999"},
        {"suite", "a/b"},
        /* capabilities that do not parse grant nothing: refused */
        {"capabilities", "external.write,"},
        {"capabilities", ",messages"},
        {"capabilities", "messages,messages"},
        {"capabilities", "external.Write"},
        {"capabilities", "external.write messages"},
        {"capabilities", "all"},
        /* a write rate that does not parse never unlimits: refused */
        {"write_rate", ""},
        {"write_rate", "0"},
        {"write_rate", "-5"},
        {"write_rate", "10/min"},
        {"write_rate", "1000001"},
        /* corps: truncated, another shape, empty */
        {"corps", "[\"" CORP "\""},
        {"corps", "[\"" CORP "\","},
        {"corps", "["},
        {"corps", "null"},
        {"corps", "true"},
        {"corps", "\"" CORP "\""},
        {"corps", "{\"" CORP "\":true}"},
        {"corps", "[]"},
        {"corps", "[1]"},
        {"corps", "[null]"},
        {"corps", "[\"\"]"},
        {"corps", "[\"a b\"]"},
        {"corps", "[\"" CORP "\"] x"},
        /* parties: truncated, another shape, bad ids, two spellings */
        {"parties", "{\"" CORP "\":[2"},
        {"parties", "{\"" CORP "\":[2]"},
        {"parties", "{"},
        {"parties", "[2]"},
        {"parties", "null"},
        {"parties", "{}"},
        {"parties", "{\"" CORP "\":2}"},
        {"parties", "{\"" CORP "\":\"2\"}"},
        {"parties", "{\"" CORP "\":[\"2\"]}"},
        {"parties", "{\"" CORP "\":[2.0]}"},
        {"parties", "{\"" CORP "\":[-1]}"},
        {"parties", "{\"" CORP "\":[4294967296]}"},
        {"parties", "{\"" CORP "\":null}"},
        {"parties", "{\"a b\":[2]}"},
        {"parties", "{\"" CORP "\":[2],\"" CORP "\":[1]}"},
        {"parties", "{\"" CORP "\":[2],\"WWCORP0001\":[1]}"},
        /* what no encoder writes: escapes, trailing commas, nesting,
         * numbers in other spellings */
        {"corps", "[\"ww\\u0063orp\"]"},
        {"corps", "[\"" CORP "\",]"},
        {"corps", "[[\"" CORP "\"]]"},
        {"corps", "[\"" CORP "\" \"x\"]"},
        {"parties", "{\"" CORP "\":[2,]}"},
        {"parties", "{\"" CORP "\":[2],}"},
        {"parties", "{\"" CORP "\":[02]}"},
        {"parties", "{\"" CORP "\":[2e0]}"},
        {"parties", "{\"" CORP "\":[[2]]}"},
        {"parties", "{\"" CORP "\" [2]}"},
        {"parties", "{\"" CORP "\":[2]} {}"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < nitems(bad); i++)
        svc_refused(bad[i][0], bad[i][1]);
}

static void
test_service_reply_shapes(void **state)
{
    struct record_service *s = NULL;
    redisReply *r;
    static const char nul_name[] = "*10\r\n$4\r\nname\r\n$3\r\na\0b\r\n"
                                   "$4\r\nsalt\r\n$32\r\n" SALT "\r\n"
                                   "$4\r\nhash\r\n$64\r\n" HASH "\r\n"
                                   "$6\r\nscopes\r\n$13\r\ncontacts.read\r\n"
                                   "$3\r\ngen\r\n$1\r\n0\r\n";

    (void)state;
    /* an empty hash: no such service */
    r = resp("*0\r\n", 4);
    assert_int_equal(record_service_decode(SVC_ID, r, &s), BRK_ERR_NOTFOUND);
    freeReplyObject(r);
    /* not a hash */
    r = resp("$3\r\nabc\r\n", 9);
    assert_int_equal(record_service_decode(SVC_ID, r, &s), BRK_ERR_INVAL);
    freeReplyObject(r);
    r = resp("*1\r\n$4\r\nname\r\n", 14);
    assert_int_equal(record_service_decode(SVC_ID, r, &s), BRK_ERR_INVAL);
    freeReplyObject(r);
    r = resp("*2\r\n$4\r\nname\r\n:1\r\n", 18);
    assert_int_equal(record_service_decode(SVC_ID, r, &s), BRK_ERR_INVAL);
    freeReplyObject(r);
    r = resp("-ERR x\r\n", 8);
    assert_int_equal(record_service_decode(SVC_ID, r, &s), BRK_ERR_INVAL);
    freeReplyObject(r);
    assert_int_equal(record_service_decode(SVC_ID, NULL, &s), BRK_ERR_INVAL);
    /* a NUL inside a value */
    r = resp(nul_name, sizeof(nul_name) - 1);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(record_service_decode(SVC_ID, r, &s), BRK_ERR_INVAL);
    freeReplyObject(r);
    /* the id the record was found under */
    r = svc_reply(NULL, NULL);
    assert_int_equal(record_service_decode("0123", r, &s), BRK_ERR_INVAL);
    assert_int_equal(record_service_decode(NULL, r, &s), BRK_ERR_INVAL);
    freeReplyObject(r);
    assert_null(s);
}

/* Every allocation failing in turn: BRK_ERR_NOMEM or success, nothing
 * else, and no leak (checked under the sanitizers). */
static void
test_service_out_of_memory(void **state)
{
    redisReply *r = svc_reply("corps", "[\"" CORP "\",\"wwcorp0002\"]");
    redisReply *r2 = NULL;
    struct record_service *s;
    enum brk_err err;
    unsigned long n;
    int pass, failed;

    (void)state;
    for (pass = 0; pass < 2; pass++) {
        for (n = 1;; n++) {
            s = NULL;
            brk_alloc_fail_at(n);
            err = record_service_decode(SVC_ID, pass ? r2 : r, &s);
            failed = brk_alloc_failed();
            brk_alloc_fail_at(0);
            if (err == BRK_OK) {
                /* only once nothing failed: never a partial record */
                assert_false(failed);
                assert_int_equal(s->ncorps, pass ? 0 : 2);
                assert_int_equal(s->nparties, pass ? 2 : 0);
                record_service_unref(s);
                break;
            }
            /* jansson does not always say why it failed */
            assert_true(err == BRK_ERR_NOMEM || err == BRK_ERR_INVAL);
            assert_true(failed);
            assert_null(s);
            assert_true(n < 1000);
        }
        if (r2 == NULL) {
            freeReplyObject(r);
            r = svc_reply("parties", "{\"" CORP "\":[2,3],\"wwc2\":[4]}");
            r2 = r;
        }
    }
    freeReplyObject(r);
}

static void
test_service_encode_round_trip(void **state)
{
    const char *corps[] = {CORP, "wwcorp0002"};
    long ids1[] = {2, 4294967295L}, ids2[] = {0};
    struct record_parties p[2];
    struct record_service *s;
    const struct record_parties *got;
    char *text = NULL;

    (void)state;
    assert_int_equal(record_corps_encode(corps, 2, &text), BRK_OK);
    s = svc_ok("corps", text);
    assert_false(s->any_corp);
    assert_int_equal(s->ncorps, 2);
    assert_true(record_service_allows_corp(s, "wwcorp0002"));
    record_service_unref(s);
    brk_free(text);
    memset(p, 0, sizeof(p));
    snprintf(p[0].corp, sizeof(p[0].corp), "%s", CORP);
    p[0].ids = ids1;
    p[0].n = 2;
    snprintf(p[1].corp, sizeof(p[1].corp), "%s", "wwcorp0002");
    p[1].ids = ids2;
    p[1].n = 1;
    assert_int_equal(record_parties_encode(p, 2, &text), BRK_OK);
    s = svc_ok("parties", text);
    assert_int_equal(record_service_parties(s, CORP, &got), BRK_OK);
    assert_int_equal(got->n, 2);
    assert_int_equal(got->ids[1], 4294967295L);
    record_service_unref(s);
    brk_free(text);
    /* what the decoder would refuse is not written either */
    text = NULL;
    assert_int_equal(record_corps_encode(corps, 0, &text), BRK_ERR_INVAL);
    corps[1] = "a b";
    assert_int_equal(record_corps_encode(corps, 2, &text), BRK_ERR_INVAL);
    ids2[0] = -1;
    assert_int_equal(record_parties_encode(p, 2, &text), BRK_ERR_INVAL);
    ids2[0] = 1;
    snprintf(p[1].corp, sizeof(p[1].corp), "%s", "WWCORP0001");
    assert_int_equal(record_parties_encode(p, 2, &text), BRK_ERR_INVAL);
    assert_null(text);
}

/*---- Broker tokens ----*/

static void
test_token(void **state)
{
    static const char *const good[] = {"svc",   SVC_ID,       "gen",  "3",
                                       "suite", "wws1",       "corp", CORP,
                                       "exp",   "1700000000", NULL};
    static const char *const bad[][2] = {
        {"svc", "0123"},
        {"svc", "0123456789ABCDEF"},
        {"gen", "0abc"},
        {"gen", "-1"},
        {"gen", ""},
        {"exp", "17e8"},
        {"exp", "1700000000 "},
        {"suite", ""},
        {"corp", "a b"},
        {"corp", "wwcorp0001\n"},
    };
    const char *kv[16];
    struct record_token t, keep;
    redisReply *r;
    size_t i, k;

    (void)state;
    r = hash_reply(good);
    assert_int_equal(record_token_decode(r, &t), BRK_OK);
    freeReplyObject(r);
    assert_string_equal(t.svc, SVC_ID);
    assert_int_equal(t.gen, 3);
    assert_string_equal(t.suite, "wws1");
    assert_string_equal(t.corp, CORP);
    assert_int_equal(t.exp, 1700000000LL);
    r = resp("*0\r\n", 4);
    assert_int_equal(record_token_decode(r, &t), BRK_ERR_NOTFOUND);
    freeReplyObject(r);
    for (i = 0; i < nitems(bad); i++) {
        for (k = 0; good[k] != NULL; k += 2) {
            kv[k] = good[k];
            kv[k + 1] =
                strcmp(good[k], bad[i][0]) == 0 ? bad[i][1] : good[k + 1];
        }
        kv[k] = NULL;
        r = hash_reply(kv);
        memcpy(&keep, &t, sizeof(t));
        assert_int_equal(record_token_decode(r, &t), BRK_ERR_INVAL);
        /* untouched on refusal */
        assert_memory_equal(&keep, &t, sizeof(t));
        freeReplyObject(r);
    }
    /* each field missing */
    for (i = 0; good[i] != NULL; i += 2) {
        size_t n = 0;

        for (k = 0; good[k] != NULL; k += 2)
            if (k != i) {
                kv[n++] = good[k];
                kv[n++] = good[k + 1];
            }
        kv[n] = NULL;
        r = hash_reply(kv);
        assert_int_equal(record_token_decode(r, &t), BRK_ERR_INVAL);
        freeReplyObject(r);
    }
}

/*---- Tenants ----*/

#define PERMS                                                                  \
    "[{\"name\":\"contact:base:base\",\"expires_at\":0},"                      \
    "{\"name\":\"contact:sensitive:mobile\",\"expires_at\":1000},"             \
    "{\"name\":\"no:such:permission\",\"expires_at\":0}]"
#define PRIV "{\"level\":1,\"allow_party\":[2],\"allow_user\":[\"u3\"]}"

/* RESP of the four hashes of a tenant; fields replaced in the tenant hash
 * (tf = tv; tv NULL removes) and in one directory hash (dk: 1 parents,
 * 2 users, 3 tags; entry dkey = dval). */
static redisReply *
tenant_reply(const char *status, const char *tf, const char *tv, int dk,
             const char *dkey, const char *dval)
{
    const char *t[] = {"status", status, "permissions", PERMS, "privilege",
                       PRIV,     NULL,   NULL,          NULL};
    const char *d[4][8] = {
        {NULL},
        {"2", "1", "3", "1", "1", "0", NULL},
        {"u1", "2", "u2", "3", "u3", "3", NULL},
        {"1", "{\"users\":[\"u1\"],\"parties\":[]}", NULL},
    };
    const char *kv[12];
    char buf[16384], part[4096];
    size_t i, n = 0, len;

    for (i = 0; t[i] != NULL; i += 2) {
        if (tf != NULL && strcmp(t[i], tf) == 0) {
            if (tv != NULL) {
                kv[n++] = t[i];
                kv[n++] = tv;
            }
            continue;
        }
        kv[n++] = t[i];
        kv[n++] = t[i + 1];
    }
    if (tf != NULL && tv != NULL && strcmp(tf, "status") != 0 &&
        strcmp(tf, "permissions") != 0 && strcmp(tf, "privilege") != 0) {
        kv[n++] = tf;
        kv[n++] = tv;
    }
    kv[n] = NULL;
    snprintf(buf, sizeof(buf), "*4\r\n");
    len = hash_text(part, sizeof(part), kv);
    memcpy(buf + strlen(buf), part, len + 1);
    for (i = 1; i < 4; i++) {
        const char *dkv[12];
        size_t k, m = 0;
        int seen = 0;

        for (k = 0; d[i][k] != NULL; k += 2) {
            if ((int)i == dk && strcmp(d[i][k], dkey) == 0) {
                seen = 1;
                dkv[m++] = d[i][k];
                dkv[m++] = dval;
                continue;
            }
            dkv[m++] = d[i][k];
            dkv[m++] = d[i][k + 1];
        }
        if ((int)i == dk && !seen) {
            dkv[m++] = dkey;
            dkv[m++] = dval;
        }
        dkv[m] = NULL;
        len = hash_text(part, sizeof(part), dkv);
        assert_true(strlen(buf) + len < sizeof(buf));
        memcpy(buf + strlen(buf), part, len + 1);
    }
    return resp(buf, strlen(buf));
}

static void
test_tenant_valid(void **state)
{
    redisReply *r = tenant_reply("active", NULL, NULL, 0, NULL, NULL);
    struct record_tenant *t = NULL;

    (void)state;
    /* at 500 s the mobile permission is still granted, at 1000 gone */
    assert_int_equal(record_tenant_decode(r, 500, &t), BRK_OK);
    assert_true(t->active);
    assert_int_equal(t->refs, 1);
    assert_true(scope_grant_has(&t->grant, scope_perm_id("contact:base:base")));
    assert_true(
        scope_grant_has(&t->grant, scope_perm_id("contact:sensitive:mobile")));
    assert_non_null(t->range);
    assert_true(vrange_has_member(t->range, "u1", 2));
    assert_true(vrange_has_member(t->range, "u3", 2));
    assert_false(vrange_has_member(t->range, "u2", 2));
    assert_true(vrange_has_department(t->range, 2));
    assert_false(vrange_has_department(t->range, 3));
    record_tenant_unref(t);
    assert_int_equal(record_tenant_decode(r, 1000, &t), BRK_OK);
    assert_false(
        scope_grant_has(&t->grant, scope_perm_id("contact:sensitive:mobile")));
    record_tenant_unref(t);
    freeReplyObject(r);
    /* a tenant that is not active: only its status is read */
    r = tenant_reply("installing", "permissions", NULL, 0, NULL, NULL);
    assert_int_equal(record_tenant_decode(r, 0, &t), BRK_OK);
    assert_false(t->active);
    assert_string_equal(t->status, "installing");
    assert_null(t->range);
    record_tenant_unref(t);
    freeReplyObject(r);
    r = tenant_reply("cancelled", "privilege", "{bad", 0, NULL, NULL);
    assert_int_equal(record_tenant_decode(r, 0, &t), BRK_OK);
    assert_false(t->active);
    record_tenant_unref(t);
    freeReplyObject(r);
}

static void
tenant_refused(const char *tf, const char *tv, int dk, const char *dkey,
               const char *dval)
{
    redisReply *r = tenant_reply("active", tf, tv, dk, dkey, dval);
    struct record_tenant *t = NULL;
    enum brk_err err = record_tenant_decode(r, 0, &t);

    if (err != BRK_ERR_INVAL)
        fprintf(stderr, "# %s = %s, dir %d %s = %s: %s\n", tf ? tf : "-",
                tv ? tv : "(none)", dk, dkey ? dkey : "-", dval ? dval : "-",
                brk_strerror(err));
    assert_int_equal(err, BRK_ERR_INVAL);
    assert_null(t);
    freeReplyObject(r);
}

/* The stored generation is kept, and a copy is current only while the
 * generation and status Redis answers are its own and none of its
 * permissions has expired. */
static void
test_tenant_generation(void **state)
{
    redisReply *r = tenant_reply("active", "gen", "42", 0, NULL, NULL);
    redisReply *same = resp_s("*2\r\n$2\r\n42\r\n$6\r\nactive\r\n");
    redisReply *moved = resp_s("*2\r\n$2\r\n43\r\n$6\r\nactive\r\n");
    redisReply *status = resp_s("*2\r\n$2\r\n42\r\n$10\r\ninstalling\r\n");
    redisReply *gone = resp_s("*2\r\n$-1\r\n$-1\r\n");
    static const char nul_text[] = "*2\r\n$3\r\n4\0"
                                   "2\r\n$6\r\nactive\r\n";
    redisReply *nul = resp(nul_text, sizeof(nul_text) - 1);
    redisReply *flat = resp_s("$2\r\n42\r\n");
    struct record_tenant *t = NULL, *old = NULL;

    (void)state;
    assert_int_equal(record_tenant_decode(r, 500, &t), BRK_OK);
    assert_true(t->gen == 42);
    assert_int_equal(t->grant_until_s, 1000);
    assert_int_equal(record_tenant_current(t, same, 500), 1);
    assert_int_equal(record_tenant_current(t, same, 999), 1);
    /* the mobile permission expired: the grant must be decoded again */
    assert_int_equal(record_tenant_current(t, same, 1000), 0);
    assert_int_equal(record_tenant_current(t, moved, 500), 0);
    assert_int_equal(record_tenant_current(t, status, 500), 0);
    assert_int_equal(record_tenant_current(t, gone, 500), 0);
    assert_int_equal(record_tenant_current(t, nul, 500), 0);
    assert_int_equal(record_tenant_current(t, flat, 500), 0);
    assert_int_equal(record_tenant_current(t, NULL, 500), 0);
    assert_int_equal(record_tenant_current(NULL, same, 500), 0);
    record_tenant_unref(t);
    freeReplyObject(r);
    /* a record written before generations: never current */
    r = tenant_reply("active", NULL, NULL, 0, NULL, NULL);
    assert_int_equal(record_tenant_decode(r, 500, &old), BRK_OK);
    assert_true(old->gen == 0);
    assert_int_equal(record_tenant_current(old, same, 500), 0);
    record_tenant_unref(old);
    freeReplyObject(r);
    /* the largest generation there is */
    r = tenant_reply("active", "gen", "18446744073709551615", 0, NULL, NULL);
    assert_int_equal(record_tenant_decode(r, 500, &t), BRK_OK);
    assert_true(t->gen == 18446744073709551615ULL);
    record_tenant_unref(t);
    freeReplyObject(r);
    freeReplyObject(same);
    freeReplyObject(moved);
    freeReplyObject(status);
    freeReplyObject(gone);
    freeReplyObject(nul);
    freeReplyObject(flat);
}

/* A change contact_apply reports is applied to a copy held alone at the
 * generation before, exactly as decoding the changed directory would
 * give; any other copy or reply is left alone. */
static void
test_tenant_apply(void **state)
{
    redisReply *r = tenant_reply("active", "gen", "42", 0, NULL, NULL);
    redisReply *want = tenant_reply("active", "gen", "45", 2, "u2", "2");
    redisReply *moved = resp_s("*5\r\n:1\r\n$2\r\n42\r\n$2\r\n43\r\n"
                               "$2\r\nu2\r\n$1\r\n2\r\n");
    redisReply *away = resp_s("*5\r\n:1\r\n$2\r\n43\r\n$2\r\n44\r\n"
                              "$2\r\nu1\r\n$1\r\n3\r\n");
    redisReply *left = resp_s("*5\r\n:1\r\n$2\r\n44\r\n$2\r\n45\r\n"
                              "$2\r\nu3\r\n$0\r\n\r\n");
    redisReply *party = resp_s("*3\r\n:2\r\n$2\r\n45\r\n$2\r\n46\r\n");
    redisReply *stale = resp_s("*5\r\n:1\r\n$2\r\n40\r\n$2\r\n41\r\n"
                               "$2\r\nu1\r\n$1\r\n2\r\n");
    redisReply *back = resp_s("*5\r\n:1\r\n$2\r\n45\r\n$2\r\n45\r\n"
                              "$2\r\nu1\r\n$1\r\n2\r\n");
    redisReply *even = resp_s("*4\r\n:1\r\n$2\r\n45\r\n$2\r\n46\r\n"
                              "$2\r\nu1\r\n");
    redisReply *badlist = resp_s("*5\r\n:1\r\n$2\r\n45\r\n$2\r\n46\r\n"
                                 "$2\r\nu1\r\n$3\r\n2,x\r\n");
    redisReply *flat = resp_s(":1\r\n");
    struct record_tenant *t = NULL, *w = NULL, *other;

    (void)state;
    assert_int_equal(record_tenant_decode(r, 500, &t), BRK_OK);
    assert_int_equal(record_tenant_decode(want, 500, &w), BRK_OK);
    assert_false(vrange_has_member(t->range, "u2", 2));
    assert_int_equal(record_tenant_apply(t, moved, 500), BRK_OK);
    assert_true(t->gen == 43);
    assert_true(vrange_has_member(t->range, "u2", 2));
    /* u1 was seen through its department only; u3 is listed by name */
    assert_int_equal(record_tenant_apply(t, away, 500), BRK_OK);
    assert_false(vrange_has_member(t->range, "u1", 2));
    assert_int_equal(record_tenant_apply(t, left, 500), BRK_OK);
    assert_true(vrange_has_member(t->range, "u3", 2));
    assert_true(t->gen == 45);
    /* the decoded changed directory answers the same */
    assert_int_equal(vrange_has_member(w->range, "u2", 2), 1);
    assert_int_equal(vrange_members(t->range),
                     vrange_members(w->range) - 1); /* want still has u1 */
    /* not this copy's change: nothing applied */
    assert_int_equal(record_tenant_apply(t, party, 500), BRK_ERR_NOTFOUND);
    assert_int_equal(record_tenant_apply(t, stale, 500), BRK_ERR_NOTFOUND);
    assert_int_equal(record_tenant_apply(t, back, 500), BRK_ERR_NOTFOUND);
    assert_int_equal(record_tenant_apply(t, moved, 1000), BRK_ERR_NOTFOUND);
    other = record_tenant_ref(t);
    assert_int_equal(record_tenant_apply(t, moved, 500), BRK_ERR_NOTFOUND);
    record_tenant_unref(other);
    assert_true(t->gen == 45);
    assert_false(vrange_has_member(t->range, "u1", 2));
    /* replies of another shape */
    assert_int_equal(record_tenant_apply(t, even, 500), BRK_ERR_INVAL);
    assert_int_equal(record_tenant_apply(t, flat, 500), BRK_ERR_INVAL);
    assert_int_equal(record_tenant_apply(NULL, moved, 500), BRK_ERR_INVAL);
    assert_int_equal(record_tenant_apply(t, badlist, 500), BRK_ERR_INVAL);
    record_tenant_unref(t);
    record_tenant_unref(w);
    freeReplyObject(r);
    freeReplyObject(want);
    freeReplyObject(moved);
    freeReplyObject(away);
    freeReplyObject(left);
    freeReplyObject(party);
    freeReplyObject(stale);
    freeReplyObject(back);
    freeReplyObject(even);
    freeReplyObject(badlist);
    freeReplyObject(flat);
}

static void
test_tenant_refusals(void **state)
{
    (void)state;
    tenant_refused("status", "", 0, NULL, NULL);
    tenant_refused("status", NULL, 0, NULL, NULL);
    tenant_refused("status", "active-and-then-some-more-text-here", 0, NULL,
                   NULL);
    /* the grant */
    tenant_refused("permissions", NULL, 0, NULL, NULL);
    tenant_refused("permissions", "[{\"name\":\"contact:base:base\"", 0, NULL,
                   NULL);
    tenant_refused("permissions", "{}", 0, NULL, NULL);
    tenant_refused("permissions", "null", 0, NULL, NULL);
    tenant_refused("permissions", "[\"contact:base:base\"]", 0, NULL, NULL);
    tenant_refused("permissions", "[{\"name\":\"contact:base:base\"}]", 0, NULL,
                   NULL);
    tenant_refused("permissions", "[{\"name\":1,\"expires_at\":0}]", 0, NULL,
                   NULL);
    tenant_refused("permissions", "[{\"name\":\"a\",\"expires_at\":\"0\"}]", 0,
                   NULL, NULL);
    tenant_refused("permissions", "[{\"name\":\"a\",\"expires_at\":-1}]", 0,
                   NULL, NULL);
    tenant_refused("permissions", "[{\"name\":\"a\",\"expires_at\":0,\"x\":1}]",
                   0, NULL, NULL);
    /* the privilege */
    tenant_refused("gen", "", 0, NULL, NULL);
    tenant_refused("gen", "-1", 0, NULL, NULL);
    tenant_refused("gen", "1x", 0, NULL, NULL);
    tenant_refused("gen", " 1", 0, NULL, NULL);
    tenant_refused("gen", "18446744073709551616", 0, NULL, NULL);
    tenant_refused("gen", "123456789012345678901", 0, NULL, NULL);
    tenant_refused("privilege", NULL, 0, NULL, NULL);
    tenant_refused("privilege", "{\"allow_party\":[2", 0, NULL, NULL);
    tenant_refused("privilege", "[]", 0, NULL, NULL);
    tenant_refused("privilege", "null", 0, NULL, NULL);
    tenant_refused("privilege", "{\"allow_party\":\"2\"}", 0, NULL, NULL);
    tenant_refused("privilege", "{\"allow_party\":[\"2\"]}", 0, NULL, NULL);
    tenant_refused("privilege", "{\"allow_party\":[-2]}", 0, NULL, NULL);
    /* the directory */
    tenant_refused(NULL, NULL, 1, "2", "-1");
    tenant_refused(NULL, NULL, 1, "02", "1");
    tenant_refused(NULL, NULL, 2, "u1", "2,x");
    tenant_refused(NULL, NULL, 2, "u1", "+2");
    tenant_refused(NULL, NULL, 3, "1", "{\"users\":\"u1\"}");
    tenant_refused(NULL, NULL, 3, "1", "{\"users\":[\"u1\"]");
}

static void
test_tenant_reply_shapes(void **state)
{
    struct record_tenant *t = NULL;
    redisReply *r;

    (void)state;
    r = resp_s("*4\r\n*0\r\n*0\r\n*0\r\n*0\r\n");
    assert_int_equal(record_tenant_decode(r, 0, &t), BRK_ERR_NOTFOUND);
    freeReplyObject(r);
    r = resp_s("*3\r\n*0\r\n*0\r\n*0\r\n");
    assert_int_equal(record_tenant_decode(r, 0, &t), BRK_ERR_INVAL);
    freeReplyObject(r);
    r = resp_s("*4\r\n$1\r\na\r\n*0\r\n*0\r\n*0\r\n");
    assert_int_equal(record_tenant_decode(r, 0, &t), BRK_ERR_INVAL);
    freeReplyObject(r);
    /* a directory part that is no hash */
    r = resp_s("*4\r\n*2\r\n$6\r\nstatus\r\n$6\r\nactive\r\n:1\r\n*0\r\n"
               "*0\r\n");
    assert_int_equal(record_tenant_decode(r, 0, &t), BRK_ERR_INVAL);
    freeReplyObject(r);
    assert_null(t);
}

static void
test_tenant_out_of_memory(void **state)
{
    redisReply *r = tenant_reply("active", NULL, NULL, 0, NULL, NULL);
    struct record_tenant *t;
    enum brk_err err;
    unsigned long n;
    int failed;

    (void)state;
    for (n = 1;; n++) {
        t = NULL;
        brk_alloc_fail_at(n);
        err = record_tenant_decode(r, 0, &t);
        failed = brk_alloc_failed();
        brk_alloc_fail_at(0);
        if (err == BRK_OK) {
            assert_false(failed);
            assert_true(vrange_has_member(t->range, "u1", 2));
            record_tenant_unref(t);
            break;
        }
        assert_true(err == BRK_ERR_NOMEM || err == BRK_ERR_INVAL);
        assert_true(failed);
        assert_null(t);
        assert_true(n < 5000);
    }
    freeReplyObject(r);
}

/*---- References and the caches ----*/

static void
tenant_unref_cb(void *v)
{
    record_tenant_unref(v);
}

/* A record handed to a cache with its own reference outlives a failed
 * put: the put drops the cache's reference, never the caller's. */
static void
test_reference_survives_failed_put(void **state)
{
    redisReply *r = tenant_reply("active", NULL, NULL, 0, NULL, NULL);
    struct record_tenant *t = NULL, *w1, *w2;
    struct cache *c = NULL;
    unsigned long n;
    enum brk_err err;

    (void)state;
    assert_int_equal(cache_new(4, 60000, tenant_unref_cb, &c), BRK_OK);
    assert_int_equal(record_tenant_decode(r, 0, &t), BRK_OK);
    for (n = 1;; n++) {
        brk_alloc_fail_at(n);
        err = cache_put(c, "s corp", record_tenant_ref(t), 0);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(t->refs, 1);
    }
    assert_int_equal(t->refs, 2);
    w1 = record_tenant_ref(t);
    w2 = record_tenant_ref(t);
    record_tenant_unref(t);
    cache_clear(c);
    assert_int_equal(w1->refs, 2);
    assert_true(vrange_has_member(w1->range, "u1", 2));
    record_tenant_unref(w1);
    record_tenant_unref(w2);
    cache_free(c);
    freeReplyObject(r);
}

/*---- Browser flows ----*/

static void
test_state(void **state)
{
    static const char *const oauth[] = {
        "flow",   "oauth", "return", "https://app.example/r",
        "cstate", "abc",   "scope",  "snsapi_base",
        NULL};
    static const char *const install[] = {"flow", "install", "return", "",
                                          NULL};
    static const char *const bad[][9] = {
        {"flow", "other", "return", "https://a.example/", NULL},
        {"return", "https://a.example/", NULL},
        {"flow", "install", NULL},
        {"flow", "oauth", "return", "", "cstate", "", "scope", "snsapi_base",
         NULL},
        {"flow", "oauth", "return", "https://a.example/", "scope",
         "snsapi_base", NULL},
        {"flow", "oauth", "return", "https://a.example/", "cstate", "", "scope",
         "snsapi_userinfo", NULL},
        {"flow", "oauth", "return", "https://a.example/", "cstate", "", NULL},
    };
    struct record_state st;
    redisReply *r;
    size_t i;

    (void)state;
    r = hash_reply(oauth);
    assert_int_equal(record_state_decode(r, &st), BRK_OK);
    freeReplyObject(r);
    assert_string_equal(st.flow, "oauth");
    assert_string_equal(st.ret, "https://app.example/r");
    assert_string_equal(st.cstate, "abc");
    assert_string_equal(st.scope, "snsapi_base");
    r = hash_reply(install);
    assert_int_equal(record_state_decode(r, &st), BRK_OK);
    freeReplyObject(r);
    assert_string_equal(st.flow, "install");
    assert_string_equal(st.ret, "");
    r = resp("*0\r\n", 4);
    assert_int_equal(record_state_decode(r, &st), BRK_ERR_NOTFOUND);
    freeReplyObject(r);
    for (i = 0; i < nitems(bad); i++) {
        r = hash_reply(bad[i]);
        assert_int_equal(record_state_decode(r, &st), BRK_ERR_INVAL);
        freeReplyObject(r);
    }
}

static void
test_oauth_code(void **state)
{
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "{\"userid\":\"u1\",\"openid\":\"\",\"user_ticket\":\"\"}",
        "{\"userid\":\"u1\",\"openid\":\"\",\"user_ticket\":\"\","
        "\"expires_in\":0,\"x\":1}",
        "{\"userid\":1,\"openid\":\"\",\"user_ticket\":\"\","
        "\"expires_in\":0}",
        "{\"userid\":\"\",\"openid\":\"\",\"user_ticket\":\"\","
        "\"expires_in\":0}",
        "{\"userid\":\"u1\",\"openid\":\"\",\"user_ticket\":\"short\","
        "\"expires_in\":0}",
        "{\"userid\":\"u1\",\"openid\":\"\",\"user_ticket\":\"\","
        "\"expires_in\":-1}",
        "{\"userid\":\"u1\",\"userid\":\"u2\",\"openid\":\"\","
        "\"user_ticket\":\"\",\"expires_in\":0}",
        "{\"userid\":\"u\\u0031\",\"openid\":\"\",\"user_ticket\":\"\","
        "\"expires_in\":0}",
        "{\"userid\":\"u1\",\"openid\":\"\",\"user_ticket\":\"\","
        "\"expires_in\":0} x",
    };
    struct record_oauth_code c, d;
    char *text = NULL;
    size_t i;

    (void)state;
    memset(&c, 0, sizeof(c));
    snprintf(c.userid, sizeof(c.userid), "u00001");
    snprintf(c.openid, sizeof(c.openid), "woAAAA");
    snprintf(c.user_ticket, sizeof(c.user_ticket), "%s", TOKEN);
    c.expires_in = 1800;
    assert_int_equal(record_oauth_code_encode(&c, &text), BRK_OK);
    assert_int_equal(record_oauth_code_decode(text, strlen(text), &d), BRK_OK);
    assert_string_equal(d.userid, "u00001");
    assert_string_equal(d.openid, "woAAAA");
    assert_string_equal(d.user_ticket, TOKEN);
    assert_int_equal(d.expires_in, 1800);
    brk_free_secret_str(text);
    for (i = 0; i < nitems(bad); i++)
        assert_int_equal(record_oauth_code_decode(bad[i], strlen(bad[i]), &d),
                         BRK_ERR_INVAL);
    c.user_ticket[3] = '\0';
    text = NULL;
    assert_int_equal(record_oauth_code_encode(&c, &text), BRK_ERR_INVAL);
    assert_null(text);
}

static void
test_parse_uint(void **state)
{
    long long v = 7;

    (void)state;
    assert_int_equal(record_parse_uint("0", 10, &v), BRK_OK);
    assert_int_equal(v, 0);
    assert_int_equal(record_parse_uint("10", 10, &v), BRK_OK);
    assert_int_equal(v, 10);
    assert_int_equal(record_parse_uint("9223372036854775807", LLONG_MAX, &v),
                     BRK_OK);
    v = 7;
    assert_int_equal(record_parse_uint("11", 10, &v), BRK_ERR_INVAL);
    assert_int_equal(record_parse_uint("9223372036854775808", LLONG_MAX, &v),
                     BRK_ERR_INVAL);
    assert_int_equal(record_parse_uint("", 10, &v), BRK_ERR_INVAL);
    assert_int_equal(record_parse_uint(NULL, 10, &v), BRK_ERR_INVAL);
    assert_int_equal(record_parse_uint("00", 10, &v), BRK_ERR_INVAL);
    assert_int_equal(record_parse_uint("-0", 10, &v), BRK_ERR_INVAL);
    assert_int_equal(record_parse_uint("1.", 10, &v), BRK_ERR_INVAL);
    assert_int_equal(v, 7);
}

static int
setup(void **state)
{
    (void)state;
    /* jansson's allocations fail with ours */
    json_set_alloc_funcs(brk_malloc, brk_free);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delivery_setting),
        cmocka_unit_test(test_service_valid),
        cmocka_unit_test(test_service_refusals),
        cmocka_unit_test(test_service_reply_shapes),
        cmocka_unit_test(test_service_out_of_memory),
        cmocka_unit_test(test_service_encode_round_trip),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_tenant_valid),
        cmocka_unit_test(test_tenant_generation),
        cmocka_unit_test(test_tenant_refusals),
        cmocka_unit_test(test_tenant_apply),
        cmocka_unit_test(test_tenant_reply_shapes),
        cmocka_unit_test(test_tenant_out_of_memory),
        cmocka_unit_test(test_reference_survives_failed_put),
        cmocka_unit_test(test_state),
        cmocka_unit_test(test_oauth_code),
        cmocka_unit_test(test_parse_uint),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
