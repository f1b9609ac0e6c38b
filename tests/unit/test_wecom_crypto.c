/*
 * Unit tests for wecom_crypto: the published WeCom vectors, round trips,
 * and hostile ciphertexts crafted here with raw EVP so every padding and
 * length check is hit on purpose.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "broker.h"
#include "codec.h"
#include "wecom_crypto.h"

/* Vector A: GET URL verification (wecom-protocol.md 1.8). */
#define A_TOKEN "kjr2TKI8umCBfVF3wAHk8JiPwma5VBme"
#define A_TS    "1583940690"
#define A_NONCE "VHh7ymSeb0jc4lSb"
#define A_ECHO                                                                 \
    "6KmUQuPVu7UhjyVqRdbo5SfcRqaHvbUlKSHFvBV2ZuR6TIlKsygcfeSd1GDplg1C5KSKr6UP" \
    "HCaC/nIX3ZNt9w=="
#define A_SIG "1ba3cb09c0d2c2b3ed6900d37f91a6efae6cb011"
#define A_KEY "4Ma3YBrSBbX2aez8MJpXGBne5LSDwgGqHbhM9WPYIws"
#define A_MSG "94966531020182955848408"
#define A_RID "ww6a112864f8022910"

/* Vector B: POST data callback of a corp app. */
#define B_TOKEN "kz7Yx62CH8SaLN"
#define B_TS    "1583995625"
#define B_NONCE "1584392382"
#define B_KEY   "cD0d7jx4tYvVtzqrmh3Dm3QFCXe6f8SlHoMtMh3qQEP"
#define B_ENC                                                                  \
    "fyVN9BUnH6xNl0/VCHTCg6XGxxvoFdyZ7VQbAbBcQ79dVccYvdIyJYZSMMhkPy8LPaoe+V27" \
    "qjoQ553fXavmrPOgxzHrKKf3YIu63pB4/nN0LY4S+GzUFi/LLFj1TI1sOh0q2jT5u1nYz5G3" \
    "HFNLd3DFUvJVLtZl8mVMwUOzBpzKZhhmCvIJLVlvym9tt+VYwG06MSbmnf9AzYFKhm1BIy+9" \
    "5Q824ilY6Wy8l+vkFqEdASl2k83jMXvlkVRSB3hmNptWTbq8ygDdLtkCyA4UEiZvfTskqqVk" \
    "bYwLptRl/1F+DVL9SH/TWt2j3dCm4rzY5jQG+fA+2xh2Kk+OrVgafqtQCfhjq8C38A2IwCcg" \
    "2BONKk8s5ijFxQoszmXvJQ3zLYbjzRWQ40xhryDyPNNse7/slKVW2QMBEUPNOxUcX9k="
#define B_SIG "a44d1b7dc3dc4b02edd99dc32afa6a26be7c92f6"
#define B_RID "wwf181555a13a31443"
#define B_MSG                                                                  \
    "<xml><ToUserName><![CDATA[wwf181555a13a31443]]></ToUserName>"             \
    "<FromUserName><![CDATA[xen0n]]></FromUserName>"                           \
    "<CreateTime>1583995625</CreateTime><MsgType><![CDATA[text]]></MsgType>"   \
    "<Content><![CDATA[x123]]></Content><MsgId>2018405441</MsgId>"             \
    "<AgentID>1000002</AgentID></xml>"

/* Sentinels: an error path must leave out-params exactly as they were. */
static char sentinel_msg[] = "untouched-msg";
static char sentinel_rid[] = "untouched-rid";
#define SENTINEL_LEN ((size_t)0x5a5a)

/*---- Helpers ----*/

static struct wecom_crypto *
ctx_new(const char *token, const char *key)
{
    struct wecom_crypto *c = NULL;

    assert_int_equal(wecom_crypto_new(token, key, &c), BRK_OK);
    assert_non_null(c);
    return c;
}

/* Vector A's AES key; its last character carries no stray bits. */
static void
raw_key_a(unsigned char key[32])
{
    size_t got = 0;

    assert_int_equal(codec_b64_decode(A_KEY "=", 44, key, 32, &got), BRK_OK);
    assert_int_equal(got, 32);
}

/* AES-256-CBC, no padding, key A, IV = key[0..16). */
static void
raw_aes(int enc, const unsigned char *in, size_t len, unsigned char *out)
{
    unsigned char key[32];
    EVP_CIPHER_CTX *ctx;
    int l1 = 0, l2 = 0;

    raw_key_a(key);
    ctx = EVP_CIPHER_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(
        EVP_CipherInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, key, enc), 1);
    assert_int_equal(EVP_CIPHER_CTX_set_padding(ctx, 0), 1);
    assert_int_equal(EVP_CipherUpdate(ctx, out, &l1, in, (int)len), 1);
    assert_int_equal(EVP_CipherFinal_ex(ctx, out + l1, &l2), 1);
    assert_int_equal((size_t)(l1 + l2), len);
    EVP_CIPHER_CTX_free(ctx);
}

/* Encrypt raw plaintext blocks with key A; owned base64 (brk_free). */
static char *
craft(const unsigned char *pt, size_t len)
{
    unsigned char *ct = brk_malloc(len + 16);
    char *b64;

    assert_non_null(ct);
    assert_int_equal(len % 16, 0);
    if (len > 0)
        raw_aes(1, pt, len, ct);
    b64 = brk_malloc(CODEC_B64_ENC_SIZE(len));
    assert_non_null(b64);
    codec_b64_encode(ct, len, b64);
    brk_free(ct);
    return b64;
}

/* Base64 of len arbitrary (non-AES) bytes; owned (brk_free). */
static char *
b64_of_bytes(size_t len)
{
    unsigned char buf[64];
    char *b64;
    size_t i;

    assert_true(len <= sizeof(buf));
    for (i = 0; i < len; i++)
        buf[i] = (unsigned char)(i * 7 + 1);
    b64 = brk_malloc(CODEC_B64_ENC_SIZE(len));
    assert_non_null(b64);
    codec_b64_encode(buf, len, b64);
    return b64;
}

/*
 * Write random(16) | be32 declared | msg | rid into buf (no padding) and
 * return the length written.
 */
