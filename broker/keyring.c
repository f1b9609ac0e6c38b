/*
 * Key material (see keyring.h): the versioned master keys that wrap per-owner
 * data keys, the index key behind the HMAC of purged tenants, and the
 * AES-256-GCM sealing of every secret value kept in Redis.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "codec.h"
#include "keyring.h"
#include "log.h"

#define NONCE_LEN    12
#define TAG_LEN      16
#define WRAP_RAW_LEN (NONCE_LEN + KEYRING_KEY_LEN + TAG_LEN)
#define WRAP_B64_LEN (CODEC_B64_ENC_SIZE(WRAP_RAW_LEN) - 1)
/* "k" + up to 7 version digits + "." + base64 + NUL */
#define WRAP_TEXT_CAP   (1 + 7 + 1 + WRAP_B64_LEN + 1)
#define SEAL_PREFIX     "s1."
#define SEAL_PREFIX_LEN (sizeof(SEAL_PREFIX) - 1)
#define SEAL_B64_MAX                                                           \
    (CODEC_B64_ENC_SIZE(KEYRING_SEAL_MAX + NONCE_LEN + TAG_LEN) - 1)
#define HEX_KEY_LEN (2 * KEYRING_KEY_LEN)

/*
 * AAD labels; sizeof includes the NUL, which separates the label from the
 * context so "wb-dk" + "x" can never equal another label + context.
 */
static const char dk_label[] = "wb-dk";
static const char seal_label[] = "wb-seal";

struct keyring_master {
    unsigned version;
    unsigned char key[KEYRING_KEY_LEN];
};

struct keyring {
    struct keyring_master *masters; /* ascending by version, at least one */
    size_t nmasters;
    size_t cap;
    unsigned char index_key[KEYRING_KEY_LEN];
    EVP_MAC *mac; /* HMAC, fetched once at load */
};

/*---- Key files ----*/

static void
io_error(struct brk_errinfo *info, const char *path, const char *what, int e)
{
    char ebuf[128];

    brk_errinfo_set(info, 0, -1, "%s: %s: %s", path, what,
                    strerror_r(e, ebuf, sizeof(ebuf)));
}

/*
 * Read a whole key file of at most KEYRING_FILE_MAX bytes. BRK_ERR_NOTFOUND
 * (no info) when it does not exist, so the caller can decide to create it.
 */
static enum brk_err
key_file_read(const char *path, char **out, size_t *outlen, int *loose,
              struct brk_errinfo *info)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    ssize_t r;
    int fd = -1;
    enum brk_err err = BRK_OK;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT) {
            err = BRK_ERR_NOTFOUND;
        } else {
            io_error(info, path, "cannot open", errno);
            err = BRK_ERR_IO;
        }
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        io_error(info, path, "cannot stat", errno);
        err = BRK_ERR_IO;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        brk_errinfo_set(info, 0, -1, "%s: not a regular file", path);
        err = BRK_ERR_CONFIG;
        goto out;
    }
    buf = brk_malloc(KEYRING_FILE_MAX + 1);
    if (buf == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    for (;;) {
        r = read(fd, buf + len, KEYRING_FILE_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            io_error(info, path, "cannot read", errno);
            err = BRK_ERR_IO;
            goto out;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > KEYRING_FILE_MAX) {
            brk_errinfo_set(info, 0, -1, "%s: larger than %u bytes", path,
                            KEYRING_FILE_MAX);
            err = BRK_ERR_CONFIG;
            goto out;
        }
    }
    *out = buf;
    *outlen = len;
    *loose = (st.st_mode & (S_IRWXG | S_IRWXO)) != 0;
    buf = NULL;
out:
    brk_free_secret(buf, len);
    if (fd >= 0)
        close(fd);
    return err;
}

/*
 * Create a key file holding a fresh key, as "1 HEX\n" (master) or "HEX\n"
 * (index). O_EXCL: a file that appeared meanwhile is left alone and *made
 * stays 0, so a concurrent starter's key is read instead of replaced.
 */
static enum brk_err
key_file_create(const char *path, int master, int *made,
                struct brk_errinfo *info)
{
    unsigned char key[KEYRING_KEY_LEN];
    char text[2 + HEX_KEY_LEN + 2];
    char *dir = NULL, *slash;
    size_t n = 0, off = 0;
    ssize_t w;
    int fd = -1, created = 0;
    enum brk_err err = BRK_OK;

    *made = 0;
    dir = brk_strdup(path);
    if (dir == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            io_error(info, dir, "cannot create directory", errno);
            err = BRK_ERR_IO;
            goto out;
        }
    }
    if (RAND_bytes(key, sizeof(key)) != 1) {
        brk_errinfo_set(info, 0, -1, "%s: random generator failed", path);
        err = BRK_ERR_CRYPTO;
        goto out;
    }
    if (master) {
        memcpy(text, "1 ", 2);
        n = 2;
    }
    codec_hex_encode(key, sizeof(key), text + n);
    n += HEX_KEY_LEN;
    text[n++] = '\n';

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno != EEXIST) {
            io_error(info, path, "cannot create", errno);
            err = BRK_ERR_IO;
        }
        goto out;
    }
    created = 1;
    while (off < n) {
        w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            io_error(info, path, "cannot write", errno);
            err = BRK_ERR_IO;
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        io_error(info, path, "cannot sync", errno);
        err = BRK_ERR_IO;
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        io_error(info, path, "cannot close", errno);
        err = BRK_ERR_IO;
        goto out;
    }
    fd = -1;
    *made = 1;
