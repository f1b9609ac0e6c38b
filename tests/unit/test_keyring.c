/*
 * Unit tests for keyring.c: key file loading and generation, data-key
 * wrapping, sealing, the index HMAC, and hostile inputs to each.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "broker.h"
#include "codec.h"
#include "keyring.h"

#define HEX_A "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define HEX_B "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
#define HEX_C "C0C1C2C3C4C5C6C7C8C9CACBCCCDCECFD0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"
#define HEX_I "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
#define HEX_J "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

#define CTX_SUITE  "suite:wwSUITE"
#define CTX_TENANT "tenant:wwSUITE:wxCORP"

struct fixture {
    char dir[64];
    char master[128];
    char index[128];
};

/*---- Helpers ----*/

static void
remove_tree(const char *path)
{
    struct dirent *de;
    struct stat st;
    char child[512];
    DIR *d;

    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        d = opendir(path);
        if (d != NULL) {
            while ((de = readdir(d)) != NULL) {
                if (strcmp(de->d_name, ".") == 0 ||
                    strcmp(de->d_name, "..") == 0)
                    continue;
                snprintf(child, sizeof(child), "%s/%s", path, de->d_name);
                remove_tree(child);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static int
setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/keyring-test-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->master, sizeof(f->master), "%s/master.key", f->dir);
    snprintf(f->index, sizeof(f->index), "%s/index.key", f->dir);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;

    brk_alloc_fail_at(0);
    remove_tree(f->dir);
    free(f);
    return 0;
}

static void
write_file(const char *path, const char *content, mode_t mode)
{
    size_t n = strlen(content);
    int fd;

    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

static void
append_file(const char *path, const char *content)
{
    size_t n = strlen(content);
    int fd = open(path, O_WRONLY | O_APPEND);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    assert_int_equal(close(fd), 0);
}

/* Whole file into a static buffer, NUL-terminated. */
static const char *
read_text(const char *path)
{
    static char buf[4096];
    ssize_t n;
    int fd = open(path, O_RDONLY);

    assert_true(fd >= 0);
    n = read(fd, buf, sizeof(buf) - 1);
    assert_true(n >= 0);
    buf[n] = '\0';
    close(fd);
    return buf;
}

static int
file_exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

static struct keyring *
load_ok(struct fixture *f, const char *master, const char *index)
{
    struct keyring *kr = NULL;
    struct brk_errinfo info = {{0}, 0, -1};

    if (master != NULL)
        write_file(f->master, master, 0600);
    if (index != NULL)
        write_file(f->index, index, 0600);
    assert_int_equal(
        keyring_load(f->master, f->index, 0, &kr, NULL, NULL, &info), BRK_OK);
    assert_non_null(kr);
    return kr;
}

/* Expect the master file content to be refused at line. */
static void
master_refused(struct fixture *f, const char *master, int line)
{
    struct keyring *kr = NULL;
    struct brk_errinfo info = {{0}, 0, -1};

    write_file(f->master, master, 0600);
    write_file(f->index, HEX_I "\n", 0600);
    assert_int_equal(
        keyring_load(f->master, f->index, 0, &kr, NULL, NULL, &info),
        BRK_ERR_CONFIG);
    assert_null(kr);
    assert_int_equal(info.line, line);
    assert_non_null(strstr(info.msg, f->master));
}

static void
index_refused(struct fixture *f, const char *index)
{
    struct keyring *kr = NULL;
    struct brk_errinfo info = {{0}, 0, -1};

    write_file(f->master, HEX_A "\n", 0600);
    write_file(f->index, index, 0600);
    assert_int_equal(
        keyring_load(f->master, f->index, 0, &kr, NULL, NULL, &info),
        BRK_ERR_CONFIG);
    assert_null(kr);
    assert_int_equal(info.line, 1);
    assert_non_null(strstr(info.msg, f->index));
}

static void
hex_key(const char *hex, unsigned char key[KEYRING_KEY_LEN])
{
    assert_int_equal(codec_hex_decode(hex, 64, key, KEYRING_KEY_LEN), BRK_OK);
}

/* Independent AES-256-GCM open of nonce | ct | tag with one AAD string. */
static int
ref_gcm_open(const unsigned char *key, const unsigned char *aad, size_t aadlen,
             const unsigned char *raw, size_t rawlen, unsigned char *pt)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    unsigned char tag[16];
    size_t ctlen = rawlen - 28;
    int n, ok;

    memcpy(tag, raw + 12 + ctlen, 16);
    ok = ctx != NULL &&
         EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, raw) == 1 &&
         EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aadlen) == 1 &&
         EVP_DecryptUpdate(ctx, pt, &n, raw + 12, (int)ctlen) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 &&
         EVP_DecryptFinal_ex(ctx, pt + n, &n) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

static size_t
build_aad(unsigned char *aad, const char *label, const char *context)
{
    size_t l = strlen(label) + 1, c = strlen(context);

    memcpy(aad, label, l);
    memcpy(aad + l, context, c);
    return l + c;
}

static void
fill_dk(unsigned char dk[KEYRING_KEY_LEN], unsigned char seed)
{
    size_t i;

    for (i = 0; i < KEYRING_KEY_LEN; i++)
        dk[i] = (unsigned char)(seed + 7 * i);
}

/* Decode the base64 after a "k<V>." or "s1." prefix. */
static size_t
decode_body(const char *text, unsigned char *raw, size_t cap)
{
    const char *dot = strchr(text, '.');
    size_t n = 0;

    assert_non_null(dot);
    assert_int_equal(codec_b64_decode(dot + 1, strlen(dot + 1), raw, cap, &n),
                     BRK_OK);
    return n;
}

/* Re-encode raw after prefix (including the dot) into a new string. */
static char *
encode_body(const char *prefix, size_t plen, const unsigned char *raw, size_t n)
{
    char *s = malloc(plen + CODEC_B64_ENC_SIZE(n));

    assert_non_null(s);
    memcpy(s, prefix, plen);
    codec_b64_encode(raw, n, s + plen);
    return s;
}

/*---- Loading master keys ----*/

static void
test_load_bare_hex_is_version_1(void **state)
{
    struct keyring *kr = load_ok(*state, HEX_A "\n", HEX_I "\n");

    assert_int_equal(keyring_current_version(kr), 1);
    assert_true(keyring_has_version(kr, 1));
    assert_false(keyring_has_version(kr, 2));
    keyring_free(kr);
}

static void
test_load_bare_hex_without_newline(void **state)
{
    struct keyring *kr = load_ok(*state, HEX_A, HEX_I);

    assert_int_equal(keyring_current_version(kr), 1);
    keyring_free(kr);
}

static void
test_load_multi_version_current_is_highest(void **state)
{
    struct keyring *kr =
        load_ok(*state, "# keys\n\n3 " HEX_B "\n1 " HEX_A "\n2\t" HEX_C "\n",
                HEX_I "\n");

    assert_int_equal(keyring_current_version(kr), 3);
    assert_true(keyring_has_version(kr, 1));
    assert_true(keyring_has_version(kr, 2));
    assert_true(keyring_has_version(kr, 3));
    assert_false(keyring_has_version(kr, 4));
    assert_false(keyring_has_version(kr, 0));
    keyring_free(kr);
}

static void
test_load_comments_blank_lines_crlf(void **state)
{
    struct keyring *kr = load_ok(
        *state, "\r\n  # comment\n\t\n7 " HEX_A "  \r\n# 8 junk\n", HEX_I "\n");

    assert_int_equal(keyring_current_version(kr), 7);
    assert_false(keyring_has_version(kr, 8));
    keyring_free(kr);
}

