/*
 * Fuzz the configuration parser: the input is written as broker.conf in a
 * scratch directory that also holds secrets/{token,aes,secret,empty} (the
 * files the test configurations name), with WB_CASE_TOKEN, WB_CASE_AES and
 * WB_CASE_REDIS set, and loaded with config_load. A loaded configuration
 * must keep its promises (validated listen addresses and redis value,
 * 43-character AES keys, absolute paths, suites found by id); a refused
 * one gives a formatted message. The first line is also fed to
 * config_parse_listen and config_redis_parse on their own.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "config.h"
#include "sentinel.h"

#include "fuzz.h"

static char cfg_path[256];

static void
cfg_init(void)
{
    static const struct {
        const char *name, *text;
    } files[] = {
        {"secrets/token", "case-token-from-file\n"},
        {"secrets/aes", "CaseAesKey0123456789abcdefghijklmnopqrstuvw"},
        {"secrets/secret", "has ; semicolons ;inside"},
        {"secrets/empty", ""},
    };
    char dir[128], path[256];
    size_t i;

    if (cfg_path[0] != '\0')
        return;
    /* the directory for secrets/ must exist before the files */
    FUZZ_CHECK(fuzz_write_file("config", "broker.conf", (const uint8_t *)"", 0,
                               cfg_path, sizeof(cfg_path)) == 0);
    snprintf(dir, sizeof(dir), "%.*s/secrets",
             (int)(strrchr(cfg_path, '/') - cfg_path), cfg_path);
    (void)mkdir(dir, 0700);
    for (i = 0; i < nitems(files); i++)
        FUZZ_CHECK(fuzz_write_file(
                       "config", files[i].name, (const uint8_t *)files[i].text,
                       strlen(files[i].text), path, sizeof(path)) == 0);
    setenv("WB_CASE_TOKEN", "case-token-from-env", 1);
    setenv("WB_CASE_AES", "CaseAesKey0123456789abcdefghijklmnopqrstuvw", 1);
    setenv("WB_CASE_REDIS", "unix:///run/redis/redis.sock?db=3", 1);
}

static int
cfg_is_alnum(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            return 0;
    return 1;
}

static void
cfg_check(const struct config *cfg)
{
    struct config_redis r;
    char host[256];
    const char *const paths[] = {cfg->state_dir, cfg->scopes_dir,
                                 cfg->master_key_file, cfg->index_key_file};
    size_t i, j;
    int port;

    FUZZ_CHECK(config_parse_listen(cfg->callback_listen, host, sizeof(host),
                                   &port, 0) == BRK_OK);
    FUZZ_CHECK(port >= 1 && port <= 65535);
    FUZZ_CHECK(config_parse_listen(cfg->internal_listen, host, sizeof(host),
                                   &port, 0) == BRK_OK);
    if (cfg->redis[0] != '\0') {
        FUZZ_CHECK(config_redis_parse(cfg->redis, &r) == BRK_OK);
        /* exactly one form: TCP, unix socket, or sentinels */
        FUZZ_CHECK(
            (r.host != NULL) + (r.unix_path != NULL) + (r.master != NULL) == 1);
        FUZZ_CHECK((r.master != NULL) ==
                   (r.nsentinels >= 1 && r.nsentinels <= SENTINEL_MAX_NODES));
        for (i = 0; i < r.nsentinels; i++)
            FUZZ_CHECK(r.sentinels[i].host != NULL &&
                       r.sentinels[i].port >= 1 &&
                       r.sentinels[i].port <= 65535);
        FUZZ_CHECK(cfg->redis_min_replica_acks >= 0 &&
                   cfg->redis_min_replica_acks <= 16);
        config_redis_clear(&r);
    }
    for (i = 0; i < nitems(paths); i++)
        FUZZ_CHECK(paths[i] != NULL && paths[i][0] == '/');
    FUZZ_CHECK((cfg->tls_cert_file[0] == '\0') ==
               (cfg->tls_key_file[0] == '\0'));
    FUZZ_CHECK(cfg->key_prefix != NULL && cfg->key_prefix[0] != '\0');
    FUZZ_CHECK(strpbrk(cfg->key_prefix, " {}") == NULL);
    FUZZ_CHECK(cfg->nsuites >= 1);
    for (i = 0; i < cfg->nsuites; i++) {
        const struct suite_conf *s = &cfg->suites[i];

        FUZZ_CHECK(config_find_suite(cfg, s->suite_id) == s);
        FUZZ_CHECK(strlen(s->suite_id) <= CONFIG_MAX_ID);
        FUZZ_CHECK(strlen(s->encoding_aes_key) == 43 &&
                   cfg_is_alnum(s->encoding_aes_key));
        FUZZ_CHECK(s->token != NULL && s->token[0] != '\0');
        FUZZ_CHECK(s->auth_type == 0 || s->auth_type == 1);
        FUZZ_CHECK(s->redirect_allow != NULL);
        for (j = 0; j < s->nredirect_allow; j++)
            FUZZ_CHECK(s->redirect_allow[j] != NULL &&
                       strchr(s->redirect_allow[j], '\\') == NULL);
        FUZZ_CHECK(s->redirect_allow[s->nredirect_allow] == NULL);
    }
    FUZZ_CHECK(config_find_suite(cfg, "no such suite id at all") == NULL);
}

/* The first line on its own, as a listen address and a redis value. */
static void
cfg_values(const uint8_t *data, size_t size)
{
    struct config_redis r;
    char line[512], host[64];
    size_t n = 0;
    int port;

    while (n < size && n < sizeof(line) - 1 && data[n] != '\n' &&
           data[n] != '\0') {
        line[n] = (char)data[n];
        n++;
    }
    line[n] = '\0';
    if (config_parse_listen(line, host, sizeof(host), &port, 1) == BRK_OK)
        FUZZ_CHECK(port >= 0 && port <= 65535 &&
                   memchr(host, '\0', sizeof(host)) != NULL);
    if (line[0] != '\0' && config_redis_parse(line, &r) == BRK_OK) {
        FUZZ_CHECK((r.host == NULL) != (r.unix_path == NULL));
        FUZZ_CHECK(r.db >= 0 && r.db <= CONFIG_REDIS_MAX_DB);
        config_redis_clear(&r);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *cfg = NULL;
    struct brk_errinfo info = {"", 0, -1};
    char path[256], msg[512];
    enum brk_err err;

    cfg_init();
    cfg_values(data, size);
    if (fuzz_write_file("config", "broker.conf", data, size, path,
                        sizeof(path)) != 0)
        return 0;
    err = config_load(path, &cfg, &info);
    if (err != BRK_OK) {
        FUZZ_CHECK(cfg == NULL);
        config_format_error(path, &info, msg, sizeof(msg));
        FUZZ_CHECK(memchr(msg, '\0', sizeof(msg)) != NULL);
        return 0;
    }
    FUZZ_CHECK(cfg != NULL);
    cfg_check(cfg);
    config_free(cfg);
    return 0;
}
