/*
 * Per-suite runtime state (see suites.h).
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "datakey.h"
#include "keys.h"
#include "log.h"
#include "suites.h"
#include "wecom_crypto.h"

static void
on_key(enum brk_err err, const unsigned char *dk, void *arg)
{
    struct suite_rt *su = arg;

    su->dk_loading = 0;
    if (err) {
        log_error("suite %s: data key not loaded: %s", su->conf->suite_id,
                  brk_strerror(err));
        return;
    }
    memcpy(su->dk, dk, KEYRING_KEY_LEN);
    su->dk_loaded = 1;
    log_debug("suite %s: data key loaded", su->conf->suite_id);
}

static void
load_key(struct suite_rt *su)
{
    char key[KEYS_MAX], ctx[KEYS_MAX];
    enum brk_err err;

    if (su->dk_loaded || su->dk_loading)
        return;
    err = keys_suite_dk(key, sizeof(key), su->owner->cfg->key_prefix,
                        su->conf->suite_id);
    snprintf(ctx, sizeof(ctx), "suite:%s", su->conf->suite_id);
    if (!err)
        err =
            datakey_load(su->owner->st, su->owner->kr, key, ctx, 1, on_key, su);
    if (err) {
        log_warn("suite %s: cannot load data key now: %s", su->conf->suite_id,
                 brk_strerror(err));
        return;
    }
    su->dk_loading = 1;
}

void
suites_store_up(struct suites *s)
{
    size_t i;

    for (i = 0; i < s->n; i++)
        load_key(&s->v[i]);
}

void
suites_store_down(struct suites *s)
{
    size_t i;

    for (i = 0; i < s->n; i++) {
        brk_wipe(s->v[i].dk, KEYRING_KEY_LEN);
        s->v[i].dk_loaded = 0;
    }
}

int
suites_keys_ready(const struct suites *s)
{
    size_t i;

    for (i = 0; i < s->n; i++)
        if (!s->v[i].dk_loaded)
            return 0;
    return 1;
}

struct suite_rt *
suites_find(struct suites *s, const char *suite_id)
{
    size_t i;

    for (i = 0; i < s->n; i++)
        if (strcmp(s->v[i].conf->suite_id, suite_id) == 0)
            return &s->v[i];
    return NULL;
}

/*
 * Build per-suite state (see suites.h). Returns BRK_OK, BRK_ERR_CONFIG,
 * BRK_ERR_NOMEM.
 */
enum brk_err
suites_new(const struct config *cfg, const struct keyring *kr, struct store *st,
           struct suites **out)
{
    struct suites *s;
    enum brk_err err = BRK_OK;
    size_t i;

    s = brk_calloc(1, sizeof(*s));
    if (s == NULL)
        return BRK_ERR_NOMEM;
    s->cfg = cfg;
    s->kr = kr;
    s->st = st;
    s->v = brk_calloc(cfg->nsuites, sizeof(*s->v));
    if (s->v == NULL) {
        err = BRK_ERR_NOMEM;
        goto fail;
    }
    for (i = 0; i < cfg->nsuites; i++) {
        s->v[i].owner = s;
        s->v[i].conf = &cfg->suites[i];
        err =
            wecom_crypto_new(cfg->suites[i].token,
                             cfg->suites[i].encoding_aes_key, &s->v[i].crypto);
        if (err) {
            log_error("suite %s: unusable token or encoding_aes_key: %s",
                      cfg->suites[i].suite_id, brk_strerror(err));
            err = BRK_ERR_CONFIG;
            goto fail;
        }
        s->n++;
    }
    *out = s;
    return BRK_OK;
fail:
    suites_free(s);
    return err;
}

/*
 * Use kr (borrowed) from now on, for the configuration reload. Work
 * already started may still hold the previous keyring, so the caller
 * keeps that one alive a while longer. Cannot fail.
 */
void
suites_set_keyring(struct suites *s, const struct keyring *kr)
{
    s->kr = kr;
}

void
suites_free(struct suites *s)
{
    size_t i;

    if (s == NULL)
        return;
    for (i = 0; i < s->n; i++) {
        wecom_crypto_free(s->v[i].crypto);
        brk_wipe(s->v[i].dk, KEYRING_KEY_LEN);
    }
    brk_free(s->v);
    brk_free(s);
}
