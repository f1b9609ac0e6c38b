/*
 * Tests for the service credential helpers: name rules, the shapes of
 * fresh ids, secrets, salts, hashes and tokens, the salted hash against an
 * independent SHA-256, the constant-time check, and the strict split of
 * "ID.SECRET" that leaves its outputs alone when it refuses.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include "broker.h"
#include "service.h"

#define CANARY '#'
#define PAD    8 /* canary bytes after each output buffer */

/*---- Helpers ----*/

static int
is_lower_hex(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static int
is_token_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
           (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
}

static int
is_token_text(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!is_token_char(s[i]))
            return 0;
    return 1;
}

/* s holds exactly n characters, its NUL, and untouched canaries. */
static void
assert_shape(const char *s, size_t n, int (*ok)(const char *, size_t))
{
    size_t i;

    assert_int_equal(strlen(s), n);
    assert_true(ok(s, n));
    for (i = n + 1; i < n + 1 + PAD; i++)
        assert_int_equal(s[i], CANARY);
}

/* hex(SHA-256(a || b)) computed here, without the module's code. */
static void
sha256_hex(const char *a, size_t alen, const char *b, size_t blen, char out[65])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    unsigned char *buf = malloc(alen + blen + 1);
    size_t i;

    assert_non_null(buf);
    memcpy(buf, a, alen);
    memcpy(buf + alen, b, blen);
    assert_int_equal(
        EVP_Digest(buf, alen + blen, md, &mdlen, EVP_sha256(), NULL), 1);
    free(buf);
    assert_int_equal(mdlen, 32);
    for (i = 0; i < 32; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 15];
    }
    out[64] = '\0';
}

struct creds {
    char id[SERVICE_ID_LEN + 1 + PAD];
    char secret[SERVICE_SECRET_LEN + 1 + PAD];
    char salt[SERVICE_SALT_LEN + 1 + PAD];
    char hash[SERVICE_HASH_LEN + 1 + PAD];
};

static void
new_creds(struct creds *k)
{
    memset(k, CANARY, sizeof(*k));
    assert_int_equal(
        service_credentials_new(k->id, k->secret, k->salt, k->hash), BRK_OK);
}

/*---- Names ----*/

static void
test_name_empty(void **state)
{
    (void)state;
    assert_false(service_name_ok(""));
}

static void
test_name_one_char(void **state)
{
    (void)state;
    assert_true(service_name_ok("a"));
    assert_true(service_name_ok("-"));
    assert_true(service_name_ok("."));
}

