/*
 * What writes keep in Redis (see write_store.h): key names, hashes and
 * the commands that feed them.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "keys.h"
#include "scripts.h"
#include "write_store.h"

enum brk_err
write_store_key(char *out, size_t len, const char *prefix, const char *suite,
                const char *corp, const char *what)
{
    char sub[200];

    if ((size_t)snprintf(sub, sizeof(sub), "wr:%s", what) >= sizeof(sub))
        return BRK_ERR_TOOBIG;
    return keys_tenant_sub(out, len, prefix, corp, suite, sub);
}

enum brk_err
write_store_sha256(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0, i;

    if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return BRK_ERR_CRYPTO;
    for (i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return BRK_OK;
}

static void
ignore_reply(enum brk_err err, struct redisReply *r, void *arg)
{
    (void)err;
    (void)r;
    (void)arg;
}

static int
pair_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    return n > 0 && n <= 128 && strpbrk(s, " \t\r\n") == NULL;
}

static enum brk_err
custidx_send(enum script_id script, struct store *st, const char *prefix,
             const char *suite, const char *corp, const char *const *pairs,
             size_t npairs, int empty_user_ok, store_reply_cb *cb, void *arg)
{
    char key[KEYS_MAX];
    const char **argv;
    size_t i, argc = 4;
    enum brk_err err;

    if (npairs == 0 || npairs > CUSTIDX_MAX_PAIRS)
        return BRK_ERR_INVAL;
    err = write_store_key(key, sizeof(key), prefix, suite, corp, "cust");
    if (err)
        return err;
    argv = brk_calloc(4 + 2 * npairs, sizeof(*argv));
    if (argv == NULL)
        return BRK_ERR_NOMEM;
    argv[0] = "EVAL";
    argv[1] = scripts_text(script);
    argv[2] = "1";
    argv[3] = key;
    for (i = 0; i < npairs; i++) {
        const char *c = pairs[2 * i], *u = pairs[2 * i + 1];

        if (!pair_ok(c) ||
            !(pair_ok(u) || (empty_user_ok && u != NULL && u[0] == '\0')))
            continue;
        argv[argc++] = c;
        argv[argc++] = u;
    }
    err = argc > 4 ? store_cmd_argv(st, cb ? cb : ignore_reply, arg, (int)argc,
                                    argv, NULL)
                   : BRK_ERR_INVAL;
    brk_free(argv);
    return err;
}

enum brk_err
custidx_add(struct store *st, const char *prefix, const char *suite,
            const char *corp, const char *const *pairs, size_t npairs,
            store_reply_cb *cb, void *arg)
{
    return custidx_send(SCRIPT_CUSTIDX_ADD, st, prefix, suite, corp, pairs,
                        npairs, 0, cb, arg);
}

enum brk_err
custidx_del(struct store *st, const char *prefix, const char *suite,
            const char *corp, const char *const *pairs, size_t npairs,
            store_reply_cb *cb, void *arg)
{
    return custidx_send(SCRIPT_CUSTIDX_DEL, st, prefix, suite, corp, pairs,
                        npairs, 1, cb, arg);
}

static int
is_hex64(const char *s)
{
    return s != NULL && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

enum brk_err
welcome_record(struct store *st, const char *prefix, const char *suite,
               const char *corp, const char *code_hash, const char *service_id,
               long long pushed_at_ms, store_reply_cb *cb, void *arg)
{
    char key[KEYS_MAX], what[80], at[24], ttl[24];
    const char *argv[7];
    long long left = pushed_at_ms + WELCOME_WINDOW_MS - brk_wall_ms();
    enum brk_err err;

    if (!is_hex64(code_hash) || !keys_id_ok(service_id) || pushed_at_ms <= 0)
        return BRK_ERR_INVAL;
    snprintf(what, sizeof(what), "welcome:%s", code_hash);
    err = write_store_key(key, sizeof(key), prefix, suite, corp, what);
    if (err)
        return err;
    /* a code already past its window is kept a moment, so its use is
     * refused as expired rather than as unknown */
    snprintf(ttl, sizeof(ttl), "%lld", left > 1000 ? left : 1000);
    snprintf(at, sizeof(at), "%lld", pushed_at_ms);
    argv[0] = "EVAL";
    argv[1] = scripts_text(SCRIPT_WELCOME_RECORD);
    argv[2] = "1";
    argv[3] = key;
    argv[4] = service_id;
    argv[5] = at;
    argv[6] = ttl;
    return store_cmd_argv(st, cb ? cb : ignore_reply, arg, 7, argv, NULL);
}