static size_t
build_body(unsigned char *buf, uint32_t declared, const char *msg,
           size_t msglen, const char *rid)
{
    size_t i, ridlen = strlen(rid);

    for (i = 0; i < 16; i++)
        buf[i] = (unsigned char)('a' + i);
    buf[16] = (unsigned char)(declared >> 24);
    buf[17] = (unsigned char)(declared >> 16);
    buf[18] = (unsigned char)(declared >> 8);
    buf[19] = (unsigned char)declared;
    memcpy(buf + 20, msg, msglen);
    memcpy(buf + 20 + msglen, rid, ridlen);
    return 20 + msglen + ridlen;
}

/* Append a correct PKCS#7-32 pad; return the padded length. */
static size_t
pad32(unsigned char *buf, size_t len)
{
    size_t n = 32 - len % 32;

    memset(buf + len, (int)n, n);
    return len + n;
}

static void
expect_decrypt_err(const struct wecom_crypto *c, const char *b64, size_t len,
                   enum brk_err want)
{
    char *msg = sentinel_msg, *rid = sentinel_rid;
    size_t msglen = SENTINEL_LEN;

    assert_int_equal(wecom_crypto_decrypt(c, b64, len, &msg, &msglen, &rid),
                     want);
    assert_ptr_equal(msg, sentinel_msg);
    assert_ptr_equal(rid, sentinel_rid);
    assert_int_equal(msglen, SENTINEL_LEN);
}

/* Craft plaintext pt[0..len), encrypt with key A, expect want. */
static void
expect_crafted_err(const unsigned char *pt, size_t len, enum brk_err want)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    char *b64 = craft(pt, len);

    expect_decrypt_err(c, b64, strlen(b64), want);
    brk_free(b64);
    wecom_crypto_free(c);
}

static void
expect_new_key_err(const char *key)
{
    struct wecom_crypto *c = (struct wecom_crypto *)sentinel_msg;

    assert_int_equal(wecom_crypto_new(A_TOKEN, key, &c), BRK_ERR_WX_AES_KEY);
    assert_ptr_equal(c, (struct wecom_crypto *)sentinel_msg);
}

/*---- Context ----*/

static void
test_new_accepts_vector_keys(void **state)
{
    (void)state;
    wecom_crypto_free(ctx_new(A_TOKEN, A_KEY));
    /* B's last char 'P' has both stray low bits set */
    wecom_crypto_free(ctx_new(B_TOKEN, B_KEY));
}

static void
test_new_key_42_chars(void **state)
{
    char key[] = A_KEY;

    (void)state;
    key[42] = '\0';
    expect_new_key_err(key);
}

static void
test_new_key_44_chars(void **state)
{
    (void)state;
    expect_new_key_err(A_KEY "A");
    expect_new_key_err(A_KEY "=");
}

static void
test_new_key_invalid_chars(void **state)
{
    static const char bad[] = {'-', '_', '=', ' ', '.', '\n', '\x80', '\xc3'};
    char key[] = A_KEY;
    size_t i, pos;

    (void)state;
    for (pos = 0; pos < 43; pos += 21) {
        for (i = 0; i < sizeof(bad); i++) {
            memcpy(key, A_KEY, sizeof(key));
            key[pos] = bad[i];
            expect_new_key_err(key);
        }
    }
}

static void
test_new_key_empty_or_null(void **state)
{
    (void)state;
    expect_new_key_err("");
    expect_new_key_err(NULL);
}

/* Only the 2 bits past the 256th are ignored: 's' and 't' differ there. */
static void
test_new_key_stray_bits_ignored(void **state)
{
    char key[] = A_KEY;
    struct wecom_crypto *c;
    char *msg = NULL, *rid = NULL;
    size_t msglen = 0;

    (void)state;
    assert_int_equal(key[42], 's');
    key[42] = 't';
    c = ctx_new(A_TOKEN, key);
    assert_int_equal(
        wecom_crypto_decrypt(c, A_ECHO, strlen(A_ECHO), &msg, &msglen, &rid),
        BRK_OK);
    assert_string_equal(msg, A_MSG);
    brk_free_secret(msg, msglen);
    brk_free(rid);
    wecom_crypto_free(c);
}

static void
test_new_token_bounds(void **state)
{
    char token[130];
    struct wecom_crypto *c = (struct wecom_crypto *)sentinel_msg;

    (void)state;
    memset(token, 'x', sizeof(token));
    token[128] = '\0';
    wecom_crypto_free(ctx_new(token, A_KEY));
    wecom_crypto_free(ctx_new("x", A_KEY));
    token[128] = 'x';
    token[129] = '\0';
    assert_int_equal(wecom_crypto_new(token, A_KEY, &c), BRK_ERR_INVAL);
    assert_int_equal(wecom_crypto_new("", A_KEY, &c), BRK_ERR_INVAL);
    assert_int_equal(wecom_crypto_new(NULL, A_KEY, &c), BRK_ERR_INVAL);
    assert_ptr_equal(c, (struct wecom_crypto *)sentinel_msg);
}

static void
test_free_null(void **state)
{
    (void)state;
    wecom_crypto_free(NULL);
}

/*---- Signature ----*/

static void
test_sign_vector_a(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    char sig[WECOM_CRYPTO_SIG_SIZE];

    (void)state;
    assert_int_equal(wecom_crypto_sign(c, A_TS, A_NONCE, A_ECHO, sig), BRK_OK);
    assert_string_equal(sig, A_SIG);
    wecom_crypto_free(c);
}

static void
test_sign_vector_b(void **state)
{
    struct wecom_crypto *c = ctx_new(B_TOKEN, B_KEY);
    char sig[WECOM_CRYPTO_SIG_SIZE];

    (void)state;
    assert_int_equal(wecom_crypto_sign(c, B_TS, B_NONCE, B_ENC, sig), BRK_OK);
    assert_string_equal(sig, B_SIG);
    wecom_crypto_free(c);
}

/* Bytes >= 0x80 sort after ASCII; a signed-char sort would give e40686... */
static void
test_sign_sorts_unsigned_bytes(void **state)
{
    struct wecom_crypto *c = ctx_new("\xc3\xa9t", A_KEY);
    char sig[WECOM_CRYPTO_SIG_SIZE];

    (void)state;
    assert_int_equal(wecom_crypto_sign(c, "1", "Z", "a", sig), BRK_OK);
    assert_string_equal(sig, "9dd7614f6d18d41f6d01ff708b6a7e72b43b07c2");
    wecom_crypto_free(c);
}

