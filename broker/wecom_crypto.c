/*
 * WeCom callback crypto (WXBizMsgCrypt): the msg_signature SHA1, and the
 * AES-256-CBC envelope random(16) | be32 len | msg | receiveid padded with
 * PKCS#7 to 32 bytes. Pure: no I/O, EVP only, secrets wiped.
 */
#include <assert.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "broker.h"
#include "codec.h"
#include "wecom_crypto.h"

#define AES_KEY_BYTES 32
#define AES_IV_BYTES  16
#define RANDOM_BYTES  16
#define HEADER_BYTES  (RANDOM_BYTES + 4) /* random prefix and be32 length */
#define PAD_BLOCK     32                 /* WeCom's PKCS#7 block, not AES's */
#define SHA1_BYTES    20

/* Largest padded ciphertext whose base64 fits WECOM_CRYPTO_MAX_B64. */
#define MAX_CIPHER_BYTES (WECOM_CRYPTO_MAX_B64 / 4 * 3)

struct wecom_crypto {
    char token[WECOM_CRYPTO_TOKEN_MAX + 1];
    unsigned char key[AES_KEY_BYTES];
};

static const char b64_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
b64_index(char ch)
{
    const char *p;

    if (ch == '\0')
        return -1;
    p = strchr(b64_alpha, ch);
    return p == NULL ? -1 : (int)(p - b64_alpha);
}

/*
 * EncodingAESKey + "=" is base64 of the 32-byte key. 43 characters carry
 * 258 bits, so the last character holds 2 bits beyond the key. WeCom picks
 * the 43 characters at random and its own samples decode leniently, so
 * those 2 bits are routinely non-zero: clear them before the strict decode
 * instead of refusing a key the console handed out.
 */
static enum brk_err
decode_aes_key(const char *s, unsigned char key[AES_KEY_BYTES])
{
    char text[WECOM_CRYPTO_AES_KEY_LEN + 1];
    unsigned char raw[AES_KEY_BYTES];
    enum brk_err err = BRK_ERR_WX_AES_KEY;
    size_t i, got = 0;
    int v = -1;

    if (strnlen(s, WECOM_CRYPTO_AES_KEY_LEN + 1) != WECOM_CRYPTO_AES_KEY_LEN)
        goto out;
    for (i = 0; i < WECOM_CRYPTO_AES_KEY_LEN; i++) {
        v = b64_index(s[i]);
        if (v < 0)
            goto out;
        text[i] = s[i];
    }
    text[WECOM_CRYPTO_AES_KEY_LEN - 1] = b64_alpha[v & ~3];
    text[WECOM_CRYPTO_AES_KEY_LEN] = '=';
    if (codec_b64_decode(text, sizeof(text), raw, sizeof(raw), &got))
        goto out;
    if (got != AES_KEY_BYTES)
        goto out;
    memcpy(key, raw, AES_KEY_BYTES);
    err = BRK_OK;
out:
    brk_wipe(text, sizeof(text));
    brk_wipe(raw, sizeof(raw));
    return err;
}

/*
 * Build a context from the callback Token (1..WECOM_CRYPTO_TOKEN_MAX bytes)
 * and the 43-character EncodingAESKey. Returns BRK_OK, BRK_ERR_INVAL for a
 * missing, empty or over-long token, BRK_ERR_WX_AES_KEY for a key that is
 * not 43 base64 characters, or BRK_ERR_NOMEM. Arguments are borrowed (only
 * copied); *out is owned, free it with wecom_crypto_free().
 */
enum brk_err
wecom_crypto_new(const char *token, const char *encoding_aes_key,
                 struct wecom_crypto **out)
{
    struct wecom_crypto *c = NULL;
    unsigned char key[AES_KEY_BYTES];
    enum brk_err err;
    size_t tlen;