out:
    if (fd >= 0)
        close(fd);
    /* a half-written key file would fail every later start: remove it */
    if (err != BRK_OK && created)
        unlink(path);
    brk_wipe(key, sizeof(key));
    brk_wipe(text, sizeof(text));
    brk_free(dir);
    return err;
}

/* Read a key file, creating it first when missing and allowed to. */
static enum brk_err
key_file_get(const char *path, int generate, int master, char **buf,
             size_t *len, int *made, int *loose, struct brk_errinfo *info)
{
    enum brk_err err;
    int created = 0;

    err = key_file_read(path, buf, len, loose, info);
    if (err == BRK_ERR_NOTFOUND && generate) {
        err = key_file_create(path, master, &created, info);
        if (err != BRK_OK)
            return err;
        err = key_file_read(path, buf, len, loose, info);
    }
    if (err == BRK_ERR_NOTFOUND) {
        brk_errinfo_set(info, 0, -1, "%s: no such file", path);
        err = BRK_ERR_IO;
    }
    if (err == BRK_OK)
        *made = created;
    return err;
}

/*---- Parsing ----*/

/* A decimal 1..KEYRING_VERSION_MAX, digits only, no leading zero. */
static int
parse_version(const char *s, size_t n, unsigned *out)
{
    char tmp[8];
    char *end;
    unsigned long v;
    size_t i;

    if (n == 0 || n >= sizeof(tmp) || s[0] == '0')
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    errno = 0;
    v = strtoul(tmp, &end, 10);
    if (errno != 0 || end != tmp + n || v < 1 || v > KEYRING_VERSION_MAX)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int
is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static struct keyring_master *
master_find(const struct keyring *kr, unsigned version)
{
    size_t i;

    for (i = 0; i < kr->nmasters; i++) {
        if (kr->masters[i].version == version)
            return &kr->masters[i];
    }
    return NULL;
}

/*
 * Insert keeping ascending order. Grows by copy rather than realloc so no
 * key bytes are left behind in a freed block.
 */
static enum brk_err
master_add(struct keyring *kr, unsigned version,
           const unsigned char key[KEYRING_KEY_LEN])
{
    struct keyring_master *grown;
    size_t ncap, pos;

    if (kr->nmasters == kr->cap) {
        ncap = kr->cap == 0 ? 4 : kr->cap * 2;
        grown = brk_calloc(ncap, sizeof(*grown));
        if (grown == NULL)
            return BRK_ERR_NOMEM;
        if (kr->nmasters > 0)
            memcpy(grown, kr->masters, kr->nmasters * sizeof(*grown));
        brk_free_secret(kr->masters, kr->nmasters * sizeof(*grown));
        kr->masters = grown;
        kr->cap = ncap;
    }
    pos = kr->nmasters;
    while (pos > 0 && kr->masters[pos - 1].version > version)
        pos--;
    memmove(&kr->masters[pos + 1], &kr->masters[pos],
            (kr->nmasters - pos) * sizeof(*kr->masters));
    kr->masters[pos].version = version;
    memcpy(kr->masters[pos].key, key, KEYRING_KEY_LEN);
    kr->nmasters++;
    return BRK_OK;
}

/*
 * Parse one trimmed, non-empty line: "VERSION HEX" or a bare "HEX"
 * (*version = 0). Returns NULL or why the line is refused.
 */
static const char *
parse_master_line(const char *s, size_t n, unsigned *version,
                  unsigned char key[KEYRING_KEY_LEN])
{
    size_t vlen = 0, i;

    while (vlen < n && !is_blank(s[vlen]))
        vlen++;
    if (vlen == n) {
        if (n != HEX_KEY_LEN ||
            codec_hex_decode(s, n, key, KEYRING_KEY_LEN) != BRK_OK)
            return "expected \"VERSION HEX\" or a bare key of 64 hex "
                   "characters";
        *version = 0;
        return NULL;
    }
    if (parse_version(s, vlen, version) != 0)
        return "version must be a decimal 1..1000000 without leading zeros";
    i = vlen;
    while (i < n && is_blank(s[i]))
        i++;
    s += i;
    n -= i;
    for (i = 0; i < n; i++) {
        if (is_blank(s[i]))
            return "unexpected text after the key";
    }
    if (n != HEX_KEY_LEN)
        return "key must be exactly 64 hex characters";
    if (codec_hex_decode(s, n, key, KEYRING_KEY_LEN) != BRK_OK)
        return "key is not hex";
    return NULL;
}

static enum brk_err
parse_master_file(const char *path, const char *buf, size_t len,
                  struct keyring *kr, struct brk_errinfo *info)
{
    unsigned char key[KEYRING_KEY_LEN];
    const char *p = buf, *end = buf + len, *eol, *s, *e, *why;
    unsigned version;
    int line = 0, bare = 0;
    enum brk_err err = BRK_OK;

    while (p < end) {
        line++;
        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        s = p;
        e = eol;
        p = eol < end ? eol + 1 : end;
        while (s < e && is_blank(*s))
            s++;
        while (e > s && is_blank(e[-1]))
            e--;
        if (s == e || *s == '#')
            continue;
        why = parse_master_line(s, (size_t)(e - s), &version, key);
        if (why == NULL && (bare || (version == 0 && kr->nmasters > 0)))
            why = "a bare key must be the only key in the file";
        if (why == NULL && version == 0) {
            bare = 1;
            version = 1;
        }
        if (why == NULL && master_find(kr, version) != NULL)
            why = "duplicate version";
        if (why != NULL) {
            brk_errinfo_set(info, line, -1, "%s: line %d: %s", path, line, why);
            err = BRK_ERR_CONFIG;
            goto out;
        }
        err = master_add(kr, version, key);
        if (err != BRK_OK)
            goto out;
    }
    if (kr->nmasters == 0) {
        brk_errinfo_set(info, 0, -1, "%s: no master key", path);
        err = BRK_ERR_CONFIG;
    }
out:
    brk_wipe(key, sizeof(key));
    return err;
}

static enum brk_err
parse_index_file(const char *path, const char *buf, size_t len,
                 struct keyring *kr, struct brk_errinfo *info)
{
    if ((len != HEX_KEY_LEN &&
         (len != HEX_KEY_LEN + 1 || buf[HEX_KEY_LEN] != '\n')) ||
        codec_hex_decode(buf, HEX_KEY_LEN, kr->index_key, KEYRING_KEY_LEN) !=
            BRK_OK) {
        brk_wipe(kr->index_key, sizeof(kr->index_key));
        brk_errinfo_set(info, 1, -1,
                        "%s: index key must be exactly 64 hex characters",
                        path);
        return BRK_ERR_CONFIG;
    }
    return BRK_OK;
}

/*
 * Load both key files, creating missing ones when generate_missing is set.
 * *generated and *insecure_mode (each may be NULL) get KEYRING_FILE_MASTER /
 * KEYRING_FILE_INDEX bits: the file was created now; the file is accessible
 * by group or other. Returns BRK_OK; BRK_ERR_IO for a missing or unreadable
 * file (info->msg names it); BRK_ERR_CONFIG for a malformed or oversized
 * file (info->msg names the file, info->line the line); BRK_ERR_CRYPTO if
 * the RNG or HMAC is unavailable; BRK_ERR_NOMEM. *out is owned, free it
 * with keyring_free.
 */
enum brk_err
keyring_load(const char *master_path, const char *index_path,
             int generate_missing, struct keyring **out, unsigned *generated,
             unsigned *insecure_mode, struct brk_errinfo *info)
{
    struct keyring *kr = NULL;
    char *buf = NULL;
    size_t len = 0;
    unsigned gen = 0, loose_bits = 0;
    int made = 0, loose = 0;
    enum brk_err err;

    kr = brk_calloc(1, sizeof(*kr));
    if (kr == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    err = key_file_get(master_path, generate_missing, 1, &buf, &len, &made,
                       &loose, info);
    if (err != BRK_OK)
        goto out;
    gen |= made ? KEYRING_FILE_MASTER : 0;
    loose_bits |= loose ? KEYRING_FILE_MASTER : 0;
    err = parse_master_file(master_path, buf, len, kr, info);
    if (err != BRK_OK)
        goto out;
    brk_free_secret(buf, len);
    buf = NULL;
    len = 0;

    err = key_file_get(index_path, generate_missing, 0, &buf, &len, &made,
                       &loose, info);
    if (err != BRK_OK)
        goto out;
    gen |= made ? KEYRING_FILE_INDEX : 0;
    loose_bits |= loose ? KEYRING_FILE_INDEX : 0;
    err = parse_index_file(index_path, buf, len, kr, info);
    if (err != BRK_OK)
        goto out;

    kr->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (kr->mac == NULL) {
        brk_errinfo_set(info, 0, -1, "HMAC is not available");
        err = BRK_ERR_CRYPTO;
        goto out;
    }
    *out = kr;
    kr = NULL;
    if (generated != NULL)
        *generated = gen;
    if (insecure_mode != NULL)
        *insecure_mode = loose_bits;
out:
    brk_free_secret(buf, len);
    keyring_free(kr);
    return err;
}

/* Wipe every key and free the keyring. NULL is a no-op. */
void
keyring_free(struct keyring *kr)
{
    if (kr == NULL)
        return;
    brk_free_secret(kr->masters, kr->nmasters * sizeof(*kr->masters));
    EVP_MAC_free(kr->mac);
    brk_free_secret(kr, sizeof(*kr));
}

/* The highest master key version; the one keyring_wrap uses. */
unsigned
keyring_current_version(const struct keyring *kr)
{
    return kr->masters[kr->nmasters - 1].version;
}

/* Nonzero when version is loaded. */
int
keyring_has_version(const struct keyring *kr, unsigned version)
{
    return master_find(kr, version) != NULL;
}

/*---- AES-256-GCM ----*/

static int
gcm_aad(EVP_CIPHER_CTX *ctx, const char *label, size_t labellen,
        const char *context)
{
    size_t clen = strlen(context);
    int n;

    if (clen > INT_MAX)
        return -1;
    if (EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)label,
                         (int)labellen) != 1)
        return -1;
    if (clen > 0 &&
        EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)context,
                         (int)clen) != 1)
        return -1;
    return 0;
}