static void
test_verify_vectors(void **state)
{
    struct wecom_crypto *a = ctx_new(A_TOKEN, A_KEY);
    struct wecom_crypto *b = ctx_new(B_TOKEN, B_KEY);

    (void)state;
    assert_int_equal(wecom_crypto_verify(a, A_SIG, A_TS, A_NONCE, A_ECHO),
                     BRK_OK);
    assert_int_equal(wecom_crypto_verify(b, B_SIG, B_TS, B_NONCE, B_ENC),
                     BRK_OK);
    wecom_crypto_free(a);
    wecom_crypto_free(b);
}

static void
test_verify_sig_one_char_wrong(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    char sig[] = A_SIG;
    size_t i;

    (void)state;
    for (i = 0; i < 40; i++) {
        memcpy(sig, A_SIG, sizeof(sig));
        sig[i] = sig[i] == '0' ? '1' : '0';
        assert_int_equal(wecom_crypto_verify(c, sig, A_TS, A_NONCE, A_ECHO),
                         BRK_ERR_WX_SIGNATURE);
    }
    wecom_crypto_free(c);
}

static void
test_verify_sig_wrong_length(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    char sig[] = A_SIG;

    (void)state;
    sig[39] = '\0';
    assert_int_equal(wecom_crypto_verify(c, sig, A_TS, A_NONCE, A_ECHO),
                     BRK_ERR_WX_SIGNATURE);
    assert_int_equal(wecom_crypto_verify(c, A_SIG "0", A_TS, A_NONCE, A_ECHO),
                     BRK_ERR_WX_SIGNATURE);
    assert_int_equal(wecom_crypto_verify(c, A_SIG " ", A_TS, A_NONCE, A_ECHO),
                     BRK_ERR_WX_SIGNATURE);
    assert_int_equal(wecom_crypto_verify(c, "", A_TS, A_NONCE, A_ECHO),
                     BRK_ERR_WX_SIGNATURE);
    assert_int_equal(wecom_crypto_verify(c, NULL, A_TS, A_NONCE, A_ECHO),
                     BRK_ERR_WX_SIGNATURE);
    wecom_crypto_free(c);
}

static void
test_verify_sig_uppercase(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    char sig[] = A_SIG;
    size_t i;

    (void)state;
    for (i = 0; sig[i] != '\0'; i++)
        if (sig[i] >= 'a' && sig[i] <= 'f')
            sig[i] = (char)(sig[i] - 'a' + 'A');
    assert_int_equal(wecom_crypto_verify(c, sig, A_TS, A_NONCE, A_ECHO),
                     BRK_ERR_WX_SIGNATURE);
    wecom_crypto_free(c);
}

static void
test_verify_token_altered(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN "x", A_KEY);

    (void)state;
    assert_int_equal(wecom_crypto_verify(c, A_SIG, A_TS, A_NONCE, A_ECHO),
                     BRK_ERR_WX_SIGNATURE);
    wecom_crypto_free(c);
}

static void
test_verify_timestamp_altered(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);

    (void)state;
    assert_int_equal(
        wecom_crypto_verify(c, A_SIG, "1583940691", A_NONCE, A_ECHO),
        BRK_ERR_WX_SIGNATURE);
    wecom_crypto_free(c);
}

static void
test_verify_nonce_altered(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);

    (void)state;
    assert_int_equal(
        wecom_crypto_verify(c, A_SIG, A_TS, "VHh7ymSeb0jc4lSc", A_ECHO),
        BRK_ERR_WX_SIGNATURE);
    wecom_crypto_free(c);
}

static void
test_verify_encrypt_altered(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    char echo[] = A_ECHO;

    (void)state;
    echo[0] = '7';
    assert_int_equal(wecom_crypto_verify(c, A_SIG, A_TS, A_NONCE, echo),
                     BRK_ERR_WX_SIGNATURE);
    wecom_crypto_free(c);
}

/* Swapping timestamp and nonce gives the same sorted input: by design. */
static void
test_verify_order_independent(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);

    (void)state;
    assert_int_equal(wecom_crypto_verify(c, A_SIG, A_NONCE, A_TS, A_ECHO),
                     BRK_OK);
    wecom_crypto_free(c);
}

/*---- Decrypt: vectors ----*/

static void
test_decrypt_vector_a(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    char *msg = NULL, *rid = NULL;
    size_t msglen = 0;

    (void)state;
    assert_int_equal(
        wecom_crypto_decrypt(c, A_ECHO, strlen(A_ECHO), &msg, &msglen, &rid),
        BRK_OK);
    assert_int_equal(msglen, 23);
    assert_memory_equal(msg, A_MSG, 24);
    assert_string_equal(rid, A_RID);
    brk_free_secret(msg, msglen);
    brk_free(rid);
    wecom_crypto_free(c);
}

static void
test_decrypt_vector_b(void **state)
{
    struct wecom_crypto *c = ctx_new(B_TOKEN, B_KEY);
    char *msg = NULL, *rid = NULL;
    size_t msglen = 0;

    (void)state;
    assert_int_equal(
        wecom_crypto_decrypt(c, B_ENC, strlen(B_ENC), &msg, &msglen, &rid),
        BRK_OK);
    assert_int_equal(msglen, 268);
    assert_int_equal(strlen(B_MSG), 268);
    assert_memory_equal(msg, B_MSG, 269);
    assert_string_equal(rid, B_RID);
    brk_free_secret(msg, msglen);
    brk_free(rid);
    wecom_crypto_free(c);
}

/* The input is a (pointer, length) pair: nothing after it is read. */
static void
test_decrypt_not_nul_terminated(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    size_t n = strlen(A_ECHO);
    char *buf = brk_malloc(n);
    char *msg = NULL, *rid = NULL;
    size_t msglen = 0;

    (void)state;
    assert_non_null(buf);
    memcpy(buf, A_ECHO, n);
    assert_int_equal(wecom_crypto_decrypt(c, buf, n, &msg, &msglen, &rid),
                     BRK_OK);
    assert_string_equal(msg, A_MSG);
    assert_string_equal(rid, A_RID);
    brk_free_secret(msg, msglen);
    brk_free(rid);
    brk_free(buf);
    wecom_crypto_free(c);
}