static void
test_name_all_allowed_chars(void **state)
{
    (void)state;
    assert_true(service_name_ok("ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
    assert_true(service_name_ok("abcdefghijklmnopqrstuvwxyz"));
    assert_true(service_name_ok("0123456789_.-"));
    assert_true(service_name_ok("hr-portal.v2_prod"));
}

static void
test_name_64_ok(void **state)
{
    char name[SERVICE_NAME_MAX + 1];

    (void)state;
    memset(name, 'n', SERVICE_NAME_MAX);
    name[SERVICE_NAME_MAX] = '\0';
    assert_true(service_name_ok(name));
}

static void
test_name_65_rejected(void **state)
{
    char name[SERVICE_NAME_MAX + 2];

    (void)state;
    memset(name, 'n', SERVICE_NAME_MAX + 1);
    name[SERVICE_NAME_MAX + 1] = '\0';
    assert_false(service_name_ok(name));
}

static void
test_name_very_long_rejected(void **state)
{
    char name[10001];

    (void)state;
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_false(service_name_ok(name));
}

static void
test_name_space(void **state)
{
    (void)state;
    assert_false(service_name_ok("hr portal"));
    assert_false(service_name_ok(" hr"));
    assert_false(service_name_ok("hr "));
}

static void
test_name_separators(void **state)
{
    (void)state;
    assert_false(service_name_ok("a/b"));
    assert_false(service_name_ok("a:b"));
    assert_false(service_name_ok("a@b"));
    assert_false(service_name_ok("a+b"));
    assert_false(service_name_ok("a,b"));
    assert_false(service_name_ok("a*b"));
    assert_false(service_name_ok("a\\b"));
}

static void
test_name_control_chars(void **state)
{
    (void)state;
    assert_false(service_name_ok("a\nb"));
    assert_false(service_name_ok("a\tb"));
    assert_false(service_name_ok("a\rb"));
    assert_false(service_name_ok("\x7f"));
}

static void
test_name_unicode(void **state)
{
    (void)state;
    assert_false(service_name_ok("caf\xc3\xa9"));              /* café */
    assert_false(service_name_ok("\xe5\x90\x8d\xe5\xad\x97")); /* 名字 */
    assert_false(service_name_ok("\xff"));
    assert_false(service_name_ok("a\xe2\x80\x8b")); /* zero-width space */
}

static void
test_name_every_byte(void **state)
{
    char name[3] = "a";
    int ch;

    (void)state;
    for (ch = 1; ch < 256; ch++) {
        name[1] = (char)ch;
        name[2] = '\0';
        assert_int_equal(service_name_ok(name) != 0,
                         is_token_char((char)ch) || ch == '.');
    }
}

/*---- Credentials ----*/

static void
test_credentials_shapes(void **state)
{
    struct creds k;

    (void)state;
    new_creds(&k);
    assert_shape(k.id, SERVICE_ID_LEN, is_lower_hex);
    assert_shape(k.secret, SERVICE_SECRET_LEN, is_token_text);
    assert_shape(k.salt, SERVICE_SALT_LEN, is_lower_hex);
    assert_shape(k.hash, SERVICE_HASH_LEN, is_lower_hex);
}

static void
test_credentials_hash_is_of_secret(void **state)
{
    struct creds k;
    char want[65];

    (void)state;
    new_creds(&k);
    sha256_hex(k.salt, SERVICE_SALT_LEN, k.secret, SERVICE_SECRET_LEN, want);
    assert_string_equal(k.hash, want);
    assert_true(
        service_secret_check(k.salt, k.hash, k.secret, SERVICE_SECRET_LEN));
}

static void
test_credentials_differ(void **state)
{
    struct creds a, b;

    (void)state;
    new_creds(&a);
    new_creds(&b);
    assert_string_not_equal(a.id, b.id);
    assert_string_not_equal(a.secret, b.secret);
    assert_string_not_equal(a.salt, b.salt);
    assert_string_not_equal(a.hash, b.hash);
}

static void
test_secret_new_shapes(void **state)
{
    struct creds k, r;
    char want[65];

    (void)state;
    new_creds(&k);
    memset(&r, CANARY, sizeof(r));
    assert_int_equal(service_secret_new(r.secret, r.salt, r.hash), BRK_OK);
    assert_shape(r.secret, SERVICE_SECRET_LEN, is_token_text);
    assert_shape(r.salt, SERVICE_SALT_LEN, is_lower_hex);
    assert_shape(r.hash, SERVICE_HASH_LEN, is_lower_hex);
    sha256_hex(r.salt, SERVICE_SALT_LEN, r.secret, SERVICE_SECRET_LEN, want);
    assert_string_equal(r.hash, want);
    /* a rotated secret is new, and the old one no longer checks */
    assert_string_not_equal(r.secret, k.secret);
    assert_string_not_equal(r.salt, k.salt);
    assert_false(
        service_secret_check(r.salt, r.hash, k.secret, SERVICE_SECRET_LEN));
}

static void
test_no_broker_allocations(void **state)
{
    struct creds k;
    char token[SERVICE_TOKEN_LEN + 1];

    (void)state;
    /* the helpers are stack-only: an armed failure never fires */
    brk_alloc_fail_at(1);
    new_creds(&k);
    assert_int_equal(service_token_new(token), BRK_OK);
    assert_true(
        service_secret_check(k.salt, k.hash, k.secret, SERVICE_SECRET_LEN));
    assert_false(brk_alloc_failed());
    brk_alloc_fail_at(0);
}

/*---- Salted hash ----*/

static void
test_secret_hash_matches_evp(void **state)
{
    static const char salt[] = "00112233445566778899aabbccddeeff";
    static const char secret[] = "Zm9vYmFyLWJhei1xdXV4LTAxMjM0NTY3ODktXyAtX";
    char got[SERVICE_HASH_LEN + 1 + PAD];
    char want[65];

    (void)state;
    memset(got, CANARY, sizeof(got));
    service_secret_hash(salt, secret, strlen(secret), got);
    sha256_hex(salt, strlen(salt), secret, strlen(secret), want);
    assert_string_equal(got, want);
    assert_shape(got, SERVICE_HASH_LEN, is_lower_hex);
}

static void
test_secret_hash_known_vector(void **state)
{
    char got[SERVICE_HASH_LEN + 1];

    (void)state;
    /* sha256sum of the text "00112233445566778899aabbccddeeffabc" */
    service_secret_hash("00112233445566778899aabbccddeeff", "abc", 3, got);
    assert_string_equal(got, "b32ea5818c6d41e6b64d3fc5b23ab465"
                             "24586238e8168f27296d9b580cef1a0c");
}

/* The token digest is plain SHA-256 of the token's bytes (FIPS 180-2's
 * "abc" vector), the same from every thread of the process: the
 * algorithm is fetched once and shared. */
static void *
token_hash_abc(void *arg)
{
    char *got = arg;

    service_token_hash("abcdef", 3, got);
    return NULL;
}

static void
test_token_hash_known_vector(void **state)
{
    static const char want[] = "ba7816bf8f01cfea414140de5dae2223"
                               "b00361a396177a9cb410ff61f20015ad";
    char got[65], other[65];
    pthread_t th;

    (void)state;
    service_token_hash("abc", 3, got);
    assert_string_equal(got, want);
    memset(other, 0, sizeof(other));
    assert_int_equal(pthread_create(&th, NULL, token_hash_abc, other), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_string_equal(other, want);
}

static void
test_secret_hash_uses_len(void **state)
{
    static const char salt[] = "00112233445566778899aabbccddeeff";
    char whole[65], prefix[65], want[65];

    (void)state;
    service_secret_hash(salt, "abcXYZ", 3, prefix);
    service_secret_hash(salt, "abc", 3, whole);
    assert_string_equal(prefix, whole);
    /* bytes after a NUL count when len covers them */
    service_secret_hash(salt, "ab\0cd", 5, whole);
    sha256_hex(salt, strlen(salt), "ab\0cd", 5, want);
    assert_string_equal(whole, want);
    assert_string_not_equal(whole, prefix);
}

static void
test_secret_hash_empty_secret(void **state)
{
    char got[65];

    (void)state;
    /* sha256sum of the salt text alone */
    service_secret_hash("00112233445566778899aabbccddeeff", "", 0, got);
    assert_string_equal(got, "5947d7c33d783f94b3b4c1a96ebc8991"
                             "ed28f1b069b71e03376cba8caa98a720");
}

/*---- Secret check ----*/

static void
test_check_right_secret(void **state)
{
    struct creds k;

    (void)state;
    new_creds(&k);
    assert_int_equal(
        service_secret_check(k.salt, k.hash, k.secret, SERVICE_SECRET_LEN), 1);
}

static void
test_check_one_char_changed(void **state)
{
    struct creds k;
    char bad[SERVICE_SECRET_LEN + 1];
    size_t i;

    (void)state;
    new_creds(&k);
    for (i = 0; i < SERVICE_SECRET_LEN; i++) {
        memcpy(bad, k.secret, sizeof(bad));
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        assert_false(
            service_secret_check(k.salt, k.hash, bad, SERVICE_SECRET_LEN));
    }
}

static void
test_check_shorter_secret(void **state)
{
    struct creds k;

    (void)state;
    new_creds(&k);
    assert_false(
        service_secret_check(k.salt, k.hash, k.secret, SERVICE_SECRET_LEN - 1));
    assert_false(service_secret_check(k.salt, k.hash, k.secret, 1));
}

static void
test_check_longer_secret(void **state)
{
    struct creds k;
    char longer[SERVICE_SECRET_LEN + 2];

    (void)state;
    new_creds(&k);
    memcpy(longer, k.secret, SERVICE_SECRET_LEN);
    longer[SERVICE_SECRET_LEN] = 'x';
    longer[SERVICE_SECRET_LEN + 1] = '\0';
    assert_false(
        service_secret_check(k.salt, k.hash, longer, SERVICE_SECRET_LEN + 1));
}

static void
test_check_empty_secret(void **state)
{
    struct creds k;

    (void)state;
    new_creds(&k);
    assert_false(service_secret_check(k.salt, k.hash, "", 0));
}

static void
test_check_other_salt(void **state)
{
    struct creds a, b;

    (void)state;
    new_creds(&a);
    new_creds(&b);
    assert_false(
        service_secret_check(b.salt, a.hash, a.secret, SERVICE_SECRET_LEN));
    assert_false(
        service_secret_check("", a.hash, a.secret, SERVICE_SECRET_LEN));
}

static void
test_check_other_hash(void **state)
{
    struct creds a, b;

    (void)state;
    new_creds(&a);
    new_creds(&b);
    assert_false(
        service_secret_check(a.salt, b.hash, a.secret, SERVICE_SECRET_LEN));
}

static void
test_check_stored_hash_one_char_changed(void **state)
{
    struct creds k;
    char bad[SERVICE_HASH_LEN + 1];
    size_t i;

    (void)state;
    new_creds(&k);
    /* every position of the stored hash is compared */
    for (i = 0; i < SERVICE_HASH_LEN; i++) {
        memcpy(bad, k.hash, sizeof(bad));
        bad[i] = bad[i] == '0' ? '1' : '0';
        assert_false(
            service_secret_check(k.salt, bad, k.secret, SERVICE_SECRET_LEN));
    }
}

static void
test_check_stored_hash_short(void **state)
{
    struct creds k;

    (void)state;
    new_creds(&k);
    /* a prefix of the right hash must not pass */
    k.hash[SERVICE_HASH_LEN - 1] = '\0';
    assert_false(
        service_secret_check(k.salt, k.hash, k.secret, SERVICE_SECRET_LEN));
}

static void
test_check_stored_hash_long(void **state)
{
    struct creds k;

    (void)state;
    new_creds(&k);
    /* the right hash with a tail must not pass */
    k.hash[SERVICE_HASH_LEN] = '0';
    k.hash[SERVICE_HASH_LEN + 1] = '\0';
    assert_false(
        service_secret_check(k.salt, k.hash, k.secret, SERVICE_SECRET_LEN));
}

static void
test_check_stored_hash_empty(void **state)
{
    struct creds k;

    (void)state;
    new_creds(&k);
    assert_false(
        service_secret_check(k.salt, "", k.secret, SERVICE_SECRET_LEN));
}

/*---- Split ----*/

#define GOOD_ID "0123456789abcdef"

/* s is refused and id, *secret and *len are left exactly as they were. */
static void
assert_split_rejects(const char *s)
{
    char id[SERVICE_ID_LEN + 1 + PAD];
    char before[sizeof(id)];
    const char *sentinel = "untouched";
    const char *secret = sentinel;
    size_t len = 12345;

    memset(id, CANARY, sizeof(id));
    memcpy(before, id, sizeof(id));
    assert_int_equal(service_secret_split(s, id, &secret, &len), BRK_ERR_INVAL);
    assert_memory_equal(id, before, sizeof(id));
    assert_ptr_equal(secret, sentinel);
    assert_int_equal(len, 12345);
}

static void
test_split_ok(void **state)
{
    static const char s[] = GOOD_ID ".s3cr3t_-X";
    char id[SERVICE_ID_LEN + 1 + PAD];
    const char *secret = NULL;
    size_t len = 0;

    (void)state;
    memset(id, CANARY, sizeof(id));
    assert_int_equal(service_secret_split(s, id, &secret, &len), BRK_OK);
    assert_shape(id, SERVICE_ID_LEN, is_lower_hex);
    assert_string_equal(id, GOOD_ID);
    assert_ptr_equal(secret, s + SERVICE_ID_LEN + 1);
    assert_int_equal(len, strlen("s3cr3t_-X"));
}

static void
test_split_fresh_credentials(void **state)
{
    struct creds k;
    char whole[SERVICE_ID_LEN + 1 + SERVICE_SECRET_LEN + 1];
    char id[SERVICE_ID_LEN + 1];
    const char *secret = NULL;
    size_t len = 0;

    (void)state;
    new_creds(&k);
    memcpy(whole, k.id, SERVICE_ID_LEN);
    whole[SERVICE_ID_LEN] = '.';
    memcpy(whole + SERVICE_ID_LEN + 1, k.secret, SERVICE_SECRET_LEN + 1);
    assert_int_equal(service_secret_split(whole, id, &secret, &len), BRK_OK);
    assert_string_equal(id, k.id);
    assert_int_equal(len, SERVICE_SECRET_LEN);
    assert_true(service_secret_check(k.salt, k.hash, secret, len));
}

static void
test_split_secret_256_ok(void **state)
{
    char s[SERVICE_ID_LEN + 1 + 256 + 1];
    char id[SERVICE_ID_LEN + 1];
    const char *secret = NULL;
    size_t len = 0;

    (void)state;
    memcpy(s, GOOD_ID ".", SERVICE_ID_LEN + 1);
    memset(s + SERVICE_ID_LEN + 1, 'x', 256);
    s[sizeof(s) - 1] = '\0';
    assert_int_equal(service_secret_split(s, id, &secret, &len), BRK_OK);
    assert_int_equal(len, 256);
}

static void
test_split_secret_257_rejected(void **state)
{
    char s[SERVICE_ID_LEN + 1 + 257 + 1];

    (void)state;
    memcpy(s, GOOD_ID ".", SERVICE_ID_LEN + 1);
    memset(s + SERVICE_ID_LEN + 1, 'x', 257);
    s[sizeof(s) - 1] = '\0';
    assert_split_rejects(s);
}

static void
test_split_secret_huge_rejected(void **state)
{
    char *s = malloc(SERVICE_ID_LEN + 1 + 100000 + 1);

    (void)state;
    assert_non_null(s);
    memcpy(s, GOOD_ID ".", SERVICE_ID_LEN + 1);
    memset(s + SERVICE_ID_LEN + 1, 'x', 100000);
    s[SERVICE_ID_LEN + 1 + 100000] = '\0';
    assert_split_rejects(s);
    free(s);
}

static void
test_split_missing_dot(void **state)
{
    (void)state;
    assert_split_rejects(GOOD_ID "secret");
    assert_split_rejects(GOOD_ID);
}

static void
test_split_empty(void **state)
{
    (void)state;
    assert_split_rejects("");
    assert_split_rejects(".");
}

static void
test_split_empty_id(void **state)
{
    (void)state;
    assert_split_rejects(".secret");
}

static void
test_split_short_id(void **state)
{
    (void)state;
    assert_split_rejects("0123456789abcde.secret");
}

static void
test_split_long_id(void **state)
{
    (void)state;
    assert_split_rejects("0123456789abcdef0.secret");
}

static void
test_split_uppercase_id(void **state)
{
    (void)state;
    assert_split_rejects("0123456789ABCDEF.secret");
    assert_split_rejects("0123456789abcdeF.secret");
}

static void
test_split_non_hex_id(void **state)
{
    (void)state;
    assert_split_rejects("0123456789abcdeg.secret");
    assert_split_rejects("g123456789abcdef.secret");
    assert_split_rejects("0123456789 abcde.secret");
    assert_split_rejects("0123456789abcd-f.secret");
    assert_split_rejects("0123456789abcd\xc3\xa9.secret");
}

static void
test_split_dot_inside_id(void **state)
{
    (void)state;
    /* the first dot ends the id */
    assert_split_rejects("01234567.9abcdef.secret");
}

static void
test_split_empty_secret(void **state)
{
    (void)state;
    assert_split_rejects(GOOD_ID ".");
}

/*---- Tokens ----*/

static int
cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void
test_token_shape(void **state)
{
    char token[SERVICE_TOKEN_LEN + 1 + PAD];

    (void)state;
    memset(token, CANARY, sizeof(token));
    assert_int_equal(service_token_new(token), BRK_OK);
    assert_shape(token, SERVICE_TOKEN_LEN, is_token_text);
}

static void
test_token_unique_over_1000(void **state)
{
    enum { N = 1000 };
    char(*tokens)[SERVICE_TOKEN_LEN + 1] = malloc(N * sizeof(*tokens));
    size_t i;

    (void)state;
    assert_non_null(tokens);
    for (i = 0; i < N; i++) {
        assert_int_equal(service_token_new(tokens[i]), BRK_OK);
        assert_int_equal(strlen(tokens[i]), SERVICE_TOKEN_LEN);
        assert_true(is_token_text(tokens[i], SERVICE_TOKEN_LEN));
    }
    qsort(tokens, N, sizeof(*tokens), cmp_str);
    for (i = 1; i < N; i++)
        assert_string_not_equal(tokens[i - 1], tokens[i]);
    free(tokens);
}

static void
test_token_uses_whole_alphabet(void **state)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "abcdefghijklmnopqrstuvwxyz0123456789-_";
    char token[SERVICE_TOKEN_LEN + 1];
    int seen[256] = {0};
    size_t i, j;

    (void)state;
    /* 64,000 draws of 64 letters: each expected ~1000 times */
    for (i = 0; i < 1000; i++) {
        assert_int_equal(service_token_new(token), BRK_OK);
        for (j = 0; j < SERVICE_TOKEN_LEN; j++)
            seen[(unsigned char)token[j]]++;
    }
    for (i = 0; i < sizeof(alphabet) - 1; i++) {
        assert_true(seen[(unsigned char)alphabet[i]] > 500);
        assert_true(seen[(unsigned char)alphabet[i]] < 1500);
    }
}

static void
test_token_hash_matches_evp(void **state)
{
    char token[SERVICE_TOKEN_LEN + 1];
    char got[65 + PAD], want[65];

    (void)state;
    assert_int_equal(service_token_new(token), BRK_OK);
    memset(got, CANARY, sizeof(got));
    service_token_hash(token, SERVICE_TOKEN_LEN, got);
    sha256_hex(token, SERVICE_TOKEN_LEN, "", 0, want);
    assert_string_equal(got, want);
    assert_shape(got, 64, is_lower_hex);
}

static void
test_token_hash_known_vectors(void **state)
{
    char got[65];

    (void)state;
    service_token_hash("abc", 3, got);
    assert_string_equal(got, "ba7816bf8f01cfea414140de5dae2223"
                             "b00361a396177a9cb410ff61f20015ad");
    service_token_hash("", 0, got);
    assert_string_equal(got, "e3b0c44298fc1c149afbf4c8996fb924"
                             "27ae41e4649b934ca495991b7852b855");
    /* len, not the NUL, bounds the input */
    service_token_hash("abcdef", 3, got);
    assert_string_equal(got, "ba7816bf8f01cfea414140de5dae2223"
                             "b00361a396177a9cb410ff61f20015ad");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_empty),
        cmocka_unit_test(test_name_one_char),
        cmocka_unit_test(test_name_all_allowed_chars),
        cmocka_unit_test(test_name_64_ok),
        cmocka_unit_test(test_name_65_rejected),
        cmocka_unit_test(test_name_very_long_rejected),
        cmocka_unit_test(test_name_space),
        cmocka_unit_test(test_name_separators),
        cmocka_unit_test(test_name_control_chars),
        cmocka_unit_test(test_name_unicode),
        cmocka_unit_test(test_name_every_byte),
        cmocka_unit_test(test_credentials_shapes),
        cmocka_unit_test(test_credentials_hash_is_of_secret),
        cmocka_unit_test(test_credentials_differ),
        cmocka_unit_test(test_secret_new_shapes),
        cmocka_unit_test(test_no_broker_allocations),
        cmocka_unit_test(test_secret_hash_matches_evp),
        cmocka_unit_test(test_secret_hash_known_vector),
        cmocka_unit_test(test_token_hash_known_vector),
        cmocka_unit_test(test_secret_hash_uses_len),
        cmocka_unit_test(test_secret_hash_empty_secret),
        cmocka_unit_test(test_check_right_secret),
        cmocka_unit_test(test_check_one_char_changed),
        cmocka_unit_test(test_check_shorter_secret),
        cmocka_unit_test(test_check_longer_secret),
        cmocka_unit_test(test_check_empty_secret),
        cmocka_unit_test(test_check_other_salt),
        cmocka_unit_test(test_check_other_hash),
        cmocka_unit_test(test_check_stored_hash_one_char_changed),
        cmocka_unit_test(test_check_stored_hash_short),
        cmocka_unit_test(test_check_stored_hash_long),
        cmocka_unit_test(test_check_stored_hash_empty),
        cmocka_unit_test(test_split_ok),
        cmocka_unit_test(test_split_fresh_credentials),
        cmocka_unit_test(test_split_secret_256_ok),
        cmocka_unit_test(test_split_secret_257_rejected),
        cmocka_unit_test(test_split_secret_huge_rejected),
        cmocka_unit_test(test_split_missing_dot),
        cmocka_unit_test(test_split_empty),
        cmocka_unit_test(test_split_empty_id),
        cmocka_unit_test(test_split_short_id),
        cmocka_unit_test(test_split_long_id),
        cmocka_unit_test(test_split_uppercase_id),
        cmocka_unit_test(test_split_non_hex_id),
        cmocka_unit_test(test_split_dot_inside_id),
        cmocka_unit_test(test_split_empty_secret),
        cmocka_unit_test(test_token_shape),
        cmocka_unit_test(test_token_unique_over_1000),
        cmocka_unit_test(test_token_uses_whole_alphabet),
        cmocka_unit_test(test_token_hash_matches_evp),
        cmocka_unit_test(test_token_hash_known_vectors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