/* Encrypt ptlen bytes into raw = nonce | ciphertext | tag. */
static enum brk_err
gcm_seal(const unsigned char key[KEYRING_KEY_LEN], const char *label,
         size_t labellen, const char *context, const unsigned char *pt,
         size_t ptlen, unsigned char *raw)
{
    EVP_CIPHER_CTX *ctx = NULL;
    unsigned char *ct = raw + NONCE_LEN;
    enum brk_err err = BRK_ERR_CRYPTO;
    int n;

    if (ptlen > INT_MAX || RAND_bytes(raw, NONCE_LEN) != 1)
        goto out;
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) !=
            1 ||
        EVP_EncryptInit_ex(ctx, NULL, NULL, key, raw) != 1 ||
        gcm_aad(ctx, label, labellen, context) != 0)
        goto out;
    if (ptlen > 0 && (EVP_EncryptUpdate(ctx, ct, &n, pt, (int)ptlen) != 1 ||
                      (size_t)n != ptlen))
        goto out;
    if (EVP_EncryptFinal_ex(ctx, ct + ptlen, &n) != 1 || n != 0 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, ct + ptlen) !=
            1)
        goto out;
    err = BRK_OK;
out:
    EVP_CIPHER_CTX_free(ctx);
    return err;
}

/*
 * Decrypt raw = nonce | ciphertext | tag (rawlen >= NONCE_LEN + TAG_LEN)
 * into pt (rawlen - NONCE_LEN - TAG_LEN bytes). pt is wiped on failure.
 */
