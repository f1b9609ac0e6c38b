/*
 * Master keys (versioned), the index key, data-key wrapping, AES-256-GCM
 * sealing of stored values and the index HMAC. Pure apart from reading and
 * creating the two key files.
 */
#ifndef KEYRING_H
#define KEYRING_H

#include <stddef.h>

#include "broker.h"

#define KEYRING_KEY_LEN     32
#define KEYRING_VERSION_MAX 1000000u
/* Largest plaintext keyring_seal accepts. */
#define KEYRING_SEAL_MAX (1024u * 1024u)
/* Largest key file keyring_load reads. */
#define KEYRING_FILE_MAX (64u * 1024u)

/* Bits of keyring_load's *generated and *insecure_mode. */
#define KEYRING_FILE_MASTER 1u
#define KEYRING_FILE_INDEX  2u

/* Master key versions and the index key; wiped on free. */
struct keyring;

/*
 * Load the master key file ("VERSION HEX" lines, or one bare HEX line for
 * version 1) and the index key file (64 hex chars, optional newline).
 * With generate_missing, a missing file is created with a fresh key (0600).
 * Returns BRK_ERR_CONFIG (info->line set), BRK_ERR_IO, BRK_ERR_CRYPTO or
 * BRK_ERR_NOMEM. *out owned, free with keyring_free.
 */
enum brk_err keyring_load(const char *master_path, const char *index_path,
                          int generate_missing, struct keyring **out,
                          unsigned *generated, unsigned *insecure_mode,
                          struct brk_errinfo *info) BRK_WUR;
/* Wipe and free; NULL is a no-op. */
void keyring_free(struct keyring *kr);
/* The highest master key version. */
unsigned keyring_current_version(const struct keyring *kr);
/* Nonzero when the master key version is loaded. */
int keyring_has_version(const struct keyring *kr, unsigned version);

/* A fresh random data key. BRK_ERR_CRYPTO if the RNG fails. */
enum brk_err keyring_dk_generate(unsigned char dk[KEYRING_KEY_LEN]) BRK_WUR;

/*
 * Wrap dk under the current master version for the owner named by context:
 * "k<VERSION>.<base64>". *out owned, free with brk_free.
 */
enum brk_err keyring_wrap(const struct keyring *kr,
                          const unsigned char dk[KEYRING_KEY_LEN],
                          const char *context, char **out) BRK_WUR;
/*
 * Unwrap a wrapped data key for context. BRK_ERR_CRYPTO on any mismatch or
 * malformed text. *version (may be NULL) gets the master version used.
 */
enum brk_err keyring_unwrap(const struct keyring *kr, const char *wrapped,
                            const char *context,
                            unsigned char dk[KEYRING_KEY_LEN],
                            unsigned *version) BRK_WUR;

/*
 * Seal ptlen bytes under dk, bound to context: "s1.<base64>". *out owned
 * (brk_free), *outlen (may be NULL) its length. BRK_ERR_TOOBIG over
 * KEYRING_SEAL_MAX.
 */
enum brk_err keyring_seal(const unsigned char dk[KEYRING_KEY_LEN],
                          const char *context, const void *pt, size_t ptlen,
                          char **out, size_t *outlen) BRK_WUR;
/*
 * Open a sealed value. *pt owned, NUL-terminated, free with
 * brk_free_secret(*pt, *ptlen). BRK_ERR_CRYPTO on tampering, wrong key or
 * context, or bad format.
 */
enum brk_err keyring_open(const unsigned char dk[KEYRING_KEY_LEN],
                          const char *context, const char *sealed,
                          size_t sealedlen, char **pt, size_t *ptlen) BRK_WUR;

/* HMAC-SHA256 under the index key, lowercase hex. Cannot fail. */
void keyring_index_hmac(const struct keyring *kr, const void *data, size_t n,
                        char out[65]);
/* Same over NUL-terminated parts, each prefixed by its 32-bit BE length. */
void keyring_index_hmac_parts(const struct keyring *kr,
                              const char *const *parts, size_t nparts,
                              char out[65]);

/*---- Versions and the key file (brokerctl key) ----*/

/* Number of master key versions loaded (at least one). */
size_t keyring_version_count(const struct keyring *kr);
/* The i-th loaded version, ascending. */
unsigned keyring_version_at(const struct keyring *kr, size_t i);
/* The version a wrapped text names ("k<VERSION>."), without unwrapping;
 * BRK_ERR_INVAL when malformed. */
enum brk_err keyring_wrapped_version(const char *wrapped,
                                     unsigned *version) BRK_WUR;
/*
 * Unwrap with the version that wrapped it, wrap under the current version
 * (same data key, same context). BRK_ERR_CRYPTO as keyring_unwrap.
 * *out owned, free with brk_free.
 */
enum brk_err keyring_rewrap(const struct keyring *kr, const char *wrapped,
                            const char *context, char **out) BRK_WUR;
/*
 * Add a version one above the highest, with a fresh random key, to the
 * master key file: replaced atomically (temporary file, fsync, rename,
 * mode 0600, same owner) under a lock. *version gets the new version.
 * BRK_ERR_IO, BRK_ERR_CONFIG, BRK_ERR_CRYPTO or BRK_ERR_NOMEM (info set).
 */
enum brk_err keyring_file_add_version(const char *master_path,
                                      unsigned *version,
                                      struct brk_errinfo *info) BRK_WUR;
/*
 * Remove a version from the master key file, replaced the same way.
 * BRK_ERR_NOTFOUND (no such version), BRK_ERR_INVAL (the current version,
 * or the only one), BRK_ERR_IO, BRK_ERR_CONFIG, BRK_ERR_NOMEM (info set).
 * Whether a data key still uses it is the caller's check.
 */
enum brk_err keyring_file_remove_version(const char *master_path,
                                         unsigned version,
                                         struct brk_errinfo *info) BRK_WUR;

#endif /* KEYRING_H */
