/*
 * Data keys in Redis: each owner (a suite, later a tenant) has a random
 * AES-256 key stored wrapped by the master key. Loading creates it on
 * first use; concurrent instances agree on one through SET NX.
 */
#ifndef DATAKEY_H
#define DATAKEY_H

#include "broker.h"
#include "keyring.h"

struct store;
struct keyring;

/* Called exactly once; dk is borrowed for the call (copy it) and NULL on
 * error. */
typedef void datakey_cb(enum brk_err err, const unsigned char *dk, void *arg);

/*
 * Load the data key stored at redis_key (wrapped with AAD context), or,
 * when absent and create is nonzero, generate and store one. Returns BRK_OK
 * (cb will be called once, later) or an error (cb never called).
 */
enum brk_err datakey_load(struct store *s, const struct keyring *kr,
                          const char *redis_key, const char *context,
                          int create, datakey_cb *cb, void *arg) BRK_WUR;

#endif /* DATAKEY_H */