static void
test_load_many_versions(void **state)
{
    struct fixture *f = *state;
    struct keyring *kr;
    char text[64 * 80], *p = text;
    unsigned v;

    for (v = 1; v <= 50; v++)
        p += snprintf(p, sizeof(text) - (size_t)(p - text), "%u %s\n", 51 - v,
                      v % 2 ? HEX_A : HEX_B);
    kr = load_ok(f, text, HEX_I);
    assert_int_equal(keyring_current_version(kr), 50);
    for (v = 1; v <= 50; v++)
        assert_true(keyring_has_version(kr, v));
    keyring_free(kr);
}

static void
test_load_version_max(void **state)
{
    struct keyring *kr = load_ok(*state, "1000000 " HEX_A "\n", HEX_I);

    assert_int_equal(keyring_current_version(kr), 1000000);
    keyring_free(kr);
}

static void
test_load_duplicate_version(void **state)
{
    master_refused(*state, "1 " HEX_A "\n2 " HEX_B "\n\n1 " HEX_C "\n", 4);
}

static void
test_load_hex_63_chars(void **state)
{
    char line[80];

    snprintf(line, sizeof(line), "1 %.63s\n", HEX_A);
    master_refused(*state, line, 1);
}

static void
test_load_hex_65_chars(void **state)
{
    master_refused(*state, "1 " HEX_A "0\n", 1);
}

static void
test_load_hex_not_hex(void **state)
{
    char text[160];

    snprintf(text, sizeof(text), "1 %s\n2 %.63sg\n", HEX_B, HEX_A);
    master_refused(*state, text, 2);
    snprintf(text, sizeof(text), "1 %.62s0x\n", HEX_A);
    master_refused(*state, text, 1);
    snprintf(text, sizeof(text), "1 %.63s\xc3\n", HEX_A);
    master_refused(*state, text, 1);
}

static void
test_load_bare_hex_bad_length(void **state)
{
    char line[80];

    snprintf(line, sizeof(line), "%.63s\n", HEX_A);
    master_refused(*state, line, 1);
    master_refused(*state, HEX_A "a\n", 1);
}

static void
test_load_bare_hex_not_hex(void **state)
{
    char line[80];

    snprintf(line, sizeof(line), "%.63sz\n", HEX_A);
    master_refused(*state, line, 1);
}

static void
test_load_version_zero(void **state)
{
    master_refused(*state, "0 " HEX_A "\n", 1);
}

static void
test_load_version_out_of_range(void **state)
{
    master_refused(*state, "1000001 " HEX_A "\n", 1);
    master_refused(*state, "99999999999999999999 " HEX_A "\n", 1);
}

static void
test_load_version_not_decimal(void **state)
{
    master_refused(*state, "-1 " HEX_A "\n", 1);
    master_refused(*state, "+1 " HEX_A "\n", 1);
    master_refused(*state, "0x1 " HEX_A "\n", 1);
    master_refused(*state, "01 " HEX_A "\n", 1);
    master_refused(*state, "1a " HEX_A "\n", 1);
}

static void
test_load_garbage_line(void **state)
{
    master_refused(*state, "1 " HEX_A "\nhello world\n", 2);
    master_refused(*state, "garbage\n", 1);
}

static void
test_load_trailing_junk(void **state)
{
    master_refused(*state, "1 " HEX_A " extra\n", 1);
    master_refused(*state, "1 " HEX_A " # comment\n", 1);
    master_refused(*state, "1 " HEX_A "\n2 " HEX_B " " HEX_C "\n", 2);
}

static void
test_load_nul_byte_refused(void **state)
{
    struct fixture *f = *state;
    struct keyring *kr = NULL;
    char text[] = "1 " HEX_A "\n";
    int fd;

    text[10] = '\0';
    fd = open(f->master, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, sizeof(text) - 1),
                     (ssize_t)sizeof(text) - 1);
    close(fd);
    write_file(f->index, HEX_I, 0600);
    assert_int_equal(
        keyring_load(f->master, f->index, 0, &kr, NULL, NULL, NULL),
        BRK_ERR_CONFIG);
    assert_null(kr);
}

static void
test_load_bare_mixed_with_versioned(void **state)
{
    master_refused(*state, HEX_A "\n2 " HEX_B "\n", 2);
    master_refused(*state, "2 " HEX_B "\n" HEX_A "\n", 2);
    master_refused(*state, HEX_A "\n" HEX_B "\n", 2);
}

static void
test_load_empty_master_file(void **state)
{
    master_refused(*state, "", 0);
    master_refused(*state, "# nothing here\n\n", 0);
}

static void
test_load_master_too_large(void **state)
{
    struct fixture *f = *state;
    struct keyring *kr = NULL;
    struct brk_errinfo info = {{0}, 0, -1};
    size_t n = KEYRING_FILE_MAX + 1;
    char *text = malloc(n + 1);

    assert_non_null(text);
    /* a valid key line after 64 KiB of comments: still refused */
    memset(text, '#', n);
    text[0] = '1';
    text[1] = ' ';
    memcpy(text + 2, HEX_A, 64);
    text[66] = '\n';
    text[n - 1] = '\n';
    text[n] = '\0';
    write_file(f->master, text, 0600);
    write_file(f->index, HEX_I, 0600);
    assert_int_equal(
        keyring_load(f->master, f->index, 0, &kr, NULL, NULL, &info),
        BRK_ERR_CONFIG);
    assert_null(kr);
    assert_non_null(strstr(info.msg, f->master));

    /* exactly the limit is accepted */
    text[n - 1] = '\0';
    text[n - 2] = '\n';
    write_file(f->master, text, 0600);
    assert_int_equal(
        keyring_load(f->master, f->index, 0, &kr, NULL, NULL, &info), BRK_OK);
    assert_int_equal(keyring_current_version(kr), 1);
    keyring_free(kr);
    free(text);
}

static void
test_load_master_not_regular_file(void **state)
{
    struct fixture *f = *state;
    struct keyring *kr = NULL;

    assert_int_equal(mkdir(f->master, 0700), 0);
    write_file(f->index, HEX_I, 0600);
    assert_int_not_equal(
        keyring_load(f->master, f->index, 1, &kr, NULL, NULL, NULL), BRK_OK);
    assert_null(kr);
}

/*---- Loading the index key ----*/

static void
test_load_index_bad(void **state)
{
    char line[80];

    snprintf(line, sizeof(line), "%.63s\n", HEX_I);
    index_refused(*state, line);
    index_refused(*state, HEX_I "0");
    index_refused(*state, HEX_I "\n\n");
    index_refused(*state, HEX_I "\r\n");
    index_refused(*state, HEX_I " \n");
    index_refused(*state, " " HEX_I "\n");
    index_refused(*state, "1 " HEX_I "\n");
    index_refused(*state, "");
    snprintf(line, sizeof(line), "%.63sx", HEX_I);
    index_refused(*state, line);
}

static void
test_load_index_newline_optional(void **state)
{
    struct fixture *f = *state;
    struct keyring *a = load_ok(f, HEX_A, HEX_I);
    struct keyring *b = load_ok(f, HEX_A, HEX_I "\n");
    char ha[65], hb[65];

    keyring_index_hmac(a, "x", 1, ha);
    keyring_index_hmac(b, "x", 1, hb);
    assert_string_equal(ha, hb);
    keyring_free(a);
    keyring_free(b);
}

/*---- Missing files and generation ----*/

static void
test_missing_master_without_generate(void **state)
{
    struct fixture *f = *state;
    struct keyring *kr = NULL;
    struct brk_errinfo info = {{0}, 0, -1};
    unsigned gen = 99;

    write_file(f->index, HEX_I, 0600);
    assert_int_equal(
        keyring_load(f->master, f->index, 0, &kr, &gen, NULL, &info),
        BRK_ERR_IO);
    assert_null(kr);
    assert_int_equal(gen, 99);
    assert_non_null(strstr(info.msg, f->master));
    assert_false(file_exists(f->master));
}