static void
test_decrypt_wrong_key(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, B_KEY);

    (void)state;
    expect_decrypt_err(c, A_ECHO, strlen(A_ECHO), BRK_ERR_WX_BUFFER);
    wecom_crypto_free(c);
}

/* Every key one character away from A: garbage out, an error, no crash. */
static void
test_decrypt_wrong_keys_never_succeed(void **state)
{
    static const char alpha[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char key[] = A_KEY;
    char *msg = sentinel_msg, *rid = sentinel_rid;
    size_t msglen = SENTINEL_LEN, i;
    struct wecom_crypto *c;
    enum brk_err err;

    (void)state;
    for (i = 0; i < 43; i++) {
        memcpy(key, A_KEY, sizeof(key));
        /* flip bit 5 of the 6-bit value: meaningful even in the last char */
        key[i] = alpha[(strchr(alpha, key[i]) - alpha) ^ 0x20];
        c = ctx_new(A_TOKEN, key);
        err = wecom_crypto_decrypt(c, A_ECHO, strlen(A_ECHO), &msg, &msglen,
                                   &rid);
        assert_true(err == BRK_ERR_WX_BUFFER || err == BRK_ERR_WX_RECEIVEID);
        assert_ptr_equal(msg, sentinel_msg);
        assert_ptr_equal(rid, sentinel_rid);
        assert_int_equal(msglen, SENTINEL_LEN);
        wecom_crypto_free(c);
    }
}

/*---- Encrypt ----*/

static void
roundtrip(const struct wecom_crypto *c, const unsigned char rnd[16],
          size_t msglen, const char *rid)
{
    char *m = brk_malloc(msglen + 1);
    char *b64 = NULL, *msg = NULL, *got_rid = NULL;
    unsigned char ct[1024];
    size_t i, got = 0, ctlen = 0, plain = 20 + msglen + strlen(rid);

    assert_non_null(m);
    /* binary payload with NUL bytes in it */
    for (i = 0; i < msglen; i++)
        m[i] = (char)(i * 37 % 256);
    assert_int_equal(
        wecom_crypto_encrypt_with_random(c, rnd, m, msglen, rid, &b64), BRK_OK);
    assert_int_equal(codec_b64_decode(b64, strlen(b64), ct, sizeof(ct), &ctlen),
                     BRK_OK);
    assert_int_equal(ctlen, plain + 32 - plain % 32);
    assert_int_equal(
        wecom_crypto_decrypt(c, b64, strlen(b64), &msg, &got, &got_rid),
        BRK_OK);
    assert_int_equal(got, msglen);
    assert_memory_equal(msg, m, msglen);
    assert_int_equal(msg[msglen], '\0');
    assert_string_equal(got_rid, rid);
    brk_free_secret(msg, got);
    brk_free(got_rid);
    brk_free(b64);
    brk_free(m);
}

static void
test_roundtrip_lengths_0_to_100(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    unsigned char rnd[16];
    size_t n;

    (void)state;
    memset(rnd, 0xa5, sizeof(rnd));
    /* with a 4-byte receiveid the plaintext hits 32k at n = 8, 40, 72 */
    for (n = 0; n <= 100; n++)
        roundtrip(c, rnd, n, "ww12");
    wecom_crypto_free(c);
}

static void
test_roundtrip_block_boundaries(void **state)
{
    struct wecom_crypto *c = ctx_new(B_TOKEN, B_KEY);
    unsigned char rnd[16];
    size_t k, d;

    (void)state;
    memset(rnd, 0x3c, sizeof(rnd));
    /* plaintext of 32k-1, 32k and 32k+1 bytes for k = 1..20 */
    for (k = 1; k <= 20; k++)
        for (d = 0; d < 3; d++)
            if (32 * k + d >= 20 + 18 + 1)
                roundtrip(c, rnd, 32 * k + d - 1 - 20 - 18, B_RID);
    roundtrip(c, rnd, 0, "x");
    wecom_crypto_free(c);
}

static void
test_encrypt_random_differs(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    char *e1 = NULL, *e2 = NULL, *msg = NULL, *rid = NULL;
    size_t msglen = 0;

    (void)state;
    assert_int_equal(wecom_crypto_encrypt(c, "hello", 5, A_RID, &e1), BRK_OK);
    assert_int_equal(wecom_crypto_encrypt(c, "hello", 5, A_RID, &e2), BRK_OK);
    assert_string_not_equal(e1, e2);
    assert_int_equal(
        wecom_crypto_decrypt(c, e1, strlen(e1), &msg, &msglen, &rid), BRK_OK);
    assert_string_equal(msg, "hello");
    assert_string_equal(rid, A_RID);
    brk_free_secret(msg, msglen);
    brk_free(rid);
    assert_int_equal(
        wecom_crypto_decrypt(c, e2, strlen(e2), &msg, &msglen, &rid), BRK_OK);
    assert_string_equal(msg, "hello");
    assert_string_equal(rid, A_RID);
    brk_free_secret(msg, msglen);
    brk_free(rid);
    brk_free(e1);
    brk_free(e2);
    wecom_crypto_free(c);
}

/* Recover A's random prefix with raw EVP and rebuild the exact echostr. */
static void
test_encrypt_reproduces_vector_a(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    unsigned char ct[64], pt[64];
    char *out = NULL;
    size_t ctlen = 0;

    (void)state;
    assert_int_equal(
        codec_b64_decode(A_ECHO, strlen(A_ECHO), ct, sizeof(ct), &ctlen),
        BRK_OK);
    assert_int_equal(ctlen, 64);
    raw_aes(0, ct, ctlen, pt);
    assert_int_equal(pt[63], 3);
    assert_int_equal(wecom_crypto_encrypt_with_random(
                         c, pt, A_MSG, strlen(A_MSG), A_RID, &out),
                     BRK_OK);
    assert_string_equal(out, A_ECHO);
    brk_free(out);
    wecom_crypto_free(c);
}

static void
test_encrypt_bad_args(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    unsigned char rnd[16] = {0};
    char *out = sentinel_msg;

    (void)state;
    assert_int_equal(wecom_crypto_encrypt_with_random(c, rnd, "m", 1, "", &out),
                     BRK_ERR_INVAL);
    assert_int_equal(
        wecom_crypto_encrypt_with_random(c, rnd, "m", 1, NULL, &out),
        BRK_ERR_INVAL);
    assert_int_equal(
        wecom_crypto_encrypt_with_random(c, rnd, NULL, 1, A_RID, &out),
        BRK_ERR_INVAL);
    assert_int_equal(wecom_crypto_encrypt(c, "m", 1, "", &out), BRK_ERR_INVAL);
    assert_ptr_equal(out, sentinel_msg);
    /* an empty message may be NULL */
    assert_int_equal(
        wecom_crypto_encrypt_with_random(c, rnd, NULL, 0, A_RID, &out), BRK_OK);
    brk_free(out);
    wecom_crypto_free(c);
}

/* Encrypt refuses what decrypt would refuse as too big, and no more. */
static void
test_encrypt_size_limit(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    size_t max_ct = WECOM_CRYPTO_MAX_B64 / 4 * 3;
    /* largest message: plaintext + 1 pad byte == max_ct */
    size_t big = max_ct - 1 - 20 - 4;
    char *m = brk_calloc(1, big + 2);
    char *out = sentinel_msg, *msg = NULL, *rid = NULL;
    size_t msglen = 0;

    (void)state;
    assert_non_null(m);
    assert_int_equal(wecom_crypto_encrypt(c, m, big + 1, "ww12", &out),
                     BRK_ERR_TOOBIG);
    assert_ptr_equal(out, sentinel_msg);
    assert_int_equal(wecom_crypto_encrypt(c, m, SIZE_MAX, "ww12", &out),
                     BRK_ERR_TOOBIG);
    assert_int_equal(wecom_crypto_encrypt(c, m, big, "ww12", &out), BRK_OK);
    assert_int_equal(strlen(out), WECOM_CRYPTO_MAX_B64);
    assert_int_equal(
        wecom_crypto_decrypt(c, out, strlen(out), &msg, &msglen, &rid), BRK_OK);
    assert_int_equal(msglen, big);
    assert_string_equal(rid, "ww12");
    brk_free_secret(msg, msglen);
    brk_free(rid);
    brk_free(out);
    brk_free(m);
    wecom_crypto_free(c);
}

/*---- Decrypt: hostile padding ----*/

/* For each pad length n and each pad position, one wrong byte fails. */
static void
test_hostile_each_pad_byte_wrong(void **state)
{
    unsigned char pt[96];
    size_t n, pos, len, v;
    unsigned char bad[3];

    (void)state;
    for (n = 1; n <= 32; n++) {
        /* 20 + msglen + 4 + n == 64 */
        len = build_body(pt, (uint32_t)(40 - n),
                         "0123456789012345678901234"
                         "567890123456789",
                         40 - n, "ww12");
        assert_int_equal(pad32(pt, len), 64);
        assert_int_equal(pt[63], n);
        for (pos = 64 - n; pos < 64; pos++) {
            bad[0] = (unsigned char)(n ^ 0x80);
            bad[1] = (unsigned char)(n + 1);
            bad[2] = (unsigned char)(n - 1);
            /* at the last byte n +- 1 could form a valid shorter pad */
            for (v = 0; v < (pos == 63 ? 1u : 3u); v++) {
                pt[pos] = bad[v];
                expect_crafted_err(pt, 64, BRK_ERR_WX_BUFFER);
                pt[pos] = (unsigned char)n;
            }
        }
        /* and the untouched plaintext is accepted */
        {
            struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
            char *b64 = craft(pt, 64), *msg = NULL, *rid = NULL;
            size_t msglen = 0;

            assert_int_equal(
                wecom_crypto_decrypt(c, b64, strlen(b64), &msg, &msglen, &rid),
                BRK_OK);
            assert_int_equal(msglen, 40 - n);
            assert_string_equal(rid, "ww12");
            brk_free_secret(msg, msglen);
            brk_free(rid);
            brk_free(b64);
            wecom_crypto_free(c);
        }
    }
}

static void
test_hostile_pad_zero(void **state)
{
    unsigned char pt[64];
    size_t len;

    (void)state;
    len = build_body(pt, 5, "hello", 5, "ww12");
    memset(pt + len, 0, 64 - len);
    expect_crafted_err(pt, 64, BRK_ERR_WX_BUFFER);
}

static void
test_hostile_pad_33(void **state)
{
    unsigned char pt[96];
    size_t len;

    (void)state;
    len = build_body(pt, 5, "hello", 5, "ww12");
    assert_true(len <= 96 - 33);
    memset(pt + len, 33, 96 - len);
    expect_crafted_err(pt, 96, BRK_ERR_WX_BUFFER);
}

/* A 16-byte ciphertext with pad 20: n > len must not underflow. */
static void
test_hostile_pad_longer_than_buffer(void **state)
{
    unsigned char pt[16];

    (void)state;
    memset(pt, 20, sizeof(pt));
    expect_crafted_err(pt, 16, BRK_ERR_WX_BUFFER);
    memset(pt, 17, sizeof(pt));
    expect_crafted_err(pt, 16, BRK_ERR_WX_BUFFER);
}

/* A whole block of valid padding leaves nothing: shorter than 20. */
static void
test_hostile_pad_whole_buffer(void **state)
{
    unsigned char pt[32];

    (void)state;
    memset(pt, 32, sizeof(pt));
    expect_crafted_err(pt, 32, BRK_ERR_WX_BUFFER);
    memset(pt, 16, 16);
    expect_crafted_err(pt, 16, BRK_ERR_WX_BUFFER);
}

static void
test_hostile_plaintext_under_20(void **state)
{
    unsigned char pt[32];
    size_t len;

    (void)state;
    for (len = 0; len < 20; len++) {
        memset(pt, 'z', len);
        memset(pt + len, (int)(32 - len), 32 - len);
        expect_crafted_err(pt, 32, BRK_ERR_WX_BUFFER);
    }
}

/*---- Decrypt: hostile msg_len and receiveid ----*/

static void
expect_msg_len_err(uint32_t declared, enum brk_err want)
{
    unsigned char pt[64];
    size_t len;

    len = build_body(pt, declared, "hello", 5, "ww12");
    len = pad32(pt, len);
    expect_crafted_err(pt, len, want);
}

static void
test_hostile_msg_len_one_past_end(void **state)
{
    (void)state;
    /* 5 + 4 bytes follow the header */
    expect_msg_len_err(10, BRK_ERR_WX_BUFFER);
    expect_msg_len_err(44, BRK_ERR_WX_BUFFER);
}

static void
test_hostile_msg_len_ffffffff(void **state)
{
    (void)state;
    expect_msg_len_err(0xFFFFFFFFu, BRK_ERR_WX_BUFFER);
}

/* 20 + msg_len wraps a 32-bit unsigned to a small value. */
static void
test_hostile_msg_len_wraps_32bit(void **state)
{
    (void)state;
    expect_msg_len_err(0xFFFFFFECu, BRK_ERR_WX_BUFFER);
    expect_msg_len_err(0xFFFFFFF0u, BRK_ERR_WX_BUFFER);
    expect_msg_len_err(0x80000000u, BRK_ERR_WX_BUFFER);
    expect_msg_len_err(0x7FFFFFFFu, BRK_ERR_WX_BUFFER);
    expect_msg_len_err(0x7FFFFFF0u, BRK_ERR_WX_BUFFER);
}

/* msg_len covering everything after the header leaves no receiveid. */
static void
test_hostile_empty_receiveid(void **state)
{
    (void)state;
    expect_msg_len_err(9, BRK_ERR_WX_RECEIVEID);
}

static void
test_hostile_shorter_msg_len_moves_receiveid(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    unsigned char pt[64];
    char *b64, *msg = NULL, *rid = NULL;
    size_t len, msglen = 0;

    (void)state;
    len = pad32(pt, build_body(pt, 3, "hello", 5, "ww12"));
    b64 = craft(pt, len);
    assert_int_equal(
        wecom_crypto_decrypt(c, b64, strlen(b64), &msg, &msglen, &rid), BRK_OK);
    /* decrypt returns it; the caller's receiveid check rejects it */
    assert_string_equal(msg, "hel");
    assert_string_equal(rid, "loww12");
    assert_int_equal(wecom_crypto_check_receiveid(
                         rid, (const char *const[]){"ww12"}, 1, NULL),
                     BRK_ERR_WX_RECEIVEID);
    brk_free_secret(msg, msglen);
    brk_free(rid);
    brk_free(b64);
    wecom_crypto_free(c);
}

static void
test_hostile_receiveid_with_nul(void **state)
{
    unsigned char pt[64];
    size_t len;

    (void)state;
    len = build_body(pt, 5, "hello", 5, "ww12x");
    pt[len - 1] = '\0';
    len = pad32(pt, len);
    expect_crafted_err(pt, len, BRK_ERR_WX_RECEIVEID);
}

/* A message with NUL bytes is fine: the length is given. */
static void
test_decrypt_msg_with_nul(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    unsigned char pt[64];
    char *b64, *msg = NULL, *rid = NULL;
    size_t len, msglen = 0;

    (void)state;
    len = pad32(pt, build_body(pt, 5, "a\0b\0c", 5, "ww12"));
    b64 = craft(pt, len);
    assert_int_equal(
        wecom_crypto_decrypt(c, b64, strlen(b64), &msg, &msglen, &rid), BRK_OK);
    assert_int_equal(msglen, 5);
    assert_memory_equal(msg, "a\0b\0c", 6);
    assert_string_equal(rid, "ww12");
    brk_free_secret(msg, msglen);
    brk_free(rid);
    brk_free(b64);
    wecom_crypto_free(c);
}

/*---- Decrypt: hostile ciphertext length ----*/

static void
test_hostile_ciphertext_len_0(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);

    (void)state;
    expect_decrypt_err(c, "", 0, BRK_ERR_WX_DECRYPT);
    wecom_crypto_free(c);
}

