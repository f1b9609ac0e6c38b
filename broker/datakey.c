/*
 * Load-or-create of wrapped data keys (see datakey.h):
 * GET -> unwrap, or GET nil -> generate, wrap, SET NX -> GET -> unwrap.
 */
#include <string.h>

#include <hiredis/hiredis.h>

#include "datakey.h"
#include "keys.h"
#include "log.h"
#include "store.h"

struct dk_op {
    struct store *s;
    const struct keyring *kr;
    char key[KEYS_MAX];
    char context[KEYS_MAX];
    int create;
    int stage; /* 0: first GET, 1: SET NX sent, 2: second GET */
    datakey_cb *cb;
    void *arg;
};

static void on_reply(enum brk_err err, struct redisReply *reply, void *arg);

static void
finish(struct dk_op *op, enum brk_err err, const unsigned char *dk)
{
    op->cb(err, dk, op->arg);
    brk_free(op);
}

static enum brk_err
send_get(struct dk_op *op)
{
    const char *argv[] = {"GET", op->key};

    return store_cmd_argv(op->s, on_reply, op, 2, argv, NULL);
}

static void
on_reply(enum brk_err err, struct redisReply *reply, void *arg)
{
    struct dk_op *op = arg;
    unsigned char dk[KEYRING_KEY_LEN];
    char *wrapped = NULL;
    const char *argv[5];

    if (err) {
        finish(op, err, NULL);
        return;
    }
    if (op->stage != 1 && reply->type == REDIS_REPLY_STRING) {
        err = keyring_unwrap(op->kr, reply->str, op->context, dk, NULL);
        if (err)
            log_error("data key %s does not unwrap with the master key "
                      "file (wrong or destroyed master key version?)",
                      op->key);
        finish(op, err, err ? NULL : dk);
        brk_wipe(dk, sizeof(dk));
        return;
    }
    if (op->stage == 1) {
        /* OK or nil (another instance won the race): read the winner */
        op->stage = 2;
        err = send_get(op);
        if (err)
            finish(op, err, NULL);
        return;
    }
    if (op->stage == 2 || !op->create || reply->type != REDIS_REPLY_NIL) {
        finish(op, BRK_ERR_NOTFOUND, NULL);
        return;
    }
    err = keyring_dk_generate(dk);
    if (!err)
        err = keyring_wrap(op->kr, dk, op->context, &wrapped);
    brk_wipe(dk, sizeof(dk));
    if (err) {
        finish(op, err, NULL);
        return;
    }
    argv[0] = "SET";
    argv[1] = op->key;
    argv[2] = wrapped;
    argv[3] = "NX";
    op->stage = 1;
    err = store_cmd_argv(op->s, on_reply, op, 4, argv, NULL);
    brk_free(wrapped);
    if (err)
        finish(op, err, NULL);
}

/*
 * Start loading (see datakey.h). Returns BRK_OK, BRK_ERR_STORE when Redis
 * is down, BRK_ERR_TOOBIG for over-long names, BRK_ERR_NOMEM.
 */
enum brk_err
datakey_load(struct store *s, const struct keyring *kr, const char *redis_key,
             const char *context, int create, datakey_cb *cb, void *arg)
{
    struct dk_op *op;
    enum brk_err err;

    if (strlen(redis_key) >= KEYS_MAX || strlen(context) >= KEYS_MAX)
        return BRK_ERR_TOOBIG;
    op = brk_calloc(1, sizeof(*op));
    if (op == NULL)
        return BRK_ERR_NOMEM;
    op->s = s;
    op->kr = kr;
    memcpy(op->key, redis_key, strlen(redis_key) + 1);
    memcpy(op->context, context, strlen(context) + 1);
    op->create = create;
    op->cb = cb;
    op->arg = arg;
    err = send_get(op);
    if (err)
        brk_free(op);
    return err;
}