static enum brk_err
gcm_open(const unsigned char key[KEYRING_KEY_LEN], const char *label,
         size_t labellen, const char *context, const unsigned char *raw,
         size_t rawlen, unsigned char *pt)
{
    EVP_CIPHER_CTX *ctx = NULL;
    unsigned char tag[TAG_LEN];
    size_t ctlen = rawlen - NONCE_LEN - TAG_LEN;
    enum brk_err err = BRK_ERR_CRYPTO;
    int n;

    if (ctlen > INT_MAX)
        goto out;
    memcpy(tag, raw + NONCE_LEN + ctlen, TAG_LEN);
    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) !=
            1 ||
        EVP_DecryptInit_ex(ctx, NULL, NULL, key, raw) != 1 ||
        gcm_aad(ctx, label, labellen, context) != 0)
        goto out;
    if (ctlen > 0 &&
        (EVP_DecryptUpdate(ctx, pt, &n, raw + NONCE_LEN, (int)ctlen) != 1 ||
         (size_t)n != ctlen))
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1 ||
        EVP_DecryptFinal_ex(ctx, pt + ctlen, &n) != 1 || n != 0)
        goto out;
    err = BRK_OK;
out:
    /* GCM releases plaintext before checking the tag: never leave it */
    if (err != BRK_OK)
        brk_wipe(pt, ctlen);
    EVP_CIPHER_CTX_free(ctx);
    return err;
}

/*---- Data keys ----*/

/* Fill dk with a fresh random key. BRK_ERR_CRYPTO if the RNG fails. */
enum brk_err
keyring_dk_generate(unsigned char dk[KEYRING_KEY_LEN])
{
    unsigned char tmp[KEYRING_KEY_LEN];
    enum brk_err err = BRK_ERR_CRYPTO;

    if (RAND_bytes(tmp, sizeof(tmp)) == 1) {
        memcpy(dk, tmp, sizeof(tmp));
        err = BRK_OK;
    }
    brk_wipe(tmp, sizeof(tmp));
    return err;
}

/*
 * Wrap dk under the current master version, bound to context (the owner,
 * e.g. "suite:wwX" or "tenant:wwX:corp"): "k<VERSION>.<base64(nonce |
 * ciphertext | tag)>". Returns BRK_OK, BRK_ERR_NOMEM or BRK_ERR_CRYPTO.
 * *out is owned, free it with brk_free.
 */