static void
test_hostile_ciphertext_len_15(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    char *b64 = b64_of_bytes(15);

    (void)state;
    expect_decrypt_err(c, b64, strlen(b64), BRK_ERR_WX_DECRYPT);
    brk_free(b64);
    wecom_crypto_free(c);
}

static void
test_hostile_ciphertext_len_17(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    char *b64 = b64_of_bytes(17);

    (void)state;
    expect_decrypt_err(c, b64, strlen(b64), BRK_ERR_WX_DECRYPT);
    brk_free(b64);
    wecom_crypto_free(c);
}

/* Vector A's echostr cut to its first 48 ciphertext bytes. */
static void
test_hostile_ciphertext_len_48_truncated(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    unsigned char ct[64];
    char b64[CODEC_B64_ENC_SIZE(48)];
    size_t ctlen = 0;

    (void)state;
    assert_int_equal(
        codec_b64_decode(A_ECHO, strlen(A_ECHO), ct, sizeof(ct), &ctlen),
        BRK_OK);
    codec_b64_encode(ct, 48, b64);
    expect_decrypt_err(c, b64, strlen(b64), BRK_ERR_WX_BUFFER);
    wecom_crypto_free(c);
}

/*
 * 48 bytes is whole AES blocks but never WeCom's output; it is still
 * judged by the 32-byte padding: accepted when that checks out.
 */