    assert(out != NULL);
    if (token == NULL) {
        err = BRK_ERR_INVAL;
        goto out;
    }
    tlen = strnlen(token, WECOM_CRYPTO_TOKEN_MAX + 1);
    if (tlen == 0 || tlen > WECOM_CRYPTO_TOKEN_MAX) {
        err = BRK_ERR_INVAL;
        goto out;
    }
    if (encoding_aes_key == NULL) {
        err = BRK_ERR_WX_AES_KEY;
        goto out;
    }
    err = decode_aes_key(encoding_aes_key, key);
    if (err)
        goto out;
    c = brk_calloc(1, sizeof(*c));
    if (c == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    memcpy(c->token, token, tlen);
    c->token[tlen] = '\0';
    memcpy(c->key, key, sizeof(key));
    *out = c;
    err = BRK_OK;
out:
    brk_wipe(key, sizeof(key));
    return err;
}

/* Wipe the token and key, then free the context. NULL is a no-op. */
void
wecom_crypto_free(struct wecom_crypto *c)
{
    brk_free_secret(c, sizeof(*c));
}

/*
 * msg_signature: lowercase hex SHA1 of token, timestamp, nonce and encrypt
 * sorted byte-wise (strcmp order) and concatenated with no separator. All
 * strings are borrowed. Writes 40 digits and a NUL to out. Returns BRK_OK
 * or BRK_ERR_WX_COMPUTE_SIG if the digest fails.
 */
enum brk_err
wecom_crypto_sign(const struct wecom_crypto *c, const char *timestamp,
                  const char *nonce, const char *encrypt,
                  char out[WECOM_CRYPTO_SIG_SIZE])
{
    const char *v[4];
    const char *tmp;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = NULL;
    enum brk_err err = BRK_ERR_WX_COMPUTE_SIG;
    size_t i, j;

    assert(c != NULL && timestamp != NULL && nonce != NULL && encrypt != NULL);
    v[0] = c->token;
    v[1] = timestamp;
    v[2] = nonce;
    v[3] = encrypt;
    /* strcmp compares as unsigned char, which is the byte order WeCom uses */
    for (i = 1; i < 4; i++) {
        tmp = v[i];
        for (j = i; j > 0 && strcmp(v[j - 1], tmp) > 0; j--)
            v[j] = v[j - 1];
        v[j] = tmp;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        goto out;
    if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) != 1)
        goto out;
    for (i = 0; i < 4; i++)
        if (EVP_DigestUpdate(ctx, v[i], strlen(v[i])) != 1)
            goto out;
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != SHA1_BYTES)
        goto out;
    codec_hex_encode(md, SHA1_BYTES, out);
    err = BRK_OK;
out:
    EVP_MD_CTX_free(ctx);
    return err;
}

/*
 * Check msg_signature against the signature of the other three values, in
 * constant time. Only exactly what wecom_crypto_sign() produces (40
 * lowercase hex digits) passes. Returns BRK_OK, BRK_ERR_WX_SIGNATURE on
 * mismatch (or a NULL signature), or BRK_ERR_WX_COMPUTE_SIG. All borrowed.
 */
enum brk_err
wecom_crypto_verify(const struct wecom_crypto *c, const char *msg_signature,
                    const char *timestamp, const char *nonce,
                    const char *encrypt)
{
    char want[WECOM_CRYPTO_SIG_SIZE];
    enum brk_err err;

    if (msg_signature == NULL ||
        strnlen(msg_signature, WECOM_CRYPTO_SIG_SIZE) !=
            WECOM_CRYPTO_SIG_SIZE - 1)
        return BRK_ERR_WX_SIGNATURE;
    err = wecom_crypto_sign(c, timestamp, nonce, encrypt, want);
    if (err)
        return err;
    if (CRYPTO_memcmp(want, msg_signature, WECOM_CRYPTO_SIG_SIZE - 1) != 0)
        return BRK_ERR_WX_SIGNATURE;
    return BRK_OK;
}

/*
 * AES-256-CBC over whole blocks with EVP padding off (the 32-byte PKCS#7
 * is done by hand), key = key, IV = key[0..16). out must hold inlen + 16
 * bytes. Returns BRK_OK, or fail_err on any EVP failure.
 */
static enum brk_err
aes_cbc(const unsigned char key[AES_KEY_BYTES], int enc,
        const unsigned char *in, size_t inlen, unsigned char *out,
        size_t *outlen, enum brk_err fail_err)
{
    EVP_CIPHER_CTX *ctx = NULL;
    enum brk_err err = fail_err;
    int l1 = 0, l2 = 0;

    if (inlen == 0 || inlen % AES_IV_BYTES != 0 || inlen > INT_MAX)
        goto out;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        goto out;
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, key, enc) != 1)
        goto out;
    if (EVP_CIPHER_CTX_set_padding(ctx, 0) != 1)
        goto out;
    if (EVP_CipherUpdate(ctx, out, &l1, in, (int)inlen) != 1)
        goto out;
    if (EVP_CipherFinal_ex(ctx, out + l1, &l2) != 1)
        goto out;
    if ((size_t)l1 + (size_t)l2 != inlen)
        goto out;
    *outlen = inlen;
    err = BRK_OK;
out:
    /* EVP_CIPHER_CTX_free cleanses the expanded key schedule */
    EVP_CIPHER_CTX_free(ctx);
    return err;
}

/*
 * Strip PKCS#7 padding with a 32-byte block: the last byte n must be in
 * 1..32, not exceed the length, and all n pad bytes must equal n. The pad
 * bytes are all read whatever their values, so the time taken depends on
 * n only. Returns BRK_OK with *len shortened, or BRK_ERR_WX_BUFFER.
 */
