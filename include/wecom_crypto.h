/*
 * WeCom callback crypto (WXBizMsgCrypt): msg_signature over the sorted
 * (token, timestamp, nonce, encrypt), and AES-256-CBC with PKCS#7 padding to
 * 32 bytes around random(16) | be32 msg_len | msg | receiveid.
 */
#ifndef WECOM_CRYPTO_H
#define WECOM_CRYPTO_H

#include <stddef.h>

#include "broker.h"

/* Longest callback Token accepted, in bytes. */
#define WECOM_CRYPTO_TOKEN_MAX 128
/* Length of an EncodingAESKey (base64 of 32 bytes without the '='). */
#define WECOM_CRYPTO_AES_KEY_LEN 43
/* Largest base64 ciphertext decrypted or produced, in bytes. */
#define WECOM_CRYPTO_MAX_B64 (1024 * 1024)
/* Size of a signature buffer: 40 lowercase hex digits and a NUL. */
#define WECOM_CRYPTO_SIG_SIZE 41

/* Callback Token and 32-byte AES key; opaque, wiped on free. */
struct wecom_crypto;

/* Build a context from a Token and an EncodingAESKey; owned result. */
enum brk_err wecom_crypto_new(const char *token, const char *encoding_aes_key,
                              struct wecom_crypto **out) BRK_WUR;

/* Wipe and free a context; NULL is a no-op. */
void wecom_crypto_free(struct wecom_crypto *c);

/* Lowercase hex SHA1 of the sorted token, timestamp, nonce, encrypt. */
enum brk_err wecom_crypto_sign(const struct wecom_crypto *c,
                               const char *timestamp, const char *nonce,
                               const char *encrypt,
                               char out[WECOM_CRYPTO_SIG_SIZE]) BRK_WUR;

/* Constant-time check of a msg_signature; BRK_ERR_WX_SIGNATURE if wrong. */
enum brk_err wecom_crypto_verify(const struct wecom_crypto *c,
                                 const char *msg_signature,
                                 const char *timestamp, const char *nonce,
                                 const char *encrypt) BRK_WUR;

/* Decrypt base64 ciphertext into an owned msg and receiveid. */
enum brk_err wecom_crypto_decrypt(const struct wecom_crypto *c,
                                  const char *encrypt, size_t enclen,
                                  char **msg, size_t *msglen,
                                  char **receiveid) BRK_WUR;

/* Which of accepted[0..n) equals receiveid, compared in constant time. */
enum brk_err wecom_crypto_check_receiveid(const char *receiveid,
                                          const char *const *accepted, size_t n,
                                          size_t *which) BRK_WUR;

/* Encrypt msg for receiveid with 16 fresh random bytes; owned base64. */
enum brk_err wecom_crypto_encrypt(const struct wecom_crypto *c, const char *msg,
                                  size_t msglen, const char *receiveid,
                                  char **out) BRK_WUR;

/* Encrypt with a caller-given random prefix (tests, fixed vectors). */
enum brk_err wecom_crypto_encrypt_with_random(const struct wecom_crypto *c,
                                              const unsigned char rnd[16],
                                              const char *msg, size_t msglen,
                                              const char *receiveid,
                                              char **out) BRK_WUR;

#endif /* WECOM_CRYPTO_H */