static void
test_ciphertext_len_48_valid_pad_accepted(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    unsigned char pt[48];
    char *b64, *msg = NULL, *rid = NULL;
    size_t len, msglen = 0;

    (void)state;
    len = build_body(pt, 5, "hello", 5, "ww12");
    memset(pt + len, (int)(48 - len), 48 - len);
    b64 = craft(pt, 48);
    assert_int_equal(
        wecom_crypto_decrypt(c, b64, strlen(b64), &msg, &msglen, &rid), BRK_OK);
    assert_string_equal(msg, "hello");
    assert_string_equal(rid, "ww12");
    brk_free_secret(msg, msglen);
    brk_free(rid);
    brk_free(b64);
    wecom_crypto_free(c);
}

static void
test_hostile_too_big(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    size_t n = WECOM_CRYPTO_MAX_B64 + 4;
    char *buf = brk_malloc(n);
    char *msg = sentinel_msg, *rid = sentinel_rid;
    size_t msglen = SENTINEL_LEN;
    enum brk_err err;

    (void)state;
    assert_non_null(buf);
    memset(buf, 'A', n);
    expect_decrypt_err(c, buf, n, BRK_ERR_TOOBIG);
    /* exactly the limit is decoded and decrypted (to garbage here) */
    err =
        wecom_crypto_decrypt(c, buf, WECOM_CRYPTO_MAX_B64, &msg, &msglen, &rid);
    assert_int_not_equal(err, BRK_ERR_TOOBIG);
    assert_int_not_equal(err, BRK_OK);
    assert_ptr_equal(msg, sentinel_msg);
    brk_free(buf);
    wecom_crypto_free(c);
}