static enum brk_err
unpad32(const unsigned char *p, size_t *len)
{
    size_t l = *len, i;
    unsigned n, diff = 0;

    if (l == 0)
        return BRK_ERR_WX_BUFFER;
    n = p[l - 1];
    if (n < 1 || n > PAD_BLOCK || n > l)
        return BRK_ERR_WX_BUFFER;
    for (i = 0; i < n; i++)
        diff |= p[l - 1 - i] ^ n;
    if (diff != 0)
        return BRK_ERR_WX_BUFFER;
    *len = l - n;
    return BRK_OK;
}

/*
 * Decrypt enclen bytes of base64 (need not be NUL-terminated; borrowed).
 * Returns BRK_OK; BRK_ERR_TOOBIG over WECOM_CRYPTO_MAX_B64;
 * BRK_ERR_WX_DECODE_B64 for anything but strict padded base64;
 * BRK_ERR_WX_DECRYPT for a ciphertext that is empty or not whole AES blocks
 * or an EVP failure; BRK_ERR_WX_BUFFER for bad padding, fewer than 20 bytes
 * or a msg_len past the end; BRK_ERR_WX_RECEIVEID for an empty receiveid
 * or one containing a NUL byte; BRK_ERR_NOMEM. The receiveid is returned,
 * not checked: see wecom_crypto_check_receiveid(). On success *msg (owned,
 * NUL-terminated, may contain NULs; free with brk_free_secret(*msg,
 * *msglen)), *msglen and *receiveid (owned, free with brk_free) are set;
 * on error nothing is written.
 */
