/*
 * Internal services: the callers of the service API. A service has a name,
 * the scopes ops allowed it, optionally one suite, a list of corps and
 * per-corp departments narrowing its range, and a secret of the form
 * ID.SECRET — the id finds the service without a scan, the SECRET part is
 * kept only as a salted SHA-256. Pure helpers: no I/O.
 */
#ifndef SERVICE_H
#define SERVICE_H

#include <stddef.h>

#include "broker.h"

#define SERVICE_ID_LEN     16 /* hex characters */
#define SERVICE_SECRET_LEN 43 /* characters of [A-Za-z0-9_-] */
#define SERVICE_SALT_LEN   32 /* hex characters */
#define SERVICE_HASH_LEN   64 /* hex characters */
#define SERVICE_TOKEN_LEN  64 /* characters of a broker token */
#define SERVICE_NAME_MAX   64

/* Nonzero if name is 1..64 of [A-Za-z0-9_.-]. */
int service_name_ok(const char *name);

/*
 * Fresh credentials: id (SERVICE_ID_LEN+1), secret (SERVICE_SECRET_LEN+1),
 * salt (SERVICE_SALT_LEN+1) and the salted hash of the secret
 * (SERVICE_HASH_LEN+1). The caller shows "id.secret" once and stores the
 * rest. BRK_ERR_CRYPTO if the random generator fails.
 */
enum brk_err service_credentials_new(char *id, char *secret, char *salt,
                                     char *hash) BRK_WUR;
/* Fresh secret, salt and hash for an existing id (rotation). */
enum brk_err service_secret_new(char *secret, char *salt, char *hash) BRK_WUR;

/* hash = hex(SHA-256(salt_hex_bytes || secret)). */
void service_secret_hash(const char *salt, const char *secret, size_t len,
                         char *hash);

/*
 * Split "ID.SECRET" (as given in corpsecret): id copied into
 * id[SERVICE_ID_LEN+1], *secret and *len point into s. BRK_ERR_INVAL when
 * the shape is wrong.
 */
enum brk_err service_secret_split(const char *s, char *id, const char **secret,
                                  size_t *len) BRK_WUR;

/* Compare secret with the stored salted hash in constant time: 1 equal. */
int service_secret_check(const char *salt, const char *stored_hash,
                         const char *secret, size_t len);

/* A fresh broker access token (SERVICE_TOKEN_LEN+1 bytes). */
enum brk_err service_token_new(char *token) BRK_WUR;
/* hex(SHA-256(token)): how a token is named in Redis (65 bytes). */
void service_token_hash(const char *token, size_t len, char *out);

#endif /* SERVICE_H */