/*---- Decrypt: hostile base64 ----*/

static void
expect_b64_err(const char *s)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);

    expect_decrypt_err(c, s, strlen(s), BRK_ERR_WX_DECODE_B64);
    wecom_crypto_free(c);
}

static void
test_b64_bad_char(void **state)
{
    char echo[] = A_ECHO;

    (void)state;
    echo[10] = '!';
    expect_b64_err(echo);
    echo[10] = '-';
    expect_b64_err(echo);
    echo[10] = '\0';
    {
        struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);

        expect_decrypt_err(c, echo, sizeof(echo) - 1, BRK_ERR_WX_DECODE_B64);
        wecom_crypto_free(c);
    }
}

static void
test_b64_missing_padding(void **state)
{
    char echo[] = A_ECHO;

    (void)state;
    echo[strlen(echo) - 2] = '\0';
    expect_b64_err(echo);
    memcpy(echo, A_ECHO, sizeof(echo));
    echo[strlen(echo) - 1] = '\0';
    expect_b64_err(echo);
}

static void
test_b64_equals_in_middle(void **state)
{
    char echo[] = A_ECHO;

    (void)state;
    echo[20] = '=';
    expect_b64_err(echo);
    memcpy(echo, A_ECHO, sizeof(echo));
    echo[3] = '=';
    echo[4] = '=';
    expect_b64_err(echo);
}

static void
test_b64_whitespace(void **state)
{
    static const char ws[] = {' ', '\n', '\r', '\t'};
    char echo[] = A_ECHO;
    size_t i;

    (void)state;
    /* same length as the original, so only the character is at fault */
    for (i = 0; i < sizeof(ws); i++) {
        memcpy(echo, A_ECHO, sizeof(echo));
        echo[12] = ws[i];
        expect_b64_err(echo);
    }
    expect_b64_err(A_ECHO "\n");
    expect_b64_err(A_ECHO "\r\n\r\n");
    expect_b64_err(" " A_ECHO);
}

/* "w==" carries 4 zero bits under the padding; "x==" does not. */
static void
test_b64_nonzero_bits_under_padding(void **state)
{
    char echo[] = A_ECHO;
    size_t n = strlen(echo);

    (void)state;
    assert_int_equal(echo[n - 3], 'w');
    echo[n - 3] = 'x';
    expect_b64_err(echo);
    echo[n - 3] = 'z';
    expect_b64_err(echo);
}

/*---- Receiveid ----*/

static const char *const accepted[] = {"ww1", "wwsuite"};

static void
test_receiveid_match_first(void **state)
{
    size_t which = 99;

    (void)state;
    assert_int_equal(wecom_crypto_check_receiveid("ww1", accepted, 2, &which),
                     BRK_OK);
    assert_int_equal(which, 0);
}

static void
test_receiveid_match_second(void **state)
{
    size_t which = 99;

    (void)state;
    assert_int_equal(
        wecom_crypto_check_receiveid("wwsuite", accepted, 2, &which), BRK_OK);
    assert_int_equal(which, 1);
}

static void
test_receiveid_mismatch(void **state)
{
    size_t which = 99;

    (void)state;
    assert_int_equal(wecom_crypto_check_receiveid("ww2", accepted, 2, &which),
                     BRK_ERR_WX_RECEIVEID);
    assert_int_equal(
        wecom_crypto_check_receiveid("WWSUITE", accepted, 2, &which),
        BRK_ERR_WX_RECEIVEID);
    assert_int_equal(
        wecom_crypto_check_receiveid("wwsuite", accepted, 1, &which),
        BRK_ERR_WX_RECEIVEID);
    assert_int_equal(wecom_crypto_check_receiveid("ww1", NULL, 0, &which),
                     BRK_ERR_WX_RECEIVEID);
    assert_int_equal(which, 99);
}

static void
test_receiveid_empty(void **state)
{
    static const char *const with_empty[] = {"", NULL, "ww1"};
    size_t which = 99;

    (void)state;
    assert_int_equal(wecom_crypto_check_receiveid("", with_empty, 3, &which),
                     BRK_ERR_WX_RECEIVEID);
    assert_int_equal(wecom_crypto_check_receiveid(NULL, with_empty, 3, &which),
                     BRK_ERR_WX_RECEIVEID);
    assert_int_equal(which, 99);
}

static void
test_receiveid_prefix_rejected(void **state)
{
    static const char *const long_id[] = {"ww12"};
    static const char *const short_id[] = {"ww1"};
    size_t which = 99;

    (void)state;
    assert_int_equal(wecom_crypto_check_receiveid("ww1", long_id, 1, &which),
                     BRK_ERR_WX_RECEIVEID);
    assert_int_equal(wecom_crypto_check_receiveid("ww12", short_id, 1, &which),
                     BRK_ERR_WX_RECEIVEID);
    assert_int_equal(which, 99);
}

static void
test_receiveid_skips_null_and_empty(void **state)
{
    static const char *const list[] = {NULL, "", "ww1", "ww1"};
    size_t which = 99;

    (void)state;
    assert_int_equal(wecom_crypto_check_receiveid("ww1", list, 4, &which),
                     BRK_OK);
    assert_int_equal(which, 2);
    assert_int_equal(wecom_crypto_check_receiveid("ww1", list, 4, NULL),
                     BRK_OK);
}

/*---- Allocation failures ----*/

static void
test_alloc_fail_new(void **state)
{
    struct wecom_crypto *c;
    unsigned long n;
    enum brk_err err;

    (void)state;
    for (n = 1;; n++) {
        c = (struct wecom_crypto *)sentinel_msg;
        brk_alloc_fail_at(n);
        err = wecom_crypto_new(A_TOKEN, A_KEY, &c);
        if (!brk_alloc_failed())
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_ptr_equal(c, (struct wecom_crypto *)sentinel_msg);
    }
    brk_alloc_fail_at(0);
    assert_int_equal(err, BRK_OK);
    assert_true(n > 1);
    wecom_crypto_free(c);
}