enum brk_err
keyring_wrap(const struct keyring *kr, const unsigned char dk[KEYRING_KEY_LEN],
             const char *context, char **out)
{
    const struct keyring_master *m = &kr->masters[kr->nmasters - 1];
    unsigned char raw[WRAP_RAW_LEN];
    char *text = NULL;
    enum brk_err err;
    int n;

    assert(context != NULL);
    text = brk_malloc(WRAP_TEXT_CAP);
    if (text == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    err = gcm_seal(m->key, dk_label, sizeof(dk_label), context, dk,
                   KEYRING_KEY_LEN, raw);
    if (err != BRK_OK)
        goto out;
    n = snprintf(text, WRAP_TEXT_CAP, "k%u.", m->version);
    assert(n > 0 && (size_t)n + WRAP_B64_LEN < WRAP_TEXT_CAP);
    codec_b64_encode(raw, sizeof(raw), text + n);
    *out = text;
    text = NULL;
out:
    brk_free(text);
    return err;
}

/*
 * Unwrap a keyring_wrap text for context with the master version it names.
 * Returns BRK_OK (dk filled, *version set when not NULL), or BRK_ERR_CRYPTO
 * for a malformed text, an unknown version, another context or a failed tag.
 */
enum brk_err
keyring_unwrap(const struct keyring *kr, const char *wrapped,
               const char *context, unsigned char dk[KEYRING_KEY_LEN],
               unsigned *version)
{
    const struct keyring_master *m;
    unsigned char raw[WRAP_RAW_LEN], tmp[KEYRING_KEY_LEN];
    const char *dot;
    size_t rawlen;
    unsigned v;
    enum brk_err err = BRK_ERR_CRYPTO;

    assert(context != NULL);
    if (wrapped == NULL || wrapped[0] != 'k')
        goto out;
    dot = strchr(wrapped + 1, '.');
    if (dot == NULL ||
        parse_version(wrapped + 1, (size_t)(dot - wrapped - 1), &v) != 0)
        goto out;
    m = master_find(kr, v);
    if (m == NULL || strlen(dot + 1) != WRAP_B64_LEN ||
        codec_b64_decode(dot + 1, WRAP_B64_LEN, raw, sizeof(raw), &rawlen) !=
            BRK_OK ||
        rawlen != sizeof(raw))
        goto out;
    err =
        gcm_open(m->key, dk_label, sizeof(dk_label), context, raw, rawlen, tmp);
    if (err != BRK_OK)
        goto out;
    memcpy(dk, tmp, sizeof(tmp));
    if (version != NULL)
        *version = v;
out:
    brk_wipe(tmp, sizeof(tmp));
    return err;
}

/*---- Sealed values ----*/

/*
 * Seal ptlen bytes of pt under dk, bound to context (the Redis key or field
 * it is stored under): "s1.<base64(nonce | ciphertext | tag)>". Returns
 * BRK_OK, BRK_ERR_TOOBIG over KEYRING_SEAL_MAX, BRK_ERR_NOMEM or
 * BRK_ERR_CRYPTO. *out is owned (free with brk_free), NUL-terminated;
 * *outlen (may be NULL) gets its length.
 */
enum brk_err
keyring_seal(const unsigned char dk[KEYRING_KEY_LEN], const char *context,
             const void *pt, size_t ptlen, char **out, size_t *outlen)
{
    unsigned char *raw = NULL;
    char *text = NULL;
    size_t rawlen, textlen;
    enum brk_err err;

    assert(context != NULL && (pt != NULL || ptlen == 0));
    if (ptlen > KEYRING_SEAL_MAX)
        return BRK_ERR_TOOBIG;
    rawlen = NONCE_LEN + ptlen + TAG_LEN;
    textlen = SEAL_PREFIX_LEN + CODEC_B64_ENC_SIZE(rawlen) - 1;
    raw = brk_malloc(rawlen);
    text = brk_malloc(textlen + 1);
    if (raw == NULL || text == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    err = gcm_seal(dk, seal_label, sizeof(seal_label), context, pt, ptlen, raw);
    if (err != BRK_OK)
        goto out;
    memcpy(text, SEAL_PREFIX, SEAL_PREFIX_LEN);
    codec_b64_encode(raw, rawlen, text + SEAL_PREFIX_LEN);
    *out = text;
    text = NULL;
    if (outlen != NULL)
        *outlen = textlen;
out:
    brk_free(raw);
    brk_free(text);
    return err;
}

/*
 * Open a keyring_seal value of sealedlen bytes for context. Returns BRK_OK,
 * BRK_ERR_NOMEM, or BRK_ERR_CRYPTO for a bad format, another key or context,
 * or any tampering. *pt is owned, NUL-terminated after *ptlen bytes; free it
 * with brk_free_secret(*pt, *ptlen).
 */
enum brk_err
keyring_open(const unsigned char dk[KEYRING_KEY_LEN], const char *context,
             const char *sealed, size_t sealedlen, char **pt, size_t *ptlen)
{
    unsigned char *raw = NULL;
    char *plain = NULL;
    size_t b64len, rawlen = 0, plen = 0;
    enum brk_err err = BRK_ERR_CRYPTO;

    assert(context != NULL);
    if (sealed == NULL || sealedlen < SEAL_PREFIX_LEN ||
        memcmp(sealed, SEAL_PREFIX, SEAL_PREFIX_LEN) != 0)
        goto out;
    b64len = sealedlen - SEAL_PREFIX_LEN;
    if (b64len % 4 != 0 || b64len > SEAL_B64_MAX ||
        b64len / 4 * 3 < NONCE_LEN + TAG_LEN)
        goto out;
    raw = brk_malloc(b64len / 4 * 3);
    if (raw == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    if (codec_b64_decode(sealed + SEAL_PREFIX_LEN, b64len, raw, b64len / 4 * 3,
                         &rawlen) != BRK_OK ||
        rawlen < NONCE_LEN + TAG_LEN)
        goto out;
    plen = rawlen - NONCE_LEN - TAG_LEN;
    plain = brk_malloc(plen + 1);
    if (plain == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    err = gcm_open(dk, seal_label, sizeof(seal_label), context, raw, rawlen,
                   (unsigned char *)plain);
    if (err != BRK_OK)
        goto out;
    plain[plen] = '\0';
    *pt = plain;
    plain = NULL;
    if (ptlen != NULL)
        *ptlen = plen;
out:
    brk_free_secret(plain, plen);
    brk_free(raw);
    return err;
}

/*---- Index HMAC ----*/

/*
 * Failing here means OpenSSL could not allocate a few bytes; the callers
 * rely on "cannot fail", so treat it as a broken invariant.
 */
static void
mac_fail(void)
{
    log_error("keyring: HMAC-SHA256 failed");
    abort();
}

static EVP_MAC_CTX *
mac_begin(const struct keyring *kr)
{
    static char digest[] = "SHA256";
    OSSL_PARAM params[2];
    EVP_MAC_CTX *ctx;

    params[0] =
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    ctx = EVP_MAC_CTX_new(kr->mac);
    if (ctx == NULL ||
        EVP_MAC_init(ctx, kr->index_key, sizeof(kr->index_key), params) != 1)
        mac_fail();
    return ctx;
}

static void
mac_update(EVP_MAC_CTX *ctx, const void *data, size_t n)
{
    if (n > 0 && EVP_MAC_update(ctx, data, n) != 1)
        mac_fail();
}

static void
mac_end(EVP_MAC_CTX *ctx, char out[65])
{
    unsigned char md[32];
    size_t mdlen = 0;

    if (EVP_MAC_final(ctx, md, &mdlen, sizeof(md)) != 1 || mdlen != sizeof(md))
        mac_fail();
    EVP_MAC_CTX_free(ctx);
    codec_hex_encode(md, sizeof(md), out);
}

/*
 * HMAC-SHA256 under the index key over n bytes of data, as 64 lowercase hex
 * characters and a NUL in out. Cannot fail (aborts if OpenSSL cannot
 * allocate its context).
 */
void
keyring_index_hmac(const struct keyring *kr, const void *data, size_t n,
                   char out[65])
{
    EVP_MAC_CTX *ctx = mac_begin(kr);

    mac_update(ctx, data, n);
    mac_end(ctx, out);
}

/*
 * HMAC-SHA256 under the index key over nparts NUL-terminated strings, each
 * preceded by its length as 4 big-endian bytes so part boundaries cannot
 * shift. Output as keyring_index_hmac. Cannot fail.
 */
void
keyring_index_hmac_parts(const struct keyring *kr, const char *const *parts,
                         size_t nparts, char out[65])
{
    EVP_MAC_CTX *ctx = mac_begin(kr);
    unsigned char be[4];
    size_t i, len;

    for (i = 0; i < nparts; i++) {
        len = strlen(parts[i]);
        assert(len <= UINT32_MAX);
        be[0] = (unsigned char)(len >> 24);
        be[1] = (unsigned char)(len >> 16);
        be[2] = (unsigned char)(len >> 8);
        be[3] = (unsigned char)len;
        mac_update(ctx, be, sizeof(be));
        mac_update(ctx, parts[i], len);
    }
    mac_end(ctx, out);
}

/*---- Versions ----*/

/* Number of master key versions loaded (at least one). */
size_t
keyring_version_count(const struct keyring *kr)
{
    return kr->nmasters;
}

/* The i-th loaded version, ascending; i < keyring_version_count. */
unsigned
keyring_version_at(const struct keyring *kr, size_t i)
{
    assert(i < kr->nmasters);
    return kr->masters[i].version;
}

/*
 * The master version a keyring_wrap text names ("k<VERSION>."), read
 * without unwrapping. Returns BRK_OK, or BRK_ERR_INVAL when the text is not
 * of that form.
 */
enum brk_err
keyring_wrapped_version(const char *wrapped, unsigned *version)
{
    const char *dot;
    unsigned v;

    if (wrapped == NULL || wrapped[0] != 'k')
        return BRK_ERR_INVAL;
    dot = strchr(wrapped + 1, '.');
    if (dot == NULL ||
        parse_version(wrapped + 1, (size_t)(dot - wrapped - 1), &v) != 0)
        return BRK_ERR_INVAL;
    *version = v;
    return BRK_OK;
}

/*
 * Unwrap a data key with whichever loaded version wrapped it and wrap it
 * again under the current version, for the same context. The data key
 * itself does not change, so values sealed under it stay readable.
 * Returns BRK_OK, BRK_ERR_CRYPTO (see keyring_unwrap) or BRK_ERR_NOMEM.
 * *out is owned, free it with brk_free.
 */
enum brk_err
keyring_rewrap(const struct keyring *kr, const char *wrapped,
               const char *context, char **out)
{
    unsigned char dk[KEYRING_KEY_LEN];
    enum brk_err err;

    err = keyring_unwrap(kr, wrapped, context, dk, NULL);
    if (err == BRK_OK)
        err = keyring_wrap(kr, dk, context, out);
    brk_wipe(dk, sizeof(dk));
    return err;
}

/*---- Key file maintenance ----*/

/*
 * The text of a rewritten master key file: every line kept as it was
 * except the lines of drop (0: none); a bare key becomes "1 HEX"; with
 * add nonzero, "ADD HEX" is appended. buf has been checked by
 * parse_master_file, so a line that does not parse is a comment or blank.
 */
static enum brk_err
master_text(const char *buf, size_t len, unsigned drop, unsigned add,
            const unsigned char addkey[KEYRING_KEY_LEN], char **out,
            size_t *outlen)
{
    unsigned char key[KEYRING_KEY_LEN];
    const char *p = buf, *end = buf + len, *line, *eol, *s, *e;
    size_t cap = len + 16 + 2 * (HEX_KEY_LEN + 16), o = 0;
    unsigned version;
    char *text;
    int w;

    text = brk_malloc(cap);
    if (text == NULL)
        return BRK_ERR_NOMEM;
    while (p < end) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        line = s = p;
        e = eol;
        p = eol < end ? eol + 1 : end;
        while (s < e && is_blank(*s))
            s++;
        while (e > s && is_blank(e[-1]))
            e--;
        if (s != e && *s != '#' &&
            parse_master_line(s, (size_t)(e - s), &version, key) == NULL) {
            if (version == 0) {
                /* a bare key is version 1; spelled out once a second
                 * version joins it */
                memcpy(text + o, "1 ", 2);
                o += 2;
                memcpy(text + o, s, (size_t)(e - s));
                o += (size_t)(e - s);
                text[o++] = '\n';
                continue;
            }
            if (version == drop)
                continue;
        }
        memcpy(text + o, line, (size_t)(eol - line));
        o += (size_t)(eol - line);
        text[o++] = '\n';
    }
    brk_wipe(key, sizeof(key));
    if (add != 0) {
        w = snprintf(text + o, cap - o, "%u ", add);
        assert(w > 0 && (size_t)w + HEX_KEY_LEN + 1 < cap - o);
        o += (size_t)w;
        codec_hex_encode(addkey, KEYRING_KEY_LEN, text + o);
        o += HEX_KEY_LEN;
        text[o++] = '\n';
    }
    *out = text;
    *outlen = o;
    return BRK_OK;
}

/*
 * Write text to a temporary file beside path (mode 0600, path's owner),
 * fsync it, rename it over path and fsync the directory, so a reader sees
 * the old file or the new one, never a part.
 */
static enum brk_err
replace_file(const char *path, const char *dir, const struct stat *old,
             const char *text, size_t len, struct brk_errinfo *info)
{
    char *tmp = NULL;
    size_t off = 0, plen = strlen(path);
    ssize_t w;
    int fd = -1, dfd = -1;
    enum brk_err err = BRK_ERR_IO;

    tmp = brk_malloc(plen + 12);
    if (tmp == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmpXXXXXX", 11);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        io_error(info, path, "cannot create a temporary file beside it", errno);
        brk_free(tmp);
        tmp = NULL;
        goto out;
    }
    if (fchmod(fd, 0600) != 0) {
        io_error(info, tmp, "cannot chmod", errno);
        goto out;
    }
    /* run as root on the broker's file: keep it readable by the broker */
    if ((old->st_uid != geteuid() || old->st_gid != getegid()) &&
        fchown(fd, old->st_uid, old->st_gid) != 0) {
        io_error(info, tmp, "cannot give it the key file's owner", errno);
        goto out;
    }
    while (off < len) {
        w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            io_error(info, tmp, "cannot write", errno);
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        io_error(info, tmp, "cannot sync", errno);
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        io_error(info, tmp, "cannot close", errno);
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        io_error(info, path, "cannot replace", errno);
        goto out;
    }
    brk_free(tmp);
    tmp = NULL;
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        io_error(info, dir, "cannot sync the directory", errno);
        goto out;
    }
    err = BRK_OK;
out:
    if (fd >= 0)
        close(fd);
    if (tmp != NULL)
        unlink(tmp);
    if (dfd >= 0)
        close(dfd);
    brk_free(tmp);
    return err;
}

/*
 * Read, check and rewrite the master key file under an exclusive lock on
 * its directory (so two rewrites cannot lose each other's version): drop
 * version drop, or add a version one above the highest (*added).
 */
static enum brk_err
master_file_edit(const char *master_path, unsigned drop, unsigned *added,
                 struct brk_errinfo *info)
{
    struct keyring *kr = NULL;
    unsigned char key[KEYRING_KEY_LEN];
    struct stat st;
    char real[PATH_MAX], *dir = NULL, *slash, *buf = NULL, *text = NULL;
    size_t len = 0, tlen = 0;
    unsigned add = 0, cur;
    int dfd = -1, loose;
    enum brk_err err;

    /* a symlinked key file is replaced at its target */
    if (realpath(master_path, real) == NULL) {
        io_error(info, master_path, "cannot resolve", errno);
        err = BRK_ERR_IO;
        goto out;
    }
    dir = brk_strdup(real);
    if (dir == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || flock(dfd, LOCK_EX) != 0) {
        io_error(info, dir, "cannot lock", errno);
        err = BRK_ERR_IO;
        goto out;
    }
    err = key_file_read(real, &buf, &len, &loose, info);
    if (err == BRK_ERR_NOTFOUND) {
        brk_errinfo_set(info, 0, -1, "%s: no such file", master_path);
        err = BRK_ERR_IO;
    }
    if (err != BRK_OK)
        goto out;
    if (stat(real, &st) != 0) {
        io_error(info, real, "cannot stat", errno);
        err = BRK_ERR_IO;
        goto out;
    }
    kr = brk_calloc(1, sizeof(*kr));
    if (kr == NULL) {
        err = BRK_ERR_NOMEM;
        goto out;
    }
    err = parse_master_file(master_path, buf, len, kr, info);
    if (err != BRK_OK)
        goto out;
    cur = kr->masters[kr->nmasters - 1].version;
    if (drop != 0) {
        if (master_find(kr, drop) == NULL) {
            brk_errinfo_set(info, 0, -1, "%s: no version %u", master_path,
                            drop);
            err = BRK_ERR_NOTFOUND;
            goto out;
        }
        if (drop == cur) {
            brk_errinfo_set(info, 0, -1,
                            "%s: version %u is the current version; "
                            "rotate first",
                            master_path, drop);
            err = BRK_ERR_INVAL;
            goto out;
        }
    } else {
        if (cur >= KEYRING_VERSION_MAX) {
            brk_errinfo_set(info, 0, -1, "%s: no version above %u", master_path,
                            cur);
            err = BRK_ERR_CONFIG;
            goto out;
        }
        add = cur + 1;
        err = keyring_dk_generate(key);
        if (err != BRK_OK) {
            brk_errinfo_set(info, 0, -1, "random generator failed");
            goto out;
        }
    }
    err = master_text(buf, len, drop, add, key, &text, &tlen);
    if (err != BRK_OK)
        goto out;
    err = replace_file(real, dir, &st, text, tlen, info);
    if (err != BRK_OK)
        goto out;
    if (added != NULL)
        *added = add;
out:
    brk_wipe(key, sizeof(key));
    brk_free_secret(text, tlen);
    brk_free_secret(buf, len);
    keyring_free(kr);
    if (dfd >= 0)
        close(dfd); /* releases the lock */
    brk_free(dir);
    return err;
}

/*
 * Add a master key version to the file at master_path: one above the
 * highest, with a fresh random key. The file is replaced atomically
 * (temporary file, fsync, rename; mode 0600, the old file's owner);
 * comments are kept, and a bare key is spelled out as version 1.
 * Returns BRK_OK (*version set), BRK_ERR_IO, BRK_ERR_CONFIG (malformed
 * file, or no version left above the highest), BRK_ERR_CRYPTO or
 * BRK_ERR_NOMEM; info->msg says why.
 */
enum brk_err
keyring_file_add_version(const char *master_path, unsigned *version,
                         struct brk_errinfo *info)
{
    unsigned v = 0;
    enum brk_err err;

    err = master_file_edit(master_path, 0, &v, info);
    if (err == BRK_OK)
        *version = v;
    return err;
}

/*
 * Remove a master key version from the file at master_path, replaced as
 * keyring_file_add_version does. Whether a data key still uses it is the
 * caller's check. Returns BRK_OK, BRK_ERR_NOTFOUND (no such version),
 * BRK_ERR_INVAL (it is the current, highest version, which includes the
 * only one), BRK_ERR_IO, BRK_ERR_CONFIG or BRK_ERR_NOMEM; info->msg says
 * why.
 */
enum brk_err
keyring_file_remove_version(const char *master_path, unsigned version,
                            struct brk_errinfo *info)
{
    if (version == 0) {
        brk_errinfo_set(info, 0, -1, "%s: no version 0", master_path);
        return BRK_ERR_NOTFOUND;
    }
    return master_file_edit(master_path, version, NULL, info);
}
