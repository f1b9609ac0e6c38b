/*
 * Service credentials (see service.h).
 */
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "codec.h"
#include "service.h"

/*
 * SHA-256 fetched once for the process: EVP_sha256() is an implicit fetch,
 * a lookup in the provider's store on every digest that cost more than
 * hashing a token itself (every request hashes its token). Never freed:
 * it lives as long as the process; NULL when the fetch failed, and the
 * implicit fetch is used instead.
 */
static EVP_MD *Sha256;
static pthread_once_t Sha256Once = PTHREAD_ONCE_INIT;

static void
sha256_fetch(void)
{
    Sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}

static const EVP_MD *
sha256(void)
{
    pthread_once(&Sha256Once, sha256_fetch);
    return Sha256 != NULL ? Sha256 : EVP_sha256();
}

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int
service_name_ok(const char *name)
{
    size_t n = 0;

    for (; *name; name++, n++) {
        if (n >= SERVICE_NAME_MAX)
            return 0;
        if (!((*name >= 'a' && *name <= 'z') ||
              (*name >= 'A' && *name <= 'Z') ||
              (*name >= '0' && *name <= '9') || *name == '_' || *name == '.' ||
              *name == '-'))
            return 0;
    }
    return n > 0;
}

/* n characters of the 64-letter alphabet from fresh random bytes. */
static enum brk_err
random_text(char *out, size_t n)
{
    unsigned char rnd[SERVICE_TOKEN_LEN];
    size_t i;

    if (n > sizeof(rnd) || RAND_bytes(rnd, (int)n) != 1)
        return BRK_ERR_CRYPTO;
    for (i = 0; i < n; i++)
        out[i] = alphabet[rnd[i] & 63]; /* 64 letters: no modulo bias */
    out[n] = '\0';
    brk_wipe(rnd, sizeof(rnd));
    return BRK_OK;
}

static enum brk_err
random_hex(char *out, size_t hexlen)
{
    unsigned char rnd[32];

    if (hexlen / 2 > sizeof(rnd) || RAND_bytes(rnd, (int)(hexlen / 2)) != 1)
        return BRK_ERR_CRYPTO;
    codec_hex_encode(rnd, hexlen / 2, out);
    return BRK_OK;
}

void
service_secret_hash(const char *salt, const char *secret, size_t len,
                    char *hash)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (ctx == NULL || EVP_DigestInit_ex(ctx, sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, salt, strlen(salt)) != 1 ||
        EVP_DigestUpdate(ctx, secret, len) != 1 ||
        EVP_DigestFinal_ex(ctx, md, &mdlen) != 1) {
        /* an unusable digest must never compare equal */
        memset(hash, 'x', SERVICE_HASH_LEN);
        hash[SERVICE_HASH_LEN] = '\0';
    } else {
        codec_hex_encode(md, sizeof(md), hash);
    }
    EVP_MD_CTX_free(ctx);
}

enum brk_err
service_secret_new(char *secret, char *salt, char *hash)
{
    enum brk_err err;

    err = random_text(secret, SERVICE_SECRET_LEN);
    if (!err)
        err = random_hex(salt, SERVICE_SALT_LEN);
    if (!err)
        service_secret_hash(salt, secret, SERVICE_SECRET_LEN, hash);
    return err;
}

enum brk_err
service_credentials_new(char *id, char *secret, char *salt, char *hash)
{
    enum brk_err err = random_hex(id, SERVICE_ID_LEN);

    return err ? err : service_secret_new(secret, salt, hash);
}

enum brk_err
service_secret_split(const char *s, char *id, const char **secret, size_t *len)
{
    const char *dot = strchr(s, '.');
    size_t i, n;

    if (dot == NULL || dot - s != SERVICE_ID_LEN)
        return BRK_ERR_INVAL;
    for (i = 0; i < SERVICE_ID_LEN; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return BRK_ERR_INVAL;
    n = strlen(dot + 1);
    if (n == 0 || n > 256)
        return BRK_ERR_INVAL;
    memcpy(id, s, SERVICE_ID_LEN);
    id[SERVICE_ID_LEN] = '\0';
    *secret = dot + 1;
    *len = n;
    return BRK_OK;
}

int
service_secret_check(const char *salt, const char *stored_hash,
                     const char *secret, size_t len)
{
    char got[SERVICE_HASH_LEN + 1];
    int ok;

    if (strlen(stored_hash) != SERVICE_HASH_LEN)
        return 0;
    service_secret_hash(salt, secret, len, got);
    ok = CRYPTO_memcmp(got, stored_hash, SERVICE_HASH_LEN) == 0;
    brk_wipe(got, sizeof(got));
    return ok;
}

enum brk_err
service_token_new(char *token)
{
    return random_text(token, SERVICE_TOKEN_LEN);
}

void
service_token_hash(const char *token, size_t len, char *out)
{
    unsigned char md[32];
    unsigned int mdlen = 0;

    if (EVP_Digest(token, len, md, &mdlen, sha256(), NULL) != 1) {
        memset(out, 'x', 64);
        out[64] = '\0';
        return;
    }
    codec_hex_encode(md, sizeof(md), out);
}