static void
test_alloc_fail_decrypt(void **state)
{
    struct wecom_crypto *c = ctx_new(B_TOKEN, B_KEY);
    char *msg, *rid;
    size_t msglen;
    unsigned long n;
    enum brk_err err;

    (void)state;
    for (n = 1;; n++) {
        msg = sentinel_msg;
        rid = sentinel_rid;
        msglen = SENTINEL_LEN;
        brk_alloc_fail_at(n);
        err =
            wecom_crypto_decrypt(c, B_ENC, strlen(B_ENC), &msg, &msglen, &rid);
        if (!brk_alloc_failed())
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_ptr_equal(msg, sentinel_msg);
        assert_ptr_equal(rid, sentinel_rid);
        assert_int_equal(msglen, SENTINEL_LEN);
    }
    brk_alloc_fail_at(0);
    assert_int_equal(err, BRK_OK);
    assert_true(n > 4);
    assert_string_equal(msg, B_MSG);
    assert_string_equal(rid, B_RID);
    brk_free_secret(msg, msglen);
    brk_free(rid);
    wecom_crypto_free(c);
}

static void
test_alloc_fail_encrypt(void **state)
{
    struct wecom_crypto *c = ctx_new(A_TOKEN, A_KEY);
    unsigned char ct[64], pt[64];
    char *out;
    size_t ctlen = 0;
    unsigned long n;
    enum brk_err err;
    int with_random;

    (void)state;
    assert_int_equal(
        codec_b64_decode(A_ECHO, strlen(A_ECHO), ct, sizeof(ct), &ctlen),
        BRK_OK);
    raw_aes(0, ct, ctlen, pt);
    for (with_random = 0; with_random < 2; with_random++) {
        for (n = 1;; n++) {
            out = sentinel_msg;
            brk_alloc_fail_at(n);
            if (with_random)
                err = wecom_crypto_encrypt_with_random(
                    c, pt, A_MSG, strlen(A_MSG), A_RID, &out);
            else
                err =
                    wecom_crypto_encrypt(c, A_MSG, strlen(A_MSG), A_RID, &out);
            if (!brk_alloc_failed())
                break;
            assert_int_equal(err, BRK_ERR_NOMEM);
            assert_ptr_equal(out, sentinel_msg);
        }
        brk_alloc_fail_at(0);
        assert_int_equal(err, BRK_OK);
        assert_true(n > 3);
        if (with_random)
            assert_string_equal(out, A_ECHO);
        brk_free(out);
    }
    wecom_crypto_free(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_accepts_vector_keys),
        cmocka_unit_test(test_new_key_42_chars),
        cmocka_unit_test(test_new_key_44_chars),
        cmocka_unit_test(test_new_key_invalid_chars),
        cmocka_unit_test(test_new_key_empty_or_null),
        cmocka_unit_test(test_new_key_stray_bits_ignored),
        cmocka_unit_test(test_new_token_bounds),
        cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_sign_vector_a),
        cmocka_unit_test(test_sign_vector_b),
        cmocka_unit_test(test_sign_sorts_unsigned_bytes),
        cmocka_unit_test(test_verify_vectors),
        cmocka_unit_test(test_verify_sig_one_char_wrong),
        cmocka_unit_test(test_verify_sig_wrong_length),
        cmocka_unit_test(test_verify_sig_uppercase),
        cmocka_unit_test(test_verify_token_altered),
        cmocka_unit_test(test_verify_timestamp_altered),
        cmocka_unit_test(test_verify_nonce_altered),
        cmocka_unit_test(test_verify_encrypt_altered),
        cmocka_unit_test(test_verify_order_independent),
        cmocka_unit_test(test_decrypt_vector_a),
        cmocka_unit_test(test_decrypt_vector_b),
        cmocka_unit_test(test_decrypt_not_nul_terminated),
        cmocka_unit_test(test_decrypt_wrong_key),
        cmocka_unit_test(test_decrypt_wrong_keys_never_succeed),
        cmocka_unit_test(test_decrypt_msg_with_nul),
        cmocka_unit_test(test_roundtrip_lengths_0_to_100),
        cmocka_unit_test(test_roundtrip_block_boundaries),
        cmocka_unit_test(test_encrypt_random_differs),
        cmocka_unit_test(test_encrypt_reproduces_vector_a),
        cmocka_unit_test(test_encrypt_bad_args),
        cmocka_unit_test(test_encrypt_size_limit),
        cmocka_unit_test(test_hostile_each_pad_byte_wrong),
        cmocka_unit_test(test_hostile_pad_zero),
        cmocka_unit_test(test_hostile_pad_33),
        cmocka_unit_test(test_hostile_pad_longer_than_buffer),
        cmocka_unit_test(test_hostile_pad_whole_buffer),
        cmocka_unit_test(test_hostile_plaintext_under_20),
        cmocka_unit_test(test_hostile_msg_len_one_past_end),
        cmocka_unit_test(test_hostile_msg_len_ffffffff),
        cmocka_unit_test(test_hostile_msg_len_wraps_32bit),
        cmocka_unit_test(test_hostile_empty_receiveid),
        cmocka_unit_test(test_hostile_shorter_msg_len_moves_receiveid),
        cmocka_unit_test(test_hostile_receiveid_with_nul),
        cmocka_unit_test(test_hostile_ciphertext_len_0),
        cmocka_unit_test(test_hostile_ciphertext_len_15),
        cmocka_unit_test(test_hostile_ciphertext_len_17),
        cmocka_unit_test(test_hostile_ciphertext_len_48_truncated),
        cmocka_unit_test(test_ciphertext_len_48_valid_pad_accepted),
        cmocka_unit_test(test_hostile_too_big),
        cmocka_unit_test(test_b64_bad_char),
        cmocka_unit_test(test_b64_missing_padding),
        cmocka_unit_test(test_b64_equals_in_middle),
        cmocka_unit_test(test_b64_whitespace),
        cmocka_unit_test(test_b64_nonzero_bits_under_padding),
        cmocka_unit_test(test_receiveid_match_first),
        cmocka_unit_test(test_receiveid_match_second),
        cmocka_unit_test(test_receiveid_mismatch),
        cmocka_unit_test(test_receiveid_empty),
        cmocka_unit_test(test_receiveid_prefix_rejected),
        cmocka_unit_test(test_receiveid_skips_null_and_empty),
        cmocka_unit_test(test_alloc_fail_new),
        cmocka_unit_test(test_alloc_fail_decrypt),
        cmocka_unit_test(test_alloc_fail_encrypt),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