enum brk_err
wecom_crypto_decrypt(const struct wecom_crypto *c, const char *encrypt,
                     size_t enclen, char **msg, size_t *msglen,
                     char **receiveid)
{
    unsigned char *ct = NULL, *pt = NULL;
    char *m = NULL, *rid = NULL;
    size_t ctcap, ctlen = 0, ptcap = 0, ptlen = 0, mlen = 0, ridlen;
    const unsigned char *body;
    enum brk_err err;

    assert(c != NULL && (encrypt != NULL || enclen == 0));
    assert(msg != NULL && msglen != NULL && receiveid != NULL);
    if (enclen > WECOM_CRYPTO_MAX_B64) {
        err = BRK_ERR_TOOBIG;
        goto out;
    }
    ctcap = enclen / 4 * 3;
    ct = brk_malloc(ctcap);
    if (ct == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    if (codec_b64_decode(encrypt, enclen, ct, ctcap, &ctlen) != BRK_OK) {
        err = BRK_ERR_WX_DECODE_B64;
        goto out;
    }
    /*
     * WeCom always sends multiples of 32; other multiples of 16 are
     * decrypted and then stand or fall on the 32-byte padding check.
     */
    if (ctlen == 0 || ctlen % AES_IV_BYTES != 0) {
        err = BRK_ERR_WX_DECRYPT;
        goto out;
    }
    ptcap = ctlen + AES_IV_BYTES;
    pt = brk_malloc(ptcap);
    if (pt == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    err = aes_cbc(c->key, 0, ct, ctlen, pt, &ptlen, BRK_ERR_WX_DECRYPT);
    if (err)
        goto out;
    err = unpad32(pt, &ptlen);
    if (err)
        goto out;
    if (ptlen < HEADER_BYTES) {
        err = BRK_ERR_WX_BUFFER;
        goto out;
    }
    mlen = (size_t)pt[16] << 24 | (size_t)pt[17] << 16 | (size_t)pt[18] << 8 |
           (size_t)pt[19];
    /* subtract, never add: 20 + msg_len may overflow */
    if (mlen > ptlen - HEADER_BYTES) {
        err = BRK_ERR_WX_BUFFER;
        goto out;
    }
    body = pt + HEADER_BYTES;
    ridlen = ptlen - HEADER_BYTES - mlen;
    /* an embedded NUL would let a C-string compare see a shorter id */
    if (ridlen == 0 || memchr(body + mlen, '\0', ridlen) != NULL) {
        err = BRK_ERR_WX_RECEIVEID;
        goto out;
    }
    m = brk_malloc(mlen + 1);
    rid = brk_malloc(ridlen + 1);
    if (m == NULL || rid == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    memcpy(m, body, mlen);
    m[mlen] = '\0';
    memcpy(rid, body + mlen, ridlen);
    rid[ridlen] = '\0';
    *msg = m;
    *msglen = mlen;
    *receiveid = rid;
    m = NULL;
    rid = NULL;
    err = BRK_OK;
out:
    brk_free_secret(m, mlen);
    brk_free(rid);
    brk_free_secret(pt, ptcap);
    brk_free(ct);
    return err;
}

/*
 * Find receiveid among accepted[0..n) (borrowed; NULL and empty entries
 * never match). Each candidate of the same length is compared with
 * CRYPTO_memcmp and the scan never stops early; only lengths, which are
 * public ids' lengths, affect timing. Returns BRK_OK with *which (may be
 * NULL) set to the first matching index, or BRK_ERR_WX_RECEIVEID for no
 * match or a NULL or empty receiveid.
 */
enum brk_err
wecom_crypto_check_receiveid(const char *receiveid, const char *const *accepted,
                             size_t n, size_t *which)
{
    size_t i, rlen, found = 0;
    int matched = 0, eq;

    assert(accepted != NULL || n == 0);
    if (receiveid == NULL || receiveid[0] == '\0')
        return BRK_ERR_WX_RECEIVEID;
    rlen = strlen(receiveid);
    for (i = 0; i < n; i++) {
        if (accepted[i] == NULL || accepted[i][0] == '\0')
            continue;
        if (strlen(accepted[i]) != rlen)
            continue;
        eq = CRYPTO_memcmp(receiveid, accepted[i], rlen) == 0;
        if (eq && !matched) {
            matched = 1;
            found = i;
        }
    }
    if (!matched)
        return BRK_ERR_WX_RECEIVEID;
    if (which != NULL)
        *which = found;
    return BRK_OK;
}

/*
 * Encrypt msg (msglen bytes, may contain NULs; NULL only when msglen is 0)
 * for receiveid (non-empty) with the given 16-byte random prefix. All
 * arguments are borrowed. Returns BRK_OK with *out owned NUL-terminated
 * base64 (free with brk_free), BRK_ERR_INVAL for a missing or empty
 * receiveid or a NULL msg, BRK_ERR_TOOBIG when the base64 would exceed
 * WECOM_CRYPTO_MAX_B64 (what wecom_crypto_decrypt accepts),
 * BRK_ERR_WX_ENCRYPT, or BRK_ERR_NOMEM.
 */
enum brk_err
wecom_crypto_encrypt_with_random(const struct wecom_crypto *c,
                                 const unsigned char rnd[16], const char *msg,
                                 size_t msglen, const char *receiveid,
                                 char **out)
{
    unsigned char *pt = NULL, *ct = NULL;
    char *b64 = NULL;
    size_t ridlen, plain, padded = 0, ctlen = 0, pad;
    enum brk_err err;

    assert(c != NULL && rnd != NULL && out != NULL);
    if (receiveid == NULL || receiveid[0] == '\0' ||
        (msg == NULL && msglen != 0)) {
        err = BRK_ERR_INVAL;
        goto out;
    }
    ridlen = strlen(receiveid);
    /* both bounds keep the sums below from overflowing */
    if (msglen > MAX_CIPHER_BYTES || ridlen > MAX_CIPHER_BYTES) {
        err = BRK_ERR_TOOBIG;
        goto out;
    }
    plain = HEADER_BYTES + msglen + ridlen;
    /* a full block of padding when already aligned, as PKCS#7 requires */
    pad = PAD_BLOCK - plain % PAD_BLOCK;
    if (plain + pad > MAX_CIPHER_BYTES) {
        err = BRK_ERR_TOOBIG;
        goto out;
    }
    pt = brk_malloc(plain + pad);
    if (pt == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    padded = plain + pad;
    memcpy(pt, rnd, RANDOM_BYTES);
    pt[16] = (unsigned char)(msglen >> 24);
    pt[17] = (unsigned char)(msglen >> 16);
    pt[18] = (unsigned char)(msglen >> 8);
    pt[19] = (unsigned char)msglen;
    if (msglen > 0)
        memcpy(pt + HEADER_BYTES, msg, msglen);
    memcpy(pt + HEADER_BYTES + msglen, receiveid, ridlen);
    memset(pt + plain, (int)pad, pad);
    ct = brk_malloc(padded + AES_IV_BYTES);
    if (ct == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    err = aes_cbc(c->key, 1, pt, padded, ct, &ctlen, BRK_ERR_WX_ENCRYPT);
    if (err)
        goto out;
    b64 = brk_malloc(CODEC_B64_ENC_SIZE(ctlen));
    if (b64 == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    codec_b64_encode(ct, ctlen, b64);
    *out = b64;
    err = BRK_OK;
out:
    brk_free_secret(pt, padded);
    brk_free(ct);
    return err;
}

/*
 * wecom_crypto_encrypt_with_random() with 16 bytes from RAND_bytes.
 * Same arguments, ownership and errors; a RAND_bytes failure is
 * BRK_ERR_WX_ENCRYPT.
 */
enum brk_err
wecom_crypto_encrypt(const struct wecom_crypto *c, const char *msg,
                     size_t msglen, const char *receiveid, char **out)
{
    unsigned char rnd[RANDOM_BYTES];
    enum brk_err err;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return BRK_ERR_WX_ENCRYPT;
    err = wecom_crypto_encrypt_with_random(c, rnd, msg, msglen, receiveid, out);
    OPENSSL_cleanse(rnd, sizeof(rnd));
    return err;
}
