/*
 * Runtime state of each configured suite: its callback crypto and its data
 * key (loaded from Redis, created on first use). Shared by the callback
 * endpoints, the event workers and the token manager.
 */
#ifndef SUITES_H
#define SUITES_H

#include <stddef.h>

#include "broker.h"
#include "keyring.h"

struct config;
struct store;
struct suite_conf;
struct wecom_crypto;

struct suite_rt {
    const struct suite_conf *conf; /* borrowed from the config */
    struct wecom_crypto *crypto;
    unsigned char dk[KEYRING_KEY_LEN];
    int dk_loaded;
    int dk_loading;
    struct suites *owner;
};

struct suites {
    const struct config *cfg;
    const struct keyring *kr;
    struct store *st;
    struct suite_rt *v;
    size_t n;
};

/*
 * Build the state of every suite of cfg (borrowed, with kr and st; all
 * must outlive it). BRK_ERR_CONFIG when a suite's key is unusable.
 * Owned: suites_free.
 */
enum brk_err suites_new(const struct config *cfg, const struct keyring *kr,
                        struct store *st, struct suites **out) BRK_WUR;
void suites_free(struct suites *s);
/* Use kr (borrowed) from now on; see suites.c. */
void suites_set_keyring(struct suites *s, const struct keyring *kr);
/* The suite with that id, or NULL. Borrowed. */
struct suite_rt *suites_find(struct suites *s, const char *suite_id);
/* Redis is up (again): load every suite's data key. */
void suites_store_up(struct suites *s);
/* Redis is down: forget the keys (they may change meanwhile). */
void suites_store_down(struct suites *s);
/* Nonzero when every suite's data key is loaded. */
int suites_keys_ready(const struct suites *s);

#endif /* SUITES_H */