static void
test_missing_index_without_generate(void **state)
{
    struct fixture *f = *state;
    struct keyring *kr = NULL;
    struct brk_errinfo info = {{0}, 0, -1};

    write_file(f->master, HEX_A, 0600);
    assert_int_equal(
        keyring_load(f->master, f->index, 0, &kr, NULL, NULL, &info),
        BRK_ERR_IO);
    assert_null(kr);
    assert_non_null(strstr(info.msg, f->index));
    assert_false(file_exists(f->index));
}

static void
assert_key_file(const char *path, int master)
{
    struct stat st;
    const char *text = read_text(path);
    size_t i, off = master ? 2 : 0;

    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(strlen(text), off + 65);
    if (master)
        assert_memory_equal(text, "1 ", 2);
    for (i = off; i < off + 64; i++)
        assert_non_null(strchr("0123456789abcdef", text[i]));
    assert_int_equal(text[off + 64], '\n');
}

static void
test_generate_both_missing(void **state)
{
    struct fixture *f = *state;
    struct keyring *a = NULL, *b = NULL;
    unsigned char dk[KEYRING_KEY_LEN], back[KEYRING_KEY_LEN];
    char master_before[200], ha[65], hb[65], *w = NULL;
    unsigned gen = 99, loose = 99;

    assert_int_equal(
        keyring_load(f->master, f->index, 1, &a, &gen, &loose, NULL), BRK_OK);
    assert_int_equal(gen, KEYRING_FILE_MASTER | KEYRING_FILE_INDEX);
    assert_int_equal(loose, 0);
    assert_int_equal(keyring_current_version(a), 1);
    assert_key_file(f->master, 1);
    assert_key_file(f->index, 0);
    snprintf(master_before, sizeof(master_before), "%s", read_text(f->master));

    /* reload: nothing generated, same keys */
    assert_int_equal(
        keyring_load(f->master, f->index, 1, &b, &gen, &loose, NULL), BRK_OK);
    assert_int_equal(gen, 0);
    assert_string_equal(read_text(f->master), master_before);
    fill_dk(dk, 3);
    assert_int_equal(keyring_wrap(a, dk, CTX_SUITE, &w), BRK_OK);
    assert_int_equal(keyring_unwrap(b, w, CTX_SUITE, back, NULL), BRK_OK);
    assert_memory_equal(dk, back, sizeof(dk));
    keyring_index_hmac(a, "corp", 4, ha);
    keyring_index_hmac(b, "corp", 4, hb);
    assert_string_equal(ha, hb);
    brk_free(w);
    keyring_free(a);
    keyring_free(b);
}

static void
test_generate_index_only(void **state)
{
    struct fixture *f = *state;
    struct keyring *kr = NULL;
    unsigned gen = 99;

    write_file(f->master, "1 " HEX_A "\n", 0600);
    assert_int_equal(
        keyring_load(f->master, f->index, 1, &kr, &gen, NULL, NULL), BRK_OK);
    assert_int_equal(gen, KEYRING_FILE_INDEX);
    assert_string_equal(read_text(f->master), "1 " HEX_A "\n");
    assert_key_file(f->index, 0);
    keyring_free(kr);
}

static void
test_generate_master_only(void **state)
{
    struct fixture *f = *state;
    struct keyring *kr = NULL;
    unsigned gen = 99;

    write_file(f->index, HEX_I "\n", 0600);
    assert_int_equal(
        keyring_load(f->master, f->index, 1, &kr, &gen, NULL, NULL), BRK_OK);
    assert_int_equal(gen, KEYRING_FILE_MASTER);
    assert_string_equal(read_text(f->index), HEX_I "\n");
    assert_key_file(f->master, 1);
    keyring_free(kr);
}

static void
test_generate_creates_parent_dir(void **state)
{
    struct fixture *f = *state;
    struct keyring *kr = NULL;
    struct stat st;
    char sub[160], master[200], index[200];
    unsigned gen = 0;

    snprintf(sub, sizeof(sub), "%s/var", f->dir);
    snprintf(master, sizeof(master), "%s/master.key", sub);
    snprintf(index, sizeof(index), "%s/index.key", sub);
    assert_int_equal(keyring_load(master, index, 1, &kr, &gen, NULL, NULL),
                     BRK_OK);
    assert_int_equal(gen, 3);
    assert_int_equal(stat(sub, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_key_file(master, 1);
    assert_key_file(index, 0);
    keyring_free(kr);
}

static void
test_generate_never_overwrites_existing(void **state)
{
    struct fixture *f = *state;
    struct keyring *kr = NULL;
    unsigned gen = 99;

    /* an existing but broken file is an error, never replaced */
    write_file(f->master, "not a key\n", 0600);
    assert_int_equal(
        keyring_load(f->master, f->index, 1, &kr, &gen, NULL, NULL),
        BRK_ERR_CONFIG);
    assert_null(kr);
    assert_int_equal(gen, 99);
    assert_string_equal(read_text(f->master), "not a key\n");

    write_file(f->master, HEX_A, 0600);
    write_file(f->index, "short\n", 0600);
    assert_int_equal(
        keyring_load(f->master, f->index, 1, &kr, &gen, NULL, NULL),
        BRK_ERR_CONFIG);
    assert_string_equal(read_text(f->index), "short\n");
    assert_string_equal(read_text(f->master), HEX_A);
}

static void
test_generate_refuses_dangling_symlink(void **state)
{
    struct fixture *f = *state;
    struct keyring *kr = NULL;
    char target[160];

    snprintf(target, sizeof(target), "%s/elsewhere", f->dir);
    assert_int_equal(symlink(target, f->master), 0);
    assert_int_not_equal(
        keyring_load(f->master, f->index, 1, &kr, NULL, NULL, NULL), BRK_OK);
    assert_null(kr);
    assert_false(file_exists(target));
}

static void
test_generated_keys_differ(void **state)
{
    struct fixture *f = *state;
    struct keyring *a = NULL, *b = NULL;
    char m2[200], i2[200], ha[65], hb[65];
    char ma[200];

    snprintf(m2, sizeof(m2), "%s/m2.key", f->dir);
    snprintf(i2, sizeof(i2), "%s/i2.key", f->dir);
    assert_int_equal(keyring_load(f->master, f->index, 1, &a, NULL, NULL, NULL),
                     BRK_OK);
    assert_int_equal(keyring_load(m2, i2, 1, &b, NULL, NULL, NULL), BRK_OK);
    snprintf(ma, sizeof(ma), "%s", read_text(f->master));
    assert_string_not_equal(ma, read_text(m2));
    keyring_index_hmac(a, "x", 1, ha);
    keyring_index_hmac(b, "x", 1, hb);
    assert_string_not_equal(ha, hb);
    keyring_free(a);
    keyring_free(b);
}

static void
test_insecure_mode_flagged(void **state)
{
    struct fixture *f = *state;
    struct keyring *kr = NULL;
    unsigned loose = 99;

    write_file(f->master, HEX_A, 0640);
    write_file(f->index, HEX_I, 0600);
    assert_int_equal(
        keyring_load(f->master, f->index, 0, &kr, NULL, &loose, NULL), BRK_OK);
    assert_int_equal(loose, KEYRING_FILE_MASTER);
    keyring_free(kr);

    write_file(f->master, HEX_A, 0600);
    write_file(f->index, HEX_I, 0604);
    assert_int_equal(
        keyring_load(f->master, f->index, 0, &kr, NULL, &loose, NULL), BRK_OK);
    assert_int_equal(loose, KEYRING_FILE_INDEX);
    keyring_free(kr);

    write_file(f->master, HEX_A, 0644);
    write_file(f->index, HEX_I, 0660);
    assert_int_equal(
        keyring_load(f->master, f->index, 0, &kr, NULL, &loose, NULL), BRK_OK);
    assert_int_equal(loose, 3);
    keyring_free(kr);

    write_file(f->master, HEX_A, 0400);
    write_file(f->index, HEX_I, 0600);
    assert_int_equal(
        keyring_load(f->master, f->index, 0, &kr, NULL, &loose, NULL), BRK_OK);
    assert_int_equal(loose, 0);
    keyring_free(kr);
}

/*---- Wrapping data keys ----*/

static void
test_wrap_unwrap_round_trip(void **state)
{
    struct keyring *kr = load_ok(*state, "4 " HEX_A "\n", HEX_I);
    unsigned char dk[KEYRING_KEY_LEN], back[KEYRING_KEY_LEN];
    unsigned v = 0;
    char *w = NULL;

    assert_int_equal(keyring_dk_generate(dk), BRK_OK);
    assert_int_equal(keyring_wrap(kr, dk, CTX_TENANT, &w), BRK_OK);
    assert_memory_equal(w, "k4.", 3);
    assert_int_equal(strlen(w), 3 + 80);
    assert_int_equal(keyring_unwrap(kr, w, CTX_TENANT, back, &v), BRK_OK);
    assert_memory_equal(dk, back, sizeof(dk));
    assert_int_equal(v, 4);
    memset(back, 0, sizeof(back));
    assert_int_equal(keyring_unwrap(kr, w, CTX_TENANT, back, NULL), BRK_OK);
    assert_memory_equal(dk, back, sizeof(dk));
    brk_free(w);
    keyring_free(kr);
}

static void
test_wrap_format_matches_spec(void **state)
{
    struct keyring *kr = load_ok(*state, "1 " HEX_A "\n", HEX_I);
    unsigned char dk[KEYRING_KEY_LEN], key[KEYRING_KEY_LEN], raw[64], aad[64],
        pt[64];
    size_t n, aadlen;
    char *w = NULL;

    fill_dk(dk, 1);
    hex_key(HEX_A, key);
    assert_int_equal(keyring_wrap(kr, dk, CTX_SUITE, &w), BRK_OK);
    n = decode_body(w, raw, sizeof(raw));
    assert_int_equal(n, 12 + 32 + 16);
    aadlen = build_aad(aad, "wb-dk", CTX_SUITE);
    assert_true(ref_gcm_open(key, aad, aadlen, raw, n, pt));
    assert_memory_equal(pt, dk, sizeof(dk));
    /* the same blob under the seal label must not open */
    aadlen = build_aad(aad, "wb-seal", CTX_SUITE);
    assert_false(ref_gcm_open(key, aad, aadlen, raw, n, pt));
    brk_free(w);
    keyring_free(kr);
}

static void
test_wrap_twice_differs(void **state)
{
    struct keyring *kr = load_ok(*state, HEX_A, HEX_I);
    unsigned char dk[KEYRING_KEY_LEN];
    char *a = NULL, *b = NULL;

    fill_dk(dk, 9);
    assert_int_equal(keyring_wrap(kr, dk, CTX_SUITE, &a), BRK_OK);
    assert_int_equal(keyring_wrap(kr, dk, CTX_SUITE, &b), BRK_OK);
    assert_string_not_equal(a, b);
    brk_free(a);
    brk_free(b);
    keyring_free(kr);
}

static void
test_unwrap_older_version_after_append(void **state)
{
    struct fixture *f = *state;
    struct keyring *kr = load_ok(f, "1 " HEX_A "\n", HEX_I);
    struct keyring *only2;
    unsigned char dk[KEYRING_KEY_LEN], back[KEYRING_KEY_LEN];
    char *old = NULL, *cur = NULL;
    unsigned v = 0;

    fill_dk(dk, 5);
    assert_int_equal(keyring_wrap(kr, dk, CTX_SUITE, &old), BRK_OK);
    keyring_free(kr);

    append_file(f->master, "2 " HEX_B "\n");
    kr = load_ok(f, NULL, NULL);
    assert_int_equal(keyring_current_version(kr), 2);
    assert_int_equal(keyring_unwrap(kr, old, CTX_SUITE, back, &v), BRK_OK);
    assert_int_equal(v, 1);
    assert_memory_equal(dk, back, sizeof(dk));
    assert_int_equal(keyring_wrap(kr, dk, CTX_SUITE, &cur), BRK_OK);
    assert_memory_equal(cur, "k2.", 3);
    assert_int_equal(keyring_unwrap(kr, cur, CTX_SUITE, back, &v), BRK_OK);
    assert_int_equal(v, 2);

    /* once version 1 is destroyed, the old wrapping is unreadable */
    only2 = load_ok(f, "2 " HEX_B "\n", NULL);
    assert_int_equal(keyring_unwrap(only2, old, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    assert_int_equal(keyring_unwrap(only2, cur, CTX_SUITE, back, NULL), BRK_OK);
    brk_free(old);
    brk_free(cur);
    keyring_free(kr);
    keyring_free(only2);
}

static void
test_unwrap_wrong_context(void **state)
{
    struct keyring *kr = load_ok(*state, HEX_A, HEX_I);
    unsigned char dk[KEYRING_KEY_LEN], back[KEYRING_KEY_LEN];
    unsigned v = 77;
    char *w = NULL;

    fill_dk(dk, 2);
    memset(back, 0xAA, sizeof(back));
    assert_int_equal(keyring_wrap(kr, dk, "tenant:wwX:corpA", &w), BRK_OK);
    assert_int_equal(keyring_unwrap(kr, w, "tenant:wwX:corpB", back, &v),
                     BRK_ERR_CRYPTO);
    assert_int_equal(keyring_unwrap(kr, w, "tenant:wwX:corp", back, &v),
                     BRK_ERR_CRYPTO);
    assert_int_equal(keyring_unwrap(kr, w, "tenant:wwX:corpAA", back, &v),
                     BRK_ERR_CRYPTO);
    assert_int_equal(keyring_unwrap(kr, w, "", back, &v), BRK_ERR_CRYPTO);
    /* out-params untouched on failure */
    assert_int_equal(v, 77);
    assert_int_equal(back[0], 0xAA);
    assert_int_equal(back[31], 0xAA);
    brk_free(w);
    keyring_free(kr);
}

static void
test_unwrap_wrong_master_key(void **state)
{
    struct fixture *f = *state;
    struct keyring *a = load_ok(f, "1 " HEX_A "\n", HEX_I);
    struct keyring *b = load_ok(f, "1 " HEX_B "\n", HEX_I);
    unsigned char dk[KEYRING_KEY_LEN], back[KEYRING_KEY_LEN];
    char *w = NULL;

    fill_dk(dk, 4);
    assert_int_equal(keyring_wrap(a, dk, CTX_SUITE, &w), BRK_OK);
    assert_int_equal(keyring_unwrap(b, w, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    brk_free(w);
    keyring_free(a);
    keyring_free(b);
}

static void
test_unwrap_unknown_version(void **state)
{
    struct keyring *kr = load_ok(*state, "5 " HEX_A "\n", HEX_I);
    unsigned char dk[KEYRING_KEY_LEN], back[KEYRING_KEY_LEN];
    char *w = NULL;

    fill_dk(dk, 6);
    assert_int_equal(keyring_wrap(kr, dk, CTX_SUITE, &w), BRK_OK);
    assert_memory_equal(w, "k5.", 3);
    w[1] = '6';
    assert_int_equal(keyring_unwrap(kr, w, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    w[1] = '4';
    assert_int_equal(keyring_unwrap(kr, w, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    w[1] = '5';
    assert_int_equal(keyring_unwrap(kr, w, CTX_SUITE, back, NULL), BRK_OK);
    brk_free(w);
    keyring_free(kr);
}

static void
test_unwrap_bad_version_text(void **state)
{
    struct keyring *kr = load_ok(*state, "1 " HEX_A "\n", HEX_I);
    static const char *const prefixes[] = {
        "k0.",  "k01.", "k.",        "k-1.",
        "k+1.", "kx.",  "k1000001.", "k99999999999999999999.",
        "k 1.", "k1 .", "k1..",      "k1,"};
    unsigned char dk[KEYRING_KEY_LEN], back[KEYRING_KEY_LEN];
    char *w = NULL, buf[256];
    size_t i;

    fill_dk(dk, 8);
    assert_int_equal(keyring_wrap(kr, dk, CTX_SUITE, &w), BRK_OK);
    for (i = 0; i < nitems(prefixes); i++) {
        snprintf(buf, sizeof(buf), "%s%s", prefixes[i], w + 3);
        assert_int_equal(keyring_unwrap(kr, buf, CTX_SUITE, back, NULL),
                         BRK_ERR_CRYPTO);
    }
    brk_free(w);
    keyring_free(kr);
}

static void
test_unwrap_truncated(void **state)
{
    struct keyring *kr = load_ok(*state, HEX_A, HEX_I);
    unsigned char dk[KEYRING_KEY_LEN], back[KEYRING_KEY_LEN];
    char *w = NULL, buf[128];
    size_t i, n;

    fill_dk(dk, 10);
    assert_int_equal(keyring_wrap(kr, dk, CTX_SUITE, &w), BRK_OK);
    n = strlen(w);
    for (i = 0; i < n; i++) {
        memcpy(buf, w, i);
        buf[i] = '\0';
        assert_int_equal(keyring_unwrap(kr, buf, CTX_SUITE, back, NULL),
                         BRK_ERR_CRYPTO);
    }
    /* and one character too many */
    snprintf(buf, sizeof(buf), "%sA", w);
    assert_int_equal(keyring_unwrap(kr, buf, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    snprintf(buf, sizeof(buf), "%sAAAA", w);
    assert_int_equal(keyring_unwrap(kr, buf, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    assert_int_equal(keyring_unwrap(kr, NULL, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    brk_free(w);
    keyring_free(kr);
}

static void
test_unwrap_flipped_bit_every_byte(void **state)
{
    struct keyring *kr = load_ok(*state, HEX_A, HEX_I);
    unsigned char dk[KEYRING_KEY_LEN], back[KEYRING_KEY_LEN], raw[64];
    char *w = NULL, *bad;
    size_t n, i;
    int bit;

    fill_dk(dk, 11);
    assert_int_equal(keyring_wrap(kr, dk, CTX_SUITE, &w), BRK_OK);
    n = decode_body(w, raw, sizeof(raw));
    assert_int_equal(n, 60);
    /* untouched re-encoding still opens, so the loop below tests flips */
    bad = encode_body(w, 3, raw, n);
    assert_int_equal(keyring_unwrap(kr, bad, CTX_SUITE, back, NULL), BRK_OK);
    free(bad);
    for (i = 0; i < n; i++) {
        for (bit = 0; bit < 8; bit++) {
            raw[i] ^= (unsigned char)(1u << bit);
            bad = encode_body(w, 3, raw, n);
            assert_int_equal(keyring_unwrap(kr, bad, CTX_SUITE, back, NULL),
                             BRK_ERR_CRYPTO);
            free(bad);
            raw[i] ^= (unsigned char)(1u << bit);
        }
    }
    brk_free(w);
    keyring_free(kr);
}

static void
test_unwrap_bad_base64(void **state)
{
    struct keyring *kr = load_ok(*state, HEX_A, HEX_I);
    unsigned char dk[KEYRING_KEY_LEN], back[KEYRING_KEY_LEN];
    char *w = NULL, buf[128];
    size_t n;

    fill_dk(dk, 12);
    assert_int_equal(keyring_wrap(kr, dk, CTX_SUITE, &w), BRK_OK);
    n = strlen(w);
    snprintf(buf, sizeof(buf), "%s", w);
    buf[10] = '*';
    assert_int_equal(keyring_unwrap(kr, buf, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    snprintf(buf, sizeof(buf), "%s", w);
    buf[10] = '=';
    assert_int_equal(keyring_unwrap(kr, buf, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    snprintf(buf, sizeof(buf), "%s", w);
    buf[n - 1] = '=';
    assert_int_equal(keyring_unwrap(kr, buf, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    snprintf(buf, sizeof(buf), "%s", w);
    buf[20] = ' ';
    assert_int_equal(keyring_unwrap(kr, buf, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    snprintf(buf, sizeof(buf), "%s\n", w);
    assert_int_equal(keyring_unwrap(kr, buf, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    brk_free(w);
    keyring_free(kr);
}

static void
test_unwrap_missing_k_prefix(void **state)
{
    struct keyring *kr = load_ok(*state, HEX_A, HEX_I);
    unsigned char dk[KEYRING_KEY_LEN], back[KEYRING_KEY_LEN];
    char *w = NULL, buf[128];

    fill_dk(dk, 13);
    assert_int_equal(keyring_wrap(kr, dk, CTX_SUITE, &w), BRK_OK);
    assert_int_equal(keyring_unwrap(kr, w + 1, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    assert_int_equal(keyring_unwrap(kr, w + 3, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    snprintf(buf, sizeof(buf), "%s", w);
    buf[0] = 'K';
    assert_int_equal(keyring_unwrap(kr, buf, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    buf[0] = 's';
    assert_int_equal(keyring_unwrap(kr, buf, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    snprintf(buf, sizeof(buf), " %s", w);
    assert_int_equal(keyring_unwrap(kr, buf, CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    assert_int_equal(keyring_unwrap(kr, "", CTX_SUITE, back, NULL),
                     BRK_ERR_CRYPTO);
    brk_free(w);
    keyring_free(kr);
}

static void
test_dk_generate_random(void **state)
{
    unsigned char a[KEYRING_KEY_LEN], b[KEYRING_KEY_LEN],
        zero[KEYRING_KEY_LEN] = {0};

    (void)state;
    assert_int_equal(keyring_dk_generate(a), BRK_OK);
    assert_int_equal(keyring_dk_generate(b), BRK_OK);
    assert_memory_not_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, zero, sizeof(a));
}

/*---- Sealing ----*/

static void
test_seal_open_round_trip(void **state)
{
    static const size_t lens[] = {0, 1, 15, 16, 17, 1000};
    unsigned char dk[KEYRING_KEY_LEN], buf[1000];
    char *s = NULL, *pt = NULL;
    size_t i, j, slen = 0, ptlen = 99;

    (void)state;
    fill_dk(dk, 20);
    for (j = 0; j < sizeof(buf); j++)
        buf[j] = (unsigned char)(j * 31 + 7);
    for (i = 0; i < nitems(lens); i++) {
        assert_int_equal(keyring_seal(dk, CTX_TENANT, buf, lens[i], &s, &slen),
                         BRK_OK);
        assert_memory_equal(s, "s1.", 3);
        assert_int_equal(slen, strlen(s));
        assert_int_equal(slen, 3 + CODEC_B64_ENC_SIZE(lens[i] + 28) - 1);
        assert_int_equal(keyring_open(dk, CTX_TENANT, s, slen, &pt, &ptlen),
                         BRK_OK);
        assert_int_equal(ptlen, lens[i]);
        assert_memory_equal(pt, buf, lens[i]);
        assert_int_equal(pt[ptlen], '\0');
        brk_free_secret(pt, ptlen);
        brk_free(s);
    }
}

static void
test_seal_null_outlen_and_empty(void **state)
{
    unsigned char dk[KEYRING_KEY_LEN];
    char *s = NULL, *pt = NULL;
    size_t ptlen = 5;

    (void)state;
    fill_dk(dk, 21);
    assert_int_equal(keyring_seal(dk, "", NULL, 0, &s, NULL), BRK_OK);
    assert_int_equal(keyring_open(dk, "", s, strlen(s), &pt, &ptlen), BRK_OK);
    assert_int_equal(ptlen, 0);
    assert_string_equal(pt, "");
    brk_free_secret(pt, ptlen);
    brk_free(s);
}

static void
test_seal_binary_with_nul(void **state)
{
    static const char bin[] = "a\0b\0\xff";
    unsigned char dk[KEYRING_KEY_LEN];
    char *s = NULL, *pt = NULL;
    size_t slen, ptlen;

    (void)state;
    fill_dk(dk, 22);
    assert_int_equal(keyring_seal(dk, CTX_SUITE, bin, sizeof(bin), &s, &slen),
                     BRK_OK);
    assert_int_equal(keyring_open(dk, CTX_SUITE, s, slen, &pt, &ptlen), BRK_OK);
    assert_int_equal(ptlen, sizeof(bin));
    assert_memory_equal(pt, bin, sizeof(bin));
    brk_free_secret(pt, ptlen);
    brk_free(s);
}

static void
test_seal_size_limit(void **state)
{
    unsigned char dk[KEYRING_KEY_LEN];
    char *big = malloc(KEYRING_SEAL_MAX + 1), *s = NULL, *pt = NULL;
    size_t slen, ptlen;

    (void)state;
    assert_non_null(big);
    memset(big, 'x', KEYRING_SEAL_MAX + 1);
    fill_dk(dk, 23);
    assert_int_equal(
        keyring_seal(dk, CTX_SUITE, big, KEYRING_SEAL_MAX + 1, &s, &slen),
        BRK_ERR_TOOBIG);
    assert_null(s);
    assert_int_equal(
        keyring_seal(dk, CTX_SUITE, big, KEYRING_SEAL_MAX, &s, &slen), BRK_OK);
    assert_int_equal(keyring_open(dk, CTX_SUITE, s, slen, &pt, &ptlen), BRK_OK);
    assert_int_equal(ptlen, KEYRING_SEAL_MAX);
    assert_memory_equal(pt, big, KEYRING_SEAL_MAX);
    brk_free_secret(pt, ptlen);
    brk_free(s);
    free(big);
}

static void
test_open_oversized_text(void **state)
{
    unsigned char dk[KEYRING_KEY_LEN];
    size_t n = 3 + CODEC_B64_ENC_SIZE(KEYRING_SEAL_MAX + 28 + 3) - 1;
    char *text = malloc(n + 1), *pt = NULL;
    size_t ptlen;

    (void)state;
    assert_non_null(text);
    memcpy(text, "s1.", 3);
    memset(text + 3, 'A', n - 3);
    text[n] = '\0';
    fill_dk(dk, 24);
    assert_int_equal(keyring_open(dk, CTX_SUITE, text, n, &pt, &ptlen),
                     BRK_ERR_CRYPTO);
    assert_null(pt);
    free(text);
}

static void
test_seal_format_matches_spec(void **state)
{
    unsigned char dk[KEYRING_KEY_LEN], raw[128], aad[128], pt[128];
    size_t n, aadlen;
    char *s = NULL;

    (void)state;
    fill_dk(dk, 25);
    assert_int_equal(
        keyring_seal(dk, "wb:{wxCORP}:corp_token", "hello", 5, &s, NULL),
        BRK_OK);
    n = decode_body(s, raw, sizeof(raw));
    assert_int_equal(n, 12 + 5 + 16);
    aadlen = build_aad(aad, "wb-seal", "wb:{wxCORP}:corp_token");
    assert_true(ref_gcm_open(dk, aad, aadlen, raw, n, pt));
    assert_memory_equal(pt, "hello", 5);
    aadlen = build_aad(aad, "wb-dk", "wb:{wxCORP}:corp_token");
    assert_false(ref_gcm_open(dk, aad, aadlen, raw, n, pt));
    brk_free(s);
}

static void
test_open_wrong_key(void **state)
{
    unsigned char dk[KEYRING_KEY_LEN], other[KEYRING_KEY_LEN];
    char *s = NULL, *pt = NULL;
    size_t slen, ptlen = 7;

    (void)state;
    fill_dk(dk, 26);
    memcpy(other, dk, sizeof(dk));
    other[31] ^= 1;
    assert_int_equal(keyring_seal(dk, CTX_SUITE, "secret", 6, &s, &slen),
                     BRK_OK);
    assert_int_equal(keyring_open(other, CTX_SUITE, s, slen, &pt, &ptlen),
                     BRK_ERR_CRYPTO);
    assert_null(pt);
    assert_int_equal(ptlen, 7);
    brk_free(s);
}

static void
test_open_wrong_context(void **state)
{
    unsigned char dk[KEYRING_KEY_LEN];
    char *s = NULL, *pt = NULL;
    size_t slen, ptlen;

    (void)state;
    fill_dk(dk, 27);
    assert_int_equal(
        keyring_seal(dk, "wb:{wxA}:permanent_code", "secret", 6, &s, &slen),
        BRK_OK);
    assert_int_equal(
        keyring_open(dk, "wb:{wxB}:permanent_code", s, slen, &pt, &ptlen),
        BRK_ERR_CRYPTO);
    assert_int_equal(
        keyring_open(dk, "wb:{wxA}:permanent_cod", s, slen, &pt, &ptlen),
        BRK_ERR_CRYPTO);
    assert_int_equal(keyring_open(dk, "", s, slen, &pt, &ptlen),
                     BRK_ERR_CRYPTO);
    assert_null(pt);
    assert_int_equal(
        keyring_open(dk, "wb:{wxA}:permanent_code", s, slen, &pt, &ptlen),
        BRK_OK);
    brk_free_secret(pt, ptlen);
    brk_free(s);
}

static void
test_open_flipped_bit_every_byte(void **state)
{
    unsigned char dk[KEYRING_KEY_LEN], raw[128];
    char *s = NULL, *bad, *pt = NULL;
    size_t n, i, ptlen;
    int bit;

    (void)state;
    fill_dk(dk, 28);
    assert_int_equal(
        keyring_seal(dk, CTX_SUITE, "twenty-byte-secret!!", 20, &s, NULL),
        BRK_OK);
    n = decode_body(s, raw, sizeof(raw));
    assert_int_equal(n, 48);
    for (i = 0; i < n; i++) {
        for (bit = 0; bit < 8; bit++) {
            raw[i] ^= (unsigned char)(1u << bit);
            bad = encode_body("s1.", 3, raw, n);
            assert_int_equal(
                keyring_open(dk, CTX_SUITE, bad, strlen(bad), &pt, &ptlen),
                BRK_ERR_CRYPTO);
            assert_null(pt);
            free(bad);
            raw[i] ^= (unsigned char)(1u << bit);
        }
    }
    bad = encode_body("s1.", 3, raw, n);
    assert_int_equal(keyring_open(dk, CTX_SUITE, bad, strlen(bad), &pt, &ptlen),
                     BRK_OK);
    brk_free_secret(pt, ptlen);
    free(bad);
    brk_free(s);
}

static void
test_open_changed_char_every_position(void **state)
{
    unsigned char dk[KEYRING_KEY_LEN];
    char *s = NULL, *pt = NULL, buf[256];
    size_t slen, i, ptlen;

    (void)state;
    fill_dk(dk, 29);
    assert_int_equal(keyring_seal(dk, CTX_SUITE, "abc", 3, &s, &slen), BRK_OK);
    for (i = 0; i < slen; i++) {
        memcpy(buf, s, slen + 1);
        buf[i] = buf[i] == 'B' ? 'C' : 'B';
        assert_int_equal(keyring_open(dk, CTX_SUITE, buf, slen, &pt, &ptlen),
                         BRK_ERR_CRYPTO);
    }
    assert_null(pt);
    brk_free(s);
}

static void
test_open_truncated(void **state)
{
    unsigned char dk[KEYRING_KEY_LEN];
    char *s = NULL, *pt = NULL, buf[256];
    size_t slen, i, ptlen;

    (void)state;
    fill_dk(dk, 30);
    assert_int_equal(keyring_seal(dk, CTX_SUITE, "truncate me", 11, &s, &slen),
                     BRK_OK);
    for (i = 0; i < slen; i++) {
        /* length-limited, and also NUL-terminated at the cut */
        assert_int_equal(keyring_open(dk, CTX_SUITE, s, i, &pt, &ptlen),
                         BRK_ERR_CRYPTO);
        memcpy(buf, s, i);
        buf[i] = '\0';
        assert_int_equal(keyring_open(dk, CTX_SUITE, buf, i, &pt, &ptlen),
                         BRK_ERR_CRYPTO);
    }
    assert_null(pt);
    brk_free(s);
}

static void
test_open_bad_format(void **state)
{
    unsigned char dk[KEYRING_KEY_LEN];
    char *s = NULL, *pt = NULL, buf[256];
    size_t slen, ptlen;

    (void)state;
    fill_dk(dk, 31);
    assert_int_equal(keyring_seal(dk, CTX_SUITE, "x", 1, &s, &slen), BRK_OK);
    /* wrong or missing prefix */
    snprintf(buf, sizeof(buf), "s2.%s", s + 3);
    assert_int_equal(keyring_open(dk, CTX_SUITE, buf, slen, &pt, &ptlen),
                     BRK_ERR_CRYPTO);
    assert_int_equal(keyring_open(dk, CTX_SUITE, s + 3, slen - 3, &pt, &ptlen),
                     BRK_ERR_CRYPTO);
    /* trailing garbage counted in the length */
    snprintf(buf, sizeof(buf), "%s\n", s);
    assert_int_equal(keyring_open(dk, CTX_SUITE, buf, slen + 1, &pt, &ptlen),
                     BRK_ERR_CRYPTO);
    snprintf(buf, sizeof(buf), "%sAAAA", s);
    assert_int_equal(keyring_open(dk, CTX_SUITE, buf, slen + 4, &pt, &ptlen),
                     BRK_ERR_CRYPTO);
    /* a NUL inside the counted bytes */
    memcpy(buf, s, slen + 1);
    buf[8] = '\0';
    assert_int_equal(keyring_open(dk, CTX_SUITE, buf, slen, &pt, &ptlen),
                     BRK_ERR_CRYPTO);
    /* valid base64 but shorter than nonce + tag */
    assert_int_equal(keyring_open(dk, CTX_SUITE, "s1.AAAA", 7, &pt, &ptlen),
                     BRK_ERR_CRYPTO);
    assert_int_equal(keyring_open(dk, CTX_SUITE,
                                  "s1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                                  40, &pt, &ptlen),
                     BRK_ERR_CRYPTO);
    assert_int_equal(keyring_open(dk, CTX_SUITE, "s1.", 3, &pt, &ptlen),
                     BRK_ERR_CRYPTO);
    assert_int_equal(keyring_open(dk, CTX_SUITE, "", 0, &pt, &ptlen),
                     BRK_ERR_CRYPTO);
    assert_int_equal(keyring_open(dk, CTX_SUITE, NULL, 0, &pt, &ptlen),
                     BRK_ERR_CRYPTO);
    assert_null(pt);
    brk_free(s);
}

static void
test_seal_twice_differs(void **state)
{
    unsigned char dk[KEYRING_KEY_LEN];
    char *a = NULL, *b = NULL;

    (void)state;
    fill_dk(dk, 32);
    assert_int_equal(keyring_seal(dk, CTX_SUITE, "same", 4, &a, NULL), BRK_OK);
    assert_int_equal(keyring_seal(dk, CTX_SUITE, "same", 4, &b, NULL), BRK_OK);
    assert_string_not_equal(a, b);
    /* distinct nonces, not just distinct tags */
    assert_memory_not_equal(a + 3, b + 3, 16);
    brk_free(a);
    brk_free(b);
}

static void
test_sealed_hides_plaintext(void **state)
{
    static const char secret[] = "PLAINTEXT-20-CHARS!!";
    unsigned char dk[KEYRING_KEY_LEN], raw[128];
    char *s = NULL, b64[64];
    size_t n, off;

    (void)state;
    assert_int_equal(strlen(secret), 20);
    fill_dk(dk, 33);
    assert_int_equal(keyring_seal(dk, CTX_SUITE, secret, 20, &s, NULL), BRK_OK);
    assert_null(strstr(s, secret));
    /* nor its base64 at any alignment, nor in the decoded blob */
    for (off = 0; off < 3; off++) {
        codec_b64_encode((const unsigned char *)secret + off, 18 - off, b64);
        b64[16] = '\0';
        assert_null(strstr(s, b64));
    }
    n = decode_body(s, raw, sizeof(raw));
    assert_null(memmem(raw, n, secret, 20));
    assert_null(memmem(raw, n, secret, 6));
    brk_free(s);
}

/*---- Index HMAC ----*/

static void
ref_hmac(const char *keyhex, const void *data, size_t n, char out[65])
{
    unsigned char key[KEYRING_KEY_LEN], md[32];
    unsigned int mdlen = 0;

    hex_key(keyhex, key);
    assert_non_null(HMAC(EVP_sha256(), key, sizeof(key),
                         (const unsigned char *)data, n, md, &mdlen));
    assert_int_equal(mdlen, 32);
    codec_hex_encode(md, 32, out);
}

static void
test_hmac_is_hmac_sha256_with_index_key(void **state)
{
    struct keyring *kr = load_ok(*state, HEX_A, HEX_I);
    char got[65], want[65];

    keyring_index_hmac(kr, "wwSUITE:wxCORP", 14, got);
    ref_hmac(HEX_I, "wwSUITE:wxCORP", 14, want);
    assert_string_equal(got, want);
    assert_int_equal(strlen(got), 64);
    keyring_index_hmac(kr, "", 0, got);
    ref_hmac(HEX_I, "", 0, want);
    assert_string_equal(got, want);
    keyring_free(kr);
}

static void
test_hmac_deterministic(void **state)
{
    struct keyring *kr = load_ok(*state, HEX_A, HEX_I);
    char a[65], b[65], c[65];

    keyring_index_hmac(kr, "corp", 4, a);
    keyring_index_hmac(kr, "corp", 4, b);
    keyring_index_hmac(kr, "corq", 4, c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    keyring_free(kr);
}

static void
test_hmac_differs_with_index_key(void **state)
{
    struct fixture *f = *state;
    struct keyring *a = load_ok(f, HEX_A, HEX_I);
    struct keyring *b = load_ok(f, HEX_A, HEX_J);
    struct keyring *c = load_ok(f, HEX_B, HEX_I);
    char ha[65], hb[65], hc[65];

    keyring_index_hmac(a, "corp", 4, ha);
    keyring_index_hmac(b, "corp", 4, hb);
    keyring_index_hmac(c, "corp", 4, hc);
    assert_string_not_equal(ha, hb);
    /* the master key plays no part */
    assert_string_equal(ha, hc);
    keyring_free(a);
    keyring_free(b);
    keyring_free(c);
}

static void
test_hmac_parts_encoding(void **state)
{
    struct keyring *kr = load_ok(*state, HEX_A, HEX_I);
    static const char *const ab_c[] = {"ab", "c"};
    static const char *const a_bc[] = {"a", "bc"};
    static const char *const abc[] = {"abc"};
    static const char *const abc_empty[] = {"abc", ""};
    static const unsigned char enc[] = {0, 0, 0, 2, 'a', 'b', 0, 0, 0, 1, 'c'};
    char h1[65], h2[65], h3[65], h4[65], want[65], empty[65];

    keyring_index_hmac_parts(kr, ab_c, 2, h1);
    keyring_index_hmac_parts(kr, a_bc, 2, h2);
    keyring_index_hmac_parts(kr, abc, 1, h3);
    keyring_index_hmac_parts(kr, abc_empty, 2, h4);
    assert_string_not_equal(h1, h2);
    assert_string_not_equal(h1, h3);
    assert_string_not_equal(h3, h4);
    keyring_index_hmac(kr, enc, sizeof(enc), want);
    assert_string_equal(h1, want);
    ref_hmac(HEX_I, enc, sizeof(enc), want);
    assert_string_equal(h1, want);
    keyring_index_hmac_parts(kr, NULL, 0, empty);
    keyring_index_hmac(kr, "", 0, want);
    assert_string_equal(empty, want);
    keyring_free(kr);
}

/*---- Allocation failures ----*/

static void
test_alloc_fail_load(void **state)
{
    struct fixture *f = *state;
    struct keyring *kr = NULL;
    enum brk_err err;
    unsigned long n;

    write_file(f->master,
               "1 " HEX_A "\n2 " HEX_B "\n3 " HEX_C "\n4 " HEX_A "\n5 " HEX_B
               "\n",
               0600);
    write_file(f->index, HEX_I, 0600);
    for (n = 1;; n++) {
        assert_true(n < 1000);
        brk_alloc_fail_at(n);
        err = keyring_load(f->master, f->index, 0, &kr, NULL, NULL, NULL);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(kr);
    }
    assert_true(n > 3);
    assert_int_equal(keyring_current_version(kr), 5);
    keyring_free(kr);
}

static void
test_alloc_fail_load_generate(void **state)
{
    struct fixture *f = *state;
    struct keyring *kr = NULL;
    char sub[160], master[200], index[200];
    enum brk_err err;
    unsigned long n;

    snprintf(sub, sizeof(sub), "%s/gen", f->dir);
    snprintf(master, sizeof(master), "%s/master.key", sub);
    snprintf(index, sizeof(index), "%s/index.key", sub);
    for (n = 1;; n++) {
        assert_true(n < 1000);
        brk_alloc_fail_at(n);
        err = keyring_load(master, index, 1, &kr, NULL, NULL, NULL);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(kr);
    }
    assert_key_file(master, 1);
    assert_key_file(index, 0);
    keyring_free(kr);
}

static void
test_alloc_fail_wrap_seal_open(void **state)
{
    struct keyring *kr = load_ok(*state, HEX_A, HEX_I);
    unsigned char dk[KEYRING_KEY_LEN], back[KEYRING_KEY_LEN];
    char *w = NULL, *s = NULL, *pt = NULL;
    size_t slen = 0, ptlen = 0;
    enum brk_err err;
    unsigned long n;

    fill_dk(dk, 40);
    for (n = 1;; n++) {
        assert_true(n < 100);
        brk_alloc_fail_at(n);
        err = keyring_wrap(kr, dk, CTX_SUITE, &w);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(w);
    }
    for (n = 1;; n++) {
        assert_true(n < 100);
        brk_alloc_fail_at(n);
        err = keyring_unwrap(kr, w, CTX_SUITE, back, NULL);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
    }
    assert_memory_equal(dk, back, sizeof(dk));
    for (n = 1;; n++) {
        assert_true(n < 100);
        brk_alloc_fail_at(n);
        err = keyring_seal(dk, CTX_SUITE, "payload", 7, &s, &slen);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(s);
    }
    for (n = 1;; n++) {
        assert_true(n < 100);
        brk_alloc_fail_at(n);
        err = keyring_open(dk, CTX_SUITE, s, slen, &pt, &ptlen);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(pt);
    }
    assert_int_equal(ptlen, 7);
    assert_string_equal(pt, "payload");
    brk_free_secret(pt, ptlen);
    brk_free(s);
    brk_free(w);
    keyring_free(kr);
}

static void
test_free_null(void **state)
{
    (void)state;
    keyring_free(NULL);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_load_bare_hex_is_version_1),
        T(test_load_bare_hex_without_newline),
        T(test_load_multi_version_current_is_highest),
        T(test_load_comments_blank_lines_crlf),
        T(test_load_many_versions),
        T(test_load_version_max),
        T(test_load_duplicate_version),
        T(test_load_hex_63_chars),
        T(test_load_hex_65_chars),
        T(test_load_hex_not_hex),
        T(test_load_bare_hex_bad_length),
        T(test_load_bare_hex_not_hex),
        T(test_load_version_zero),
        T(test_load_version_out_of_range),
        T(test_load_version_not_decimal),
        T(test_load_garbage_line),
        T(test_load_trailing_junk),
        T(test_load_nul_byte_refused),
        T(test_load_bare_mixed_with_versioned),
        T(test_load_empty_master_file),
        T(test_load_master_too_large),
        T(test_load_master_not_regular_file),
        T(test_load_index_bad),
        T(test_load_index_newline_optional),
        T(test_missing_master_without_generate),
        T(test_missing_index_without_generate),
        T(test_generate_both_missing),
        T(test_generate_index_only),
        T(test_generate_master_only),
        T(test_generate_creates_parent_dir),
        T(test_generate_never_overwrites_existing),
        T(test_generate_refuses_dangling_symlink),
        T(test_generated_keys_differ),
        T(test_insecure_mode_flagged),
        T(test_wrap_unwrap_round_trip),
        T(test_wrap_format_matches_spec),
        T(test_wrap_twice_differs),
        T(test_unwrap_older_version_after_append),
        T(test_unwrap_wrong_context),
        T(test_unwrap_wrong_master_key),
        T(test_unwrap_unknown_version),
        T(test_unwrap_bad_version_text),
        T(test_unwrap_truncated),
        T(test_unwrap_flipped_bit_every_byte),
        T(test_unwrap_bad_base64),
        T(test_unwrap_missing_k_prefix),
        T(test_dk_generate_random),
        T(test_seal_open_round_trip),
        T(test_seal_null_outlen_and_empty),
        T(test_seal_binary_with_nul),
        T(test_seal_size_limit),
        T(test_open_oversized_text),
        T(test_seal_format_matches_spec),
        T(test_open_wrong_key),
        T(test_open_wrong_context),
        T(test_open_flipped_bit_every_byte),
        T(test_open_changed_char_every_position),
        T(test_open_truncated),
        T(test_open_bad_format),
        T(test_seal_twice_differs),
        T(test_sealed_hides_plaintext),
        T(test_hmac_is_hmac_sha256_with_index_key),
        T(test_hmac_deterministic),
        T(test_hmac_differs_with_index_key),
        T(test_hmac_parts_encoding),
        T(test_alloc_fail_load),
        T(test_alloc_fail_load_generate),
        T(test_alloc_fail_wrap_seal_open),
        T(test_free_null),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
