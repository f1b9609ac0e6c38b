/*
 * Unit tests for the broker.conf loader: every default, every key, each
 * refusal with its line, secrets never echoed, the shipped example, the
 * data-driven cases under tests/data/config and allocation failures.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "broker.h"
#include "config.h"
#include "log.h"

/* Secrets used by the inline tests; none may ever appear in a message. */
#define TOKEN      "TokSecretValue123"
#define AESKEY     "AesKeyQQQQ0123456789abcdefghijklmnopqrstuvw"
#define SECRET     "SuiteSecretValue456"
#define REDISPW    "RedisPassw0rd"
#define ENVSECRET  "EnvTokenSecret789"
#define FILESECRET "FileSecretValue321"

#define SUITE_HDR "[suite wwsuite1]\n"
#define SUITE_BODY                                                             \
    "token = " TOKEN "\n"                                                      \
    "encoding_aes_key = " AESKEY "\n"                                          \
    "secret = " SECRET "\n"
#define SUITE SUITE_HDR SUITE_BODY

static const char *const secrets[] = {
    TOKEN,     AESKEY,     SECRET,       REDISPW,
    ENVSECRET, FILESECRET, "AesKeyQQQQ", /* a prefix of the AES key */
};

static char tmpdir[PATH_MAX];  /* as created */
static char realtmp[PATH_MAX]; /* its realpath */
static char confpath[PATH_MAX];
static char srcroot[PATH_MAX]; /* repository root, "" if not found */

/*---- Helpers ----*/

static int xsnprintf(char *buf, size_t len, const char *fmt, ...)
    BRK_PRINTF(3, 4);

/* snprintf that fails the test on truncation. */
static int
xsnprintf(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < len);
    return n;
}

static int
rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void
tmp_path(char *buf, size_t len, const char *name)
{
    int n = xsnprintf(buf, len, "%s/%s", tmpdir, name);

    assert_true(n > 0 && (size_t)n < len);
}

static void
write_bytes(const char *name, const char *data, size_t len)
{
    char path[PATH_MAX];
    FILE *f;

    tmp_path(path, sizeof(path), name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void
write_file(const char *name, const char *text)
{
    write_bytes(name, text, strlen(text));
}

static void
assert_no_secret(const char *msg)
{
    size_t i;

    for (i = 0; i < nitems(secrets); i++) {
        if (strstr(msg, secrets[i]) != NULL)
            fail_msg("secret %s leaked into \"%s\"", secrets[i], msg);
    }
}

static struct config *
load_bytes_ok(const char *data, size_t len)
{
    struct config *cfg = NULL;
    struct brk_errinfo info;
    enum brk_err err;

    write_bytes("broker.conf", data, len);
    err = config_load(confpath, &cfg, &info);
    if (err != BRK_OK)
        fail_msg("unexpected error %s: %d: %s", brk_strerror(err), info.line,
                 info.msg);
    assert_non_null(cfg);
    return cfg;
}

static struct config *
load_ok(const char *text)
{
    return load_bytes_ok(text, strlen(text));
}

/* Load data, expect BRK_ERR_CONFIG at line with substr in the message. */
static void
load_bytes_fail(const char *data, size_t len, int line, const char *substr)
{
    static struct config untouched;
    struct config *cfg = &untouched;
    struct brk_errinfo info;
    enum brk_err err;

    write_bytes("broker.conf", data, len);
    err = config_load(confpath, &cfg, &info);
    assert_int_equal(err, BRK_ERR_CONFIG);
    assert_ptr_equal(cfg, &untouched); /* *out written only on success */
    assert_no_secret(info.msg);
    if (strstr(info.msg, substr) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", info.msg, substr);
    if (info.line != line)
        fail_msg("line %d, expected %d (%s)", info.line, line, info.msg);
}

static void
load_fail(const char *text, int line, const char *substr)
{
    load_bytes_fail(text, strlen(text), line, substr);
}

/* A [broker] section holding one key = value, then a valid suite. */
static void
broker_key_fail(const char *key, const char *value, const char *substr)
{
    char text[512];
    int n =
        xsnprintf(text, sizeof(text), "[broker]\n%s = %s\n" SUITE, key, value);

    assert_true(n > 0 && (size_t)n < sizeof(text));
    load_fail(text, 2, substr);
}

static struct config *
broker_key_ok(const char *key, const char *value)
{
    char text[512];
    int n =
        xsnprintf(text, sizeof(text), "[broker]\n%s = %s\n" SUITE, key, value);

    assert_true(n > 0 && (size_t)n < sizeof(text));
    return load_ok(text);
}

/* A suite section whose body is SUITE_BODY plus extra lines. */
static void
suite_extra_fail(const char *extra, const char *substr)
{
    char text[1024];
    int n = xsnprintf(text, sizeof(text), SUITE "%s", extra);

    assert_true(n > 0 && (size_t)n < sizeof(text));
    load_fail(text, 5, substr);
}

static void
expect_path(const char *got, const char *rel)
{
    char want[PATH_MAX * 2];

    xsnprintf(want, sizeof(want), "%s/%s", realtmp, rel);
    assert_string_equal(got, want);
}

static int
setup(void **state)
{
    const char *cands[] = {".", "..", "../..", "../../.."};
    char probe[PATH_MAX];
    const char *env = getenv("BROKER_SRCDIR");
    size_t i;

    (void)state;
    xsnprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config.XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    if (realpath(tmpdir, realtmp) == NULL)
        return -1;
    xsnprintf(confpath, sizeof(confpath), "%s/broker.conf", tmpdir);
    tmp_path(probe, sizeof(probe), "secrets");
    if (mkdir(probe, 0700) != 0)
        return -1;
    srcroot[0] = '\0';
    if (env != NULL) {
        xsnprintf(srcroot, sizeof(srcroot), "%s", env);
        return 0;
    }
    for (i = 0; i < nitems(cands); i++) {
        xsnprintf(probe, sizeof(probe), "%s/tests/data/config", cands[i]);
        if (access(probe, F_OK) == 0) {
            xsnprintf(srcroot, sizeof(srcroot), "%s", cands[i]);
            break;
        }
    }
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    brk_alloc_fail_at(0);
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/*---- Defaults and keys ----*/

static void
check_broker_defaults(const struct config *cfg)
{
    assert_string_equal(cfg->callback_listen, "0.0.0.0:8080");
    assert_string_equal(cfg->internal_listen, "127.0.0.1:8081");
    assert_string_equal(cfg->redis, "");
    expect_path(cfg->state_dir, "var");
    expect_path(cfg->scopes_dir, "scopes");
    assert_string_equal(cfg->wecom_api_base, "https://qyapi.weixin.qq.com");
    assert_string_equal(cfg->public_base_url, "https://broker.example.com");
    assert_string_equal(cfg->wecom_install_url,
                        "https://open.work.weixin.qq.com/3rdapp/install");
    assert_string_equal(cfg->wecom_oauth_url,
                        "https://open.weixin.qq.com/connect/oauth2/authorize");
    expect_path(cfg->master_key_file, "var/master.key");
    expect_path(cfg->index_key_file, "var/index.key");
    assert_int_equal(cfg->callback_max_skew, 300);
    assert_string_equal(cfg->key_prefix, "wb:");
    assert_int_equal(cfg->upstream_timeout_ms, 5000);
    assert_int_equal(cfg->upstream_max_body, 67108864);
    assert_int_equal(cfg->upstream_rate_per_corp, 9000);
    assert_int_equal(cfg->upstream_rate_per_corp_hour, 140000);
    assert_int_equal(cfg->upstream_rate_per_api, 36000);
    assert_int_equal(cfg->upstream_rate_per_api_hour, 1100000);
    assert_int_equal(cfg->audit_max_len, 1000000);
    assert_int_equal(cfg->audit_max_age, 86400);
    assert_int_equal(cfg->cache_max_age, 5);
    assert_int_equal(cfg->cache_max_bytes, 268435456LL);
    assert_int_equal(cfg->workers, 1);
    assert_int_equal(cfg->event_claim_idle, 60);
    assert_int_equal(cfg->event_max_attempts, 10);
    assert_int_equal(cfg->event_concurrency, 32);
    assert_string_equal(cfg->audit_file, "");
    assert_string_equal(cfg->tls_cert_file, "");
    assert_string_equal(cfg->tls_key_file, "");
    assert_int_equal(cfg->log_level, LOG_LVL_INFO);
    assert_int_equal(cfg->log_json, 1);
}

static void
test_defaults_without_broker_section(void **state)
{
    struct config *cfg;
    const struct suite_conf *sc;

    (void)state;
    cfg = load_ok(SUITE);
    check_broker_defaults(cfg);
    assert_string_equal(cfg->path, confpath);
    assert_string_equal(cfg->dir, realtmp);
    assert_int_equal(cfg->nsuites, 1);
    sc = &cfg->suites[0];
    assert_string_equal(sc->suite_id, "wwsuite1");
    assert_string_equal(sc->token, TOKEN);
    assert_string_equal(sc->encoding_aes_key, AESKEY);
    assert_string_equal(sc->secret, SECRET);
    assert_null(sc->provider_corpid);
    assert_int_equal(sc->auth_type, 0);
    assert_int_equal(sc->nredirect_allow, 0);
    assert_non_null(sc->redirect_allow);
    assert_null(sc->redirect_allow[0]);
    assert_int_equal(sc->line, 1);
    config_free(cfg);
}

static void
test_defaults_with_empty_broker_section(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok("[broker]\n" SUITE);
    check_broker_defaults(cfg);
    assert_int_equal(cfg->suites[0].line, 2);
    config_free(cfg);
}

static void
test_every_key_parsed(void **state)
{
    struct config *cfg;
    const struct suite_conf *sc;

    (void)state;
    cfg = load_ok(
        "[broker]\n"
        "callback_listen = [::1]:9443\n"
        "internal_listen = 10.0.0.5:18081\n"
        "redis = redis://:" REDISPW "@redis.internal:6380/3\n"
        "state_dir = /srv/broker/state\n"
        "scopes_dir = conf/scopes\n"
        "wecom_api_base = https://qyapi.example.net/\n"
        "public_base_url = https://cb.example.org:8443/broker\n"
        "wecom_install_url = https://install.example.org/3rdapp/install\n"
        "wecom_oauth_url = http://oauth.example.org/authorize\n"
        "master_key_file = keys/master.key\n"
        "index_key_file = /etc/broker/index.key\n"
        "callback_max_skew = 120\n"
        "key_prefix = prod:wb:\n"
        "upstream_timeout_ms = 2500\n"
        "upstream_max_body = 1048576\n"
        "upstream_rate_per_corp = 40\n"
        "upstream_rate_per_corp_hour = 41\n"
        "upstream_rate_per_api = 42\n"
        "upstream_rate_per_api_hour = 43\n"
        "audit_max_len = 5000\n"
        "audit_max_age = 86400\n"
        "cache_max_age = 0\n"
        "event_claim_idle = 30\n"
        "event_max_attempts = 3\n"
        "audit_file = audit/trail.jsonl\n"
        "tls_cert_file = tls/cert.pem\n"
        "tls_key_file = ./tls/key.pem\n"
        "log_level = debug\n"
        "log_format = text\n"
        "\n"
        "[suite wwsuiteA]\n" SUITE_BODY "provider_corpid = wwprovider01\n"
        "auth_type = 1\n"
        "redirect_allow = https://app.example.com/return, "
        "http://127.0.0.1:8081/cb\n");
    assert_string_equal(cfg->callback_listen, "[::1]:9443");
    assert_string_equal(cfg->internal_listen, "10.0.0.5:18081");
    assert_string_equal(cfg->redis,
                        "redis://:" REDISPW "@redis.internal:6380/3");
    assert_string_equal(cfg->state_dir, "/srv/broker/state");
    expect_path(cfg->scopes_dir, "conf/scopes");
    assert_string_equal(cfg->wecom_api_base, "https://qyapi.example.net");
    assert_string_equal(cfg->public_base_url,
                        "https://cb.example.org:8443/broker");
    assert_string_equal(cfg->wecom_install_url,
                        "https://install.example.org/3rdapp/install");
    assert_string_equal(cfg->wecom_oauth_url,
                        "http://oauth.example.org/authorize");
    expect_path(cfg->master_key_file, "keys/master.key");
    assert_string_equal(cfg->index_key_file, "/etc/broker/index.key");
    assert_int_equal(cfg->callback_max_skew, 120);
    assert_string_equal(cfg->key_prefix, "prod:wb:");
    assert_int_equal(cfg->upstream_timeout_ms, 2500);
    assert_int_equal(cfg->upstream_max_body, 1048576);
    assert_int_equal(cfg->upstream_rate_per_corp, 40);
    assert_int_equal(cfg->upstream_rate_per_corp_hour, 41);
    assert_int_equal(cfg->upstream_rate_per_api, 42);
    assert_int_equal(cfg->upstream_rate_per_api_hour, 43);
    assert_int_equal(cfg->audit_max_len, 5000);
    assert_int_equal(cfg->audit_max_age, 86400);
    assert_int_equal(cfg->cache_max_age, 0);
    assert_int_equal(cfg->event_claim_idle, 30);
    assert_int_equal(cfg->event_max_attempts, 3);
    expect_path(cfg->tls_cert_file, "tls/cert.pem");
    expect_path(cfg->tls_key_file, "tls/key.pem");
    expect_path(cfg->audit_file, "audit/trail.jsonl");
    assert_int_equal(cfg->log_level, LOG_LVL_DEBUG);
    assert_int_equal(cfg->log_json, 0);
    assert_int_equal(cfg->nsuites, 1);
    sc = &cfg->suites[0];
    assert_string_equal(sc->suite_id, "wwsuiteA");
    assert_int_equal(sc->line, 32);
    assert_string_equal(sc->provider_corpid, "wwprovider01");
    assert_int_equal(sc->auth_type, 1);
    assert_int_equal(sc->nredirect_allow, 2);
    assert_string_equal(sc->redirect_allow[0],
                        "https://app.example.com/return");
    assert_string_equal(sc->redirect_allow[1], "http://127.0.0.1:8081/cb");
    assert_null(sc->redirect_allow[2]);
    config_free(cfg);
}

static void
test_log_levels(void **state)
{
    static const struct {
        const char *name;
        int level;
    } lv[] = {{"error", LOG_LVL_ERROR},
              {"warn", LOG_LVL_WARN},
              {"info", LOG_LVL_INFO},
              {"debug", LOG_LVL_DEBUG}};
    struct config *cfg;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(lv); i++) {
        cfg = broker_key_ok("log_level", lv[i].name);
        assert_int_equal(cfg->log_level, lv[i].level);
        config_free(cfg);
    }
}

static void
test_bad_log_level(void **state)
{
    (void)state;
    broker_key_fail("log_level", "verbose", "log_level: must be error");
    broker_key_fail("log_level", "INFO", "log_level: must be error");
}

static void
test_bad_log_format(void **state)
{
    (void)state;
    broker_key_fail("log_format", "xml", "log_format: must be json or text");
}

static void
test_several_suites_and_find(void **state)
{
    struct config *cfg;
    const struct suite_conf *sc;

    (void)state;
    cfg = load_ok(SUITE "\n[suite ww-second_2]\n" SUITE_BODY);
    assert_int_equal(cfg->nsuites, 2);
    sc = config_find_suite(cfg, "ww-second_2");
    assert_non_null(sc);
    assert_ptr_equal(sc, &cfg->suites[1]);
    assert_int_equal(sc->line, 6);
    assert_ptr_equal(config_find_suite(cfg, "wwsuite1"), &cfg->suites[0]);
    assert_null(config_find_suite(cfg, "wwnone"));
    assert_null(config_find_suite(cfg, "wwsuite"));
    assert_null(config_find_suite(NULL, "wwsuite1"));
    config_free(cfg);
}

static void
test_suite_id_64_chars_kept_whole(void **state)
{
    /* inih truncates section names at 49 bytes; the loader must not */
    const char *id =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
    char text[512];
    struct config *cfg;

    (void)state;
    assert_int_equal(strlen(id), 64);
    xsnprintf(text, sizeof(text), "[suite %s]\n" SUITE_BODY, id);
    cfg = load_ok(text);
    assert_string_equal(cfg->suites[0].suite_id, id);
    assert_string_equal(cfg->suites[0].token, TOKEN);
    config_free(cfg);
}

static void
test_suite_id_65_chars_rejected(void **state)
{
    (void)state;
    load_fail("[suite "
              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
              "x]\n" SUITE_BODY,
              1, "bad section [suite ID]");
}

static void
test_bad_suite_id(void **state)
{
    (void)state;
    load_fail("[suite ww.bad]\n" SUITE_BODY, 1, "bad section [suite ID]");
    load_fail("[suite a b]\n" SUITE_BODY, 1, "bad section [suite ID]");
    load_fail("[suite]\n" SUITE_BODY, 1, "bad section [suite ID]");
}

static void
test_section_spacing_tolerated(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok("[ broker ] ; comment\n[ suite \twwsuite1 ]\n" SUITE_BODY);
    assert_string_equal(cfg->suites[0].suite_id, "wwsuite1");
    config_free(cfg);
}

/*---- Structure errors ----*/

static void
test_unknown_key_broker(void **state)
{
    (void)state;
    load_fail("[broker]\nlog_levle = info\n" SUITE, 2,
              "unknown key 'log_levle' in [broker]");
}

static void
test_unknown_key_suite(void **state)
{
    (void)state;
    suite_extra_fail("tokn = " TOKEN "\n",
                     "unknown key 'tokn' in [suite wwsuite1]");
}

static void
test_suite_key_in_broker_rejected(void **state)
{
    (void)state;
    load_fail("[broker]\ntoken = " TOKEN "\n" SUITE, 2,
              "unknown key 'token' in [broker]");
}

static void
test_odd_key_name_not_echoed(void **state)
{
    /* "token abc=def": a mistyped secret must not come back in the msg */
    (void)state;
    load_fail(SUITE "token " SECRET "=x\n", 5, "invalid key name");
}

static void
test_unknown_section(void **state)
{
    (void)state;
    load_fail(SUITE "[server]\nport = 1\n", 5, "unknown section [server]");
}

static void
test_missing_bracket(void **state)
{
    (void)state;
    load_fail("[broker\n" SUITE, 1, "without ']'");
}

static void
test_text_after_section(void **state)
{
    (void)state;
    load_fail("[broker] x\n" SUITE, 1, "text after ']'");
}

static void
test_key_before_section(void **state)
{
    (void)state;
    load_fail("log_level = info\n" SUITE, 1, "key before any section");
}

static void
test_duplicate_key(void **state)
{
    (void)state;
    load_fail("[broker]\nlog_level = info\n\nlog_level = debug\n" SUITE, 4,
              "duplicate key 'log_level' (first set on line 2)");
}

static void
test_duplicate_key_in_suite(void **state)
{
    (void)state;
    suite_extra_fail("secret = other-" SECRET "\n",
                     "duplicate key 'secret' (first set on line 4)");
}

static void
test_duplicate_suite(void **state)
{
    (void)state;
    load_fail(SUITE "[suite wwsuite1]\n" SUITE_BODY, 5,
              "duplicate section [suite wwsuite1] (first on line 1)");
}

static void
test_two_broker_sections(void **state)
{
    (void)state;
    load_fail("[broker]\nlog_level = info\n" SUITE "[broker]\n", 7,
              "duplicate section [broker] (first on line 1)");
}

static void
test_no_suite(void **state)
{
    (void)state;
    load_fail("[broker]\nlog_level = info\n", 0, "no [suite ...] section");
    load_fail("", 0, "no [suite ...] section");
}

static void
test_missing_token(void **state)
{
    (void)state;
    load_fail("[broker]\n[suite wwsuite1]\nencoding_aes_key = " AESKEY
              "\nsecret = " SECRET "\n",
              2, "[suite wwsuite1]: missing token (or token_file, token_env)");
}

static void
test_missing_aes_key(void **state)
{
    (void)state;
    load_fail(SUITE_HDR "token = " TOKEN "\nsecret = " SECRET
                        "\n[suite wwother]\n" SUITE_BODY,
              1, "[suite wwsuite1]: missing encoding_aes_key");
}

static void
test_missing_secret(void **state)
{
    (void)state;
    load_fail(SUITE_HDR "token = " TOKEN "\nencoding_aes_key = " AESKEY "\n", 1,
              "[suite wwsuite1]: missing secret");
}

static void
test_empty_value_rejected(void **state)
{
    (void)state;
    broker_key_fail("state_dir", "", "state_dir: empty value");
    broker_key_fail("callback_max_skew", "", "callback_max_skew: empty value");
    broker_key_fail("public_base_url", "", "public_base_url: empty value");
    load_fail(SUITE_HDR "token =\nencoding_aes_key = " AESKEY
                        "\nsecret = " SECRET "\n",
              2, "token: empty value");
}

static void
test_empty_redis_is_embedded(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = broker_key_ok("redis", "");
    assert_string_equal(cfg->redis, "");
    config_free(cfg);
}

/*---- Lines ----*/

static void
test_long_line_rejected(void **state)
{
    size_t n = CONFIG_MAX_LINE + 1, hl = strlen("[broker]\n; ");
    char *text = brk_malloc(hl + n + sizeof(SUITE) + 2);

    (void)state;
    assert_non_null(text);
    memcpy(text, "[broker]\n; ", hl);
    memset(text + hl, 'c', n - 2);
    memcpy(text + hl + n - 2, "\n" SUITE, sizeof(SUITE) + 1);
    load_fail(text, 2, "line too long (max 65536 bytes)");
    brk_free(text);
}

static void
test_line_at_bound_accepted(void **state)
{
    size_t n = CONFIG_MAX_LINE, hl = strlen("[broker]\n; ");
    char *text = brk_malloc(hl + n + sizeof(SUITE) + 2);
    struct config *cfg;

    (void)state;
    assert_non_null(text);
    memcpy(text, "[broker]\n; ", hl);
    memset(text + hl, 'c', n - 2);
    memcpy(text + hl + n - 2, "\r\n" SUITE, sizeof(SUITE) + 2);
    cfg = load_ok(text);
    config_free(cfg);
    brk_free(text);
}

static void
test_long_redirect_allow_accepted(void **state)
{
    /* 250 entries of 23 bytes: a 5000+ character line, untruncated */
    char *text = brk_malloc(8192);
    size_t o, i;
    struct config *cfg;

    (void)state;
    assert_non_null(text);
    o = (size_t)xsnprintf(text, 8192, SUITE "redirect_allow = ");
    for (i = 0; i < 250; i++)
        o += (size_t)xsnprintf(text + o, 8192 - o, "%shttps://h%03zu.example/p",
                               i ? "," : "", i);
    xsnprintf(text + o, 8192 - o, "\n");
    assert_true(o > 5000);
    cfg = load_ok(text);
    assert_int_equal(cfg->suites[0].nredirect_allow, 250);
    assert_string_equal(cfg->suites[0].redirect_allow[0],
                        "https://h000.example/p");
    assert_string_equal(cfg->suites[0].redirect_allow[249],
                        "https://h249.example/p");
    assert_null(cfg->suites[0].redirect_allow[250]);
    config_free(cfg);
    brk_free(text);
}

static void
test_indented_continuation_rejected(void **state)
{
    (void)state;
    /* inih would read the second line as a key "https" */
    load_fail(SUITE "redirect_allow = https://a.example/\n"
                    "    https://b.example/\n",
              6, "indented line: continuation lines are not supported");
    load_fail(SUITE "redirect_allow = https://a.example/,\n"
                    "\thttps://b.example/\n",
              5, "redirect_allow: entry 2 is empty");
}

static void
test_indented_key_rejected(void **state)
{
    (void)state;
    load_fail("[broker]\n  log_level = debug\n" SUITE, 2, "indented line");
}

static void
test_indented_comment_and_blank_ok(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok("[broker]\n   ; note\n\t# note\n   \n" SUITE);
    config_free(cfg);
}

static void
test_colon_separator_rejected(void **state)
{
    (void)state;
    load_fail("[broker]\nlog_level: debug\n" SUITE, 2,
              "expected 'key = value'");
}

static void
test_line_without_equals_rejected(void **state)
{
    (void)state;
    load_fail("[broker]\nlog_level\n" SUITE, 2, "expected 'key = value'");
}

static void
test_control_character_rejected(void **state)
{
    (void)state;
    load_fail("[broker]\nlog_level = in\x01"
              "fo\n" SUITE,
              2, "control character");
    /* a bare CR inside a line is not a line break */
    load_fail("[broker]\nlog_level = info\rkey_prefix = x\n" SUITE, 2,
              "control character");
}

static void
test_nul_byte_rejected(void **state)
{
    static const char text[] = "[broker]\nlog_level = info\0garbage\n" SUITE;

    (void)state;
    load_bytes_fail(text, sizeof(text) - 1, 2, "control character");
}

static void
test_crlf_file(void **state)
{
    struct config *cfg;

    (void)state;
    cfg =
        load_ok("[broker]\r\nlog_level = warn\r\nkey_prefix = crlf:\r\n"
                "[suite wwsuite1]\r\ntoken = " TOKEN
                "\r\nencoding_aes_key = " AESKEY "\r\nsecret = " SECRET "\r\n");
    assert_int_equal(cfg->log_level, LOG_LVL_WARN);
    assert_string_equal(cfg->key_prefix, "crlf:");
    assert_string_equal(cfg->suites[0].token, TOKEN);
    assert_string_equal(cfg->suites[0].secret, SECRET);
    assert_int_equal(cfg->suites[0].line, 4);
    config_free(cfg);
}

static void
test_crlf_line_numbers(void **state)
{
    (void)state;
    load_fail("[broker]\r\n\r\nlog_level = loud\r\n" SUITE, 3,
              "log_level: must be");
}

static void
test_utf8_bom(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok("\xEF\xBB\xBF[broker]\nlog_level = error\n" SUITE);
    assert_int_equal(cfg->log_level, LOG_LVL_ERROR);
    config_free(cfg);
}

static void
test_utf8_bom_only_first_line(void **state)
{
    (void)state;
    load_fail("[broker]\n\xEF\xBB\xBFlog_level = error\n" SUITE, 2,
              "invalid key name");
}

static void
test_no_final_newline(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok(SUITE "auth_type = 1");
    assert_int_equal(cfg->suites[0].auth_type, 1);
    config_free(cfg);
}

static void
test_inline_comment_cuts_secret(void **state)
{
    /* documented: a secret holding " ;" must come from _file or _env */
    struct config *cfg;

    (void)state;
    cfg = load_ok(SUITE_HDR "token = abc ;def\nencoding_aes_key = " AESKEY
                            "\nsecret = " SECRET " x\t; y\n");
    assert_string_equal(cfg->suites[0].token, "abc");
    assert_string_equal(cfg->suites[0].secret, SECRET " x");
    config_free(cfg);
}

static void
test_semicolon_without_space_kept(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok(SUITE_HDR "token = abc;def#ghi\nencoding_aes_key = " AESKEY
                            "\nsecret = " SECRET "\n");
    assert_string_equal(cfg->suites[0].token, "abc;def#ghi");
    config_free(cfg);
}

static void
test_inih_globals_reset_each_load(void **state)
{
    struct config *cfg;

    (void)state;
    ini_max_line = 20;
    ini_use_stack = true;
    ini_allow_multiline = true;
    ini_allow_inline_comments = false;
    cfg = load_ok(SUITE_HDR
                  "token = abc ;cut\nencoding_aes_key = " AESKEY
                  "\nsecret = " SECRET "\n"
                  "redirect_allow = https://long.example.com/a/b/c/d\n");
    assert_string_equal(cfg->suites[0].token, "abc");
    assert_string_equal(cfg->suites[0].redirect_allow[0],
                        "https://long.example.com/a/b/c/d");
    config_free(cfg);
}

/*---- Numbers ----*/

static void
test_number_not_integer(void **state)
{
    (void)state;
    broker_key_fail("callback_max_skew", "12x",
                    "callback_max_skew: not an integer (allowed 1..86400)");
    broker_key_fail("upstream_timeout_ms", "0x100", "not an integer");
    broker_key_fail("event_max_attempts", "+5", "not an integer");
    broker_key_fail("event_max_attempts", "5.0", "not an integer");
}

static void
test_number_empty(void **state)
{
    (void)state;
    broker_key_fail("upstream_max_body", "", "upstream_max_body: empty value");
}

static void
test_number_negative(void **state)
{
    (void)state;
    broker_key_fail("cache_max_age", "-1",
                    "cache_max_age: out of range (allowed 0..3600)");
}

static void
test_number_overflow(void **state)
{
    (void)state;
    broker_key_fail("audit_max_len", "99999999999999999999",
                    "audit_max_len: out of range (allowed 1000..1000000000)");
}

static void
test_number_bounds(void **state)
{
    static const struct {
        const char *key;
        const char *min, *max, *below, *above;
    } b[] = {
        {"callback_max_skew", "1", "86400", "0", "86401"},
        {"upstream_timeout_ms", "100", "600000", "99", "600001"},
        {"upstream_max_body", "1024", "1073741824", "1023", "1073741825"},
        {"upstream_rate_per_corp", "1", "1000000", "0", "1000001"},
        {"upstream_rate_per_corp_hour", "1", "100000000", "0", "100000001"},
        {"upstream_rate_per_api", "1", "10000000", "0", "10000001"},
        {"upstream_rate_per_api_hour", "1", "1000000000", "0", "1000000001"},
        {"audit_max_len", "1000", "1000000000", "999", "1000000001"},
        {"audit_max_age", "60", "315360000", "59", "315360001"},
        {"cache_max_age", "0", "3600", "-1", "3601"},
        {"cache_max_bytes", "1048576", "1099511627776", "1048575",
         "1099511627777"},
        {"workers", "1", "64", "0", "65"},
        {"event_claim_idle", "1", "86400", "0", "86401"},
        {"event_max_attempts", "1", "1000", "0", "1001"},
    };
    struct config *cfg;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(b); i++) {
        cfg = broker_key_ok(b[i].key, b[i].min);
        config_free(cfg);
        cfg = broker_key_ok(b[i].key, b[i].max);
        config_free(cfg);
        broker_key_fail(b[i].key, b[i].below, "out of range");
        broker_key_fail(b[i].key, b[i].above, "out of range");
    }
    cfg = broker_key_ok("upstream_max_body", "1073741824");
    assert_int_equal(cfg->upstream_max_body, 1073741824LL);
    config_free(cfg);
}

static void
test_auth_type(void **state)
{
    (void)state;
    suite_extra_fail("auth_type = 2\n",
                     "auth_type: out of range (allowed 0..1)");
    suite_extra_fail("auth_type = test\n", "auth_type: not an integer");
}

/*---- Listen addresses ----*/

static void
test_parse_listen_ok(void **state)
{
    char host[64];
    int port = -1;

    (void)state;
    assert_int_equal(
        config_parse_listen("127.0.0.1:8081", host, sizeof(host), &port, 0),
        BRK_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8081);
    assert_int_equal(
        config_parse_listen("[::1]:8080", host, sizeof(host), &port, 0),
        BRK_OK);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 8080);
    assert_int_equal(config_parse_listen("broker-1.internal:65535", host,
                                         sizeof(host), &port, 0),
                     BRK_OK);
    assert_string_equal(host, "broker-1.internal");
    assert_int_equal(port, 65535);
    assert_int_equal(
        config_parse_listen("127.0.0.1:0", host, sizeof(host), &port, 1),
        BRK_OK);
    assert_int_equal(port, 0);
}

static void
test_parse_listen_bad(void **state)
{
    static const char *const bad[] = {
        ":80",         "host:",   "host:0",    "host:70000", "[::1:80",
        "::1:80",      "host",    "host:-1",   "host:+80",   "host:8o",
        "[::1]",       "[::1]80", "[nope]:80", "ho st:80",   "",
        "host:123456", "[]:80",   "a:b:80",
    };
    char host[64] = "untouched";
    int port = -7;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(bad); i++) {
        if (config_parse_listen(bad[i], host, sizeof(host), &port, 0) !=
            BRK_ERR_INVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_string_equal(host, "untouched");
    assert_int_equal(port, -7);
    assert_int_equal(config_parse_listen(NULL, host, sizeof(host), &port, 0),
                     BRK_ERR_INVAL);
    /* host longer than the buffer */
    assert_int_equal(config_parse_listen("abcdefgh:80", host, 8, &port, 0),
                     BRK_ERR_INVAL);
}

static void
test_bad_listen_in_file(void **state)
{
    static const char *const bad[] = {":80", "host:", "host:0", "host:70000",
                                      "[::1:80"};
    size_t i;

    (void)state;
    for (i = 0; i < nitems(bad); i++) {
        broker_key_fail("callback_listen", bad[i],
                        "callback_listen: expected host:port");
        broker_key_fail("internal_listen", bad[i],
                        "internal_listen: expected host:port");
    }
}

/*---- Secrets ----*/

static void
test_bad_aes_key_length(void **state)
{
    (void)state;
    load_fail(SUITE_HDR "token = " TOKEN "\nencoding_aes_key = " AESKEY
                        "x\nsecret = " SECRET "\n",
              3,
              "encoding_aes_key: must be exactly 43 characters of [A-Za-z0-9] "
              "(got 44)");
    load_fail(SUITE_HDR "token = " TOKEN
                        "\nencoding_aes_key = AesKeyQQQQ0123456789abcdefghij"
                        "klmnopqrstuv\nsecret = " SECRET "\n",
              3, "(got 42)");
}

static void
test_bad_aes_key_char(void **state)
{
    (void)state;
    load_fail(SUITE_HDR "token = " TOKEN
                        "\nencoding_aes_key = AesKeyQQQQ0123456789abcdefghij"
                        "klmnopqrstuv+\nsecret = " SECRET "\n",
              3, "(character 43 is not)");
}

static void
test_two_forms_of_secret(void **state)
{
    (void)state;
    write_file("secrets/tok2", FILESECRET "\n");
    suite_extra_fail("token_file = secrets/tok2\n",
                     "token_file: token already set on line 2 (use only one "
                     "of token, token_file, token_env)");
}

static void
test_two_forms_file_then_env(void **state)
{
    (void)state;
    write_file("secrets/sec3", FILESECRET "\n");
    setenv("WB_TEST_SECRET3", ENVSECRET, 1);
    load_fail(SUITE_HDR "token = " TOKEN "\nencoding_aes_key = " AESKEY
                        "\nsecret_file = secrets/sec3\n"
                        "secret_env = WB_TEST_SECRET3\n",
              5, "secret_env: secret_file already set on line 4");
    unsetenv("WB_TEST_SECRET3");
}

static void
test_duplicate_file_form(void **state)
{
    (void)state;
    write_file("secrets/tok4", FILESECRET "\n");
    load_fail(SUITE_HDR "token_file = secrets/tok4\n"
                        "token_file = secrets/tok4\n",
              3, "duplicate key 'token_file' (first set on line 2)");
}

static void
test_file_relative_path(void **state)
{
    struct config *cfg;

    (void)state;
    write_file("secrets/token", FILESECRET "\n");
    write_file("secrets/aes", AESKEY "\r\n");
    write_file("secrets/secret", "x;y ;z #w");
    cfg =
        load_ok(SUITE_HDR "token_file = secrets/token\n"
                          "encoding_aes_key_file = ./secrets/aes\n"
                          "secret_file = secrets/secret ; trailing comment\n");
    assert_string_equal(cfg->suites[0].token, FILESECRET);
    assert_string_equal(cfg->suites[0].encoding_aes_key, AESKEY);
    assert_string_equal(cfg->suites[0].secret, "x;y ;z #w");
    config_free(cfg);
}

static void
test_file_absolute_path(void **state)
{
    char text[1024], path[PATH_MAX];
    struct config *cfg;

    (void)state;
    write_file("secrets/abs", FILESECRET "\n");
    tmp_path(path, sizeof(path), "secrets/abs");
    xsnprintf(text, sizeof(text),
              SUITE_HDR "token_file = %s\n"
                        "encoding_aes_key = " AESKEY "\nsecret = " SECRET "\n",
              path);
    cfg = load_ok(text);
    assert_string_equal(cfg->suites[0].token, FILESECRET);
    config_free(cfg);
}

static void
test_file_strips_one_newline_only(void **state)
{
    (void)state;
    write_file("secrets/twonl", FILESECRET "\n\n");
    load_fail(SUITE_HDR "token_file = secrets/twonl\n"
                        "encoding_aes_key = " AESKEY "\nsecret = " SECRET "\n",
              2,
              "token_file: value longer than 65536 bytes or holding a "
              "control character");
}

static void
test_file_missing(void **state)
{
    char want[PATH_MAX + 64];

    (void)state;
    xsnprintf(want, sizeof(want),
              "token_file: cannot read %s/secrets/nope: No "
              "such file or directory",
              realtmp);
    load_fail(SUITE_HDR "token_file = secrets/nope\n"
                        "encoding_aes_key = " AESKEY "\nsecret = " SECRET "\n",
              2, want);
}

static void
test_file_empty(void **state)
{
    (void)state;
    write_file("secrets/empty", "");
    write_file("secrets/newline", "\n");
    load_fail(SUITE_HDR "token_file = secrets/empty\n"
                        "encoding_aes_key = " AESKEY "\nsecret = " SECRET "\n",
              2, "is empty");
    load_fail(SUITE_HDR "token_file = secrets/newline\n"
                        "encoding_aes_key = " AESKEY "\nsecret = " SECRET "\n",
              2, "is empty");
}

static void
test_file_too_big(void **state)
{
    char *big = brk_malloc(CONFIG_MAX_SECRET_FILE + 1);

    (void)state;
    assert_non_null(big);
    memset(big, 'a', CONFIG_MAX_SECRET_FILE + 1);
    write_bytes("secrets/big", big, CONFIG_MAX_SECRET_FILE + 1);
    brk_free(big);
    load_fail(SUITE_HDR "secret_file = secrets/big\n"
                        "encoding_aes_key = " AESKEY "\ntoken = " TOKEN "\n",
              2, "is larger than 65536 bytes");
}

static void
test_file_at_size_limit_ok(void **state)
{
    char *big = brk_malloc(CONFIG_MAX_SECRET_FILE);
    struct config *cfg;

    (void)state;
    assert_non_null(big);
    memset(big, 'a', CONFIG_MAX_SECRET_FILE - 1);
    big[CONFIG_MAX_SECRET_FILE - 1] = '\n';
    write_bytes("secrets/limit", big, CONFIG_MAX_SECRET_FILE);
    brk_free(big);
    cfg =
        load_ok(SUITE_HDR "secret_file = secrets/limit\n"
                          "encoding_aes_key = " AESKEY "\ntoken = " TOKEN "\n");
    assert_int_equal(strlen(cfg->suites[0].secret), CONFIG_MAX_SECRET_FILE - 1);
    config_free(cfg);
}

static void
test_file_is_directory(void **state)
{
    (void)state;
    load_fail(SUITE_HDR "token_file = secrets\n"
                        "encoding_aes_key = " AESKEY "\nsecret = " SECRET "\n",
              2, "is not a regular file");
}

static void
test_file_with_nul_byte(void **state)
{
    (void)state;
    write_bytes("secrets/nul", "abc\0def\n", 8);
    load_fail(SUITE_HDR "token_file = secrets/nul\n"
                        "encoding_aes_key = " AESKEY "\nsecret = " SECRET "\n",
              2, "holds a NUL byte");
}

static void
test_file_empty_path(void **state)
{
    (void)state;
    load_fail(SUITE_HDR "token_file =\n"
                        "encoding_aes_key = " AESKEY "\nsecret = " SECRET "\n",
              2, "token_file: empty value");
}

static void
test_env_set(void **state)
{
    struct config *cfg;

    (void)state;
    setenv("WB_TEST_TOKEN", ENVSECRET, 1);
    cfg = load_ok(SUITE_HDR "token_env = WB_TEST_TOKEN\n"
                            "encoding_aes_key = " AESKEY "\nsecret = " SECRET
                            "\n");
    unsetenv("WB_TEST_TOKEN");
    assert_string_equal(cfg->suites[0].token, ENVSECRET);
    config_free(cfg);
}

static void
test_env_unset(void **state)
{
    (void)state;
    unsetenv("WB_TEST_UNSET");
    load_fail(SUITE_HDR "token_env = WB_TEST_UNSET\n"
                        "encoding_aes_key = " AESKEY "\nsecret = " SECRET "\n",
              2, "token_env: environment variable WB_TEST_UNSET is not set");
}

static void
test_env_empty(void **state)
{
    (void)state;
    setenv("WB_TEST_EMPTY", "", 1);
    load_fail(SUITE_HDR "token_env = WB_TEST_EMPTY\n"
                        "encoding_aes_key = " AESKEY "\nsecret = " SECRET "\n",
              2, "token_env: environment variable WB_TEST_EMPTY is empty");
    unsetenv("WB_TEST_EMPTY");
}

static void
test_env_bad_aes_key_not_echoed(void **state)
{
    (void)state;
    setenv("WB_TEST_AES", ENVSECRET, 1);
    load_fail(SUITE_HDR "token = " TOKEN "\nencoding_aes_key_env = WB_TEST_AES"
                        "\nsecret = " SECRET "\n",
              3, "encoding_aes_key_env: must be exactly 43 characters");
    unsetenv("WB_TEST_AES");
}

static void
test_env_bad_name(void **state)
{
    (void)state;
    load_fail(SUITE_HDR "token_env = 1BAD-NAME\n"
                        "encoding_aes_key = " AESKEY "\nsecret = " SECRET "\n",
              2, "token_env: not an environment variable name");
}

static void
test_env_form_unknown_for_plain_key(void **state)
{
    (void)state;
    suite_extra_fail("auth_type_env = X\n", "unknown key 'auth_type_env'");
    broker_key_fail("log_level_file", "x", "unknown key 'log_level_file'");
}

/*---- Redis ----*/

static void
test_redis_forms(void **state)
{
    struct config *cfg;

    (void)state;
    write_file("secrets/redis", "redis://:" REDISPW "@10.1.2.3:6379/1\n");
    cfg = broker_key_ok("redis_file", "secrets/redis");
    assert_string_equal(cfg->redis, "redis://:" REDISPW "@10.1.2.3:6379/1");
    config_free(cfg);
    setenv("WB_TEST_REDIS", "unix:///run/redis/redis.sock", 1);
    cfg = broker_key_ok("redis_env", "WB_TEST_REDIS");
    unsetenv("WB_TEST_REDIS");
    assert_string_equal(cfg->redis, "unix:///run/redis/redis.sock");
    config_free(cfg);
}

static void
test_redis_bad_not_echoed(void **state)
{
    static const char *const bad[] = {
        "redis://:" REDISPW "@host:0/1",       /* port 0 */
        "redis://:" REDISPW "@host:65536",     /* port too big */
        "redis://" REDISPW "@host:6379",       /* userinfo without ':' */
        "redis://:@host:6379",                 /* empty password */
        "redis://:" REDISPW "@x@host:6379",    /* two '@' */
        "redis://:" REDISPW "@host:6379/x",    /* db not a number */
        "redis://:" REDISPW "@host:6379/1001", /* db out of range */
        "redis://:" REDISPW "@[::1]:6379",     /* the store takes no v6 */
        "redis://:" REDISPW "@:6379",          /* no host */
        "redis://:pa/" REDISPW "@host:6379",   /* '/' ends the host */
        "http://:" REDISPW "@host:6379",       /* scheme */
        "unix://relative/" REDISPW,            /* not absolute */
        "unix:///",                            /* no path */
        "unix:///tmp/" REDISPW "?db=x",        /* bad db */
        "unix:///tmp/" REDISPW "?timeout=1",   /* unknown option */
    };
    size_t i;

    (void)state;
    for (i = 0; i < nitems(bad); i++)
        broker_key_fail("redis", bad[i], "redis: expected redis://");
}

static void
test_redis_parse(void **state)
{
    struct config_redis r;

    (void)state;
    memset(&r, 0x5a, sizeof(r));
    assert_int_equal(
        config_redis_parse("redis://app:p:ss@h.example:6380/7", &r), BRK_OK);
    assert_string_equal(r.host, "h.example");
    assert_int_equal(r.port, 6380);
    assert_int_equal(r.db, 7);
    assert_string_equal(r.user, "app");
    assert_string_equal(r.password, "p:ss");
    assert_null(r.unix_path);
    config_redis_clear(&r);
    assert_null(r.host);

    assert_int_equal(config_redis_parse("redis://10.0.0.1", &r), BRK_OK);
    assert_string_equal(r.host, "10.0.0.1");
    assert_int_equal(r.port, 6379);
    assert_int_equal(r.db, 0);
    assert_null(r.user);
    assert_null(r.password);
    config_redis_clear(&r);

    assert_int_equal(config_redis_parse("redis://:pw@h/", &r), BRK_OK);
    assert_int_equal(r.port, 6379);
    assert_null(r.user);
    assert_string_equal(r.password, "pw");
    config_redis_clear(&r);

    assert_int_equal(config_redis_parse("unix:///var/run/r.sock?db=3", &r),
                     BRK_OK);
    assert_null(r.host);
    assert_int_equal(r.port, 0);
    assert_string_equal(r.unix_path, "/var/run/r.sock");
    assert_int_equal(r.db, 3);
    config_redis_clear(&r);

    assert_int_equal(config_redis_parse("redis://h:1/99999999999", &r),
                     BRK_ERR_INVAL);
    assert_int_equal(config_redis_parse("", &r), BRK_ERR_INVAL);
    assert_int_equal(config_redis_parse(NULL, &r), BRK_ERR_INVAL);
    config_redis_clear(NULL);
}

/*---- URLs, prefixes, paths ----*/

static void
test_url_keys_bad(void **state)
{
    (void)state;
    broker_key_fail("public_base_url", "broker.example.com",
                    "public_base_url: must start with http:// or https://");
    broker_key_fail("public_base_url", "ftp://broker.example.com",
                    "must start with http");
    broker_key_fail("wecom_api_base", "https://user@qyapi.example",
                    "wecom_api_base: must not contain userinfo");
    broker_key_fail("wecom_api_base", "https://qyapi.example/#x",
                    "must not contain a fragment");
    broker_key_fail("wecom_install_url", "https://a.example/x?y=1",
                    "wecom_install_url: must not contain a query");
    broker_key_fail("wecom_oauth_url", "https://a.example\\@b.example/",
                    "must not contain a backslash");
    broker_key_fail("wecom_oauth_url", "https:///path", "needs a valid host");
    broker_key_fail("wecom_oauth_url", "https://a.example:99999/",
                    "needs a valid host");
    broker_key_fail("wecom_oauth_url", "https://a.example/\xC3\xA9",
                    "printable ASCII");
}

static void
test_base_url_trailing_slash_removed(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = broker_key_ok("public_base_url", "http://127.0.0.1:8080//");
    assert_string_equal(cfg->public_base_url, "http://127.0.0.1:8080");
    config_free(cfg);
    cfg = broker_key_ok("wecom_oauth_url", "https://o.example/auth/");
    assert_string_equal(cfg->wecom_oauth_url, "https://o.example/auth/");
    config_free(cfg);
}

static void
test_redirect_allow_bad(void **state)
{
    (void)state;
    suite_extra_fail("redirect_allow = https://a.example/, javascript:x\n",
                     "redirect_allow: entry 2 must start with http");
    suite_extra_fail("redirect_allow = https://u:p@a.example/\n",
                     "redirect_allow: entry 1 must not contain userinfo");
    suite_extra_fail("redirect_allow = https://a.example\\b/\n",
                     "entry 1 must not contain a backslash");
    suite_extra_fail("redirect_allow = https://a.example/#f\n",
                     "entry 1 must not contain a fragment");
    suite_extra_fail("redirect_allow = https://a.example/?q\n",
                     "entry 1 must not contain a query");
    suite_extra_fail("redirect_allow = https:///x\n",
                     "entry 1 needs a valid host");
    suite_extra_fail("redirect_allow = https://a.example/,,https://b/\n",
                     "redirect_allow: entry 2 is empty");
    suite_extra_fail("redirect_allow = https://a.example/,\n",
                     "redirect_allow: entry 2 is empty");
}

static void
test_redirect_allow_trimmed(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok(SUITE "redirect_allow = \thttps://a.example/x ,"
                        "http://[::1]:8081/y\t, https://b.example\n");
    assert_int_equal(cfg->suites[0].nredirect_allow, 3);
    assert_string_equal(cfg->suites[0].redirect_allow[0],
                        "https://a.example/x");
    assert_string_equal(cfg->suites[0].redirect_allow[1],
                        "http://[::1]:8081/y");
    assert_string_equal(cfg->suites[0].redirect_allow[2], "https://b.example");
    config_free(cfg);
}

static void
test_provider_corpid(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = load_ok(SUITE "provider_corpid =\n");
    assert_null(cfg->suites[0].provider_corpid);
    config_free(cfg);
    suite_extra_fail("provider_corpid = ww bad\n",
                     "provider_corpid: must be 1-64 characters");
}

static void
test_key_prefix_bad(void **state)
{
    (void)state;
    broker_key_fail("key_prefix", "wb {x}", "key_prefix: must be 1-64");
    broker_key_fail("key_prefix", "{wb}", "key_prefix: must be 1-64");
    broker_key_fail("key_prefix", "", "key_prefix: empty value");
    broker_key_fail("key_prefix",
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    "aaaaaaaa",
                    "key_prefix: must be 1-64");
}

static void
test_tls_pair(void **state)
{
    struct config *cfg;

    (void)state;
    load_fail("[broker]\nlog_level = info\ntls_cert_file = c.pem\n" SUITE, 3,
              "tls_cert_file and tls_key_file must be set together");
    load_fail("[broker]\ntls_cert_file =\ntls_key_file = k.pem\n" SUITE, 3,
              "must be set together");
    cfg = load_ok("[broker]\ntls_cert_file = /etc/c.pem\n"
                  "tls_key_file = k.pem\n" SUITE);
    assert_string_equal(cfg->tls_cert_file, "/etc/c.pem");
    expect_path(cfg->tls_key_file, "k.pem");
    config_free(cfg);
}

static void
test_relative_paths_use_config_dir(void **state)
{
    struct config *cfg = NULL;
    struct brk_errinfo info;
    char cwd[PATH_MAX], text[256];

    (void)state;
    /* load through a relative path from another working directory */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    xsnprintf(text, sizeof(text),
              "[broker]\nstate_dir = .\n"
              "scopes_dir = ../%s\n" SUITE,
              strrchr(realtmp, '/') + 1);
    write_file("broker.conf", text);
    assert_int_equal(chdir(tmpdir), 0);
    assert_int_equal(config_load("broker.conf", &cfg, &info), BRK_OK);
    assert_int_equal(chdir(cwd), 0);
    assert_string_equal(cfg->path, "broker.conf");
    assert_string_equal(cfg->dir, realtmp);
    assert_string_equal(cfg->state_dir, realtmp);
    assert_true(strncmp(cfg->scopes_dir, realtmp, strlen(realtmp)) == 0);
    config_free(cfg);
}

/*---- Errors and formatting ----*/

static void
test_error_format(void **state)
{
    struct config *cfg = NULL;
    struct brk_errinfo info;
    char buf[512], want[PATH_MAX + 128];

    (void)state;
    write_file("broker.conf", "[broker]\nbogus = 1\n" SUITE);
    assert_int_equal(config_load(confpath, &cfg, &info), BRK_ERR_CONFIG);
    config_format_error(confpath, &info, buf, sizeof(buf));
    xsnprintf(want, sizeof(want), "%s:2: unknown key 'bogus' in [broker]",
              confpath);
    assert_string_equal(buf, want);

    write_file("broker.conf", "[broker]\n");
    assert_int_equal(config_load(confpath, &cfg, &info), BRK_ERR_CONFIG);
    assert_int_equal(info.line, 0);
    config_format_error(confpath, &info, buf, sizeof(buf));
    xsnprintf(want, sizeof(want), "%s: no [suite ...] section", confpath);
    assert_string_equal(buf, want);

    /* truncation is safe */
    config_format_error(confpath, &info, buf, 5);
    assert_int_equal(strlen(buf), 4);
    config_format_error(confpath, &info, NULL, 0);
}

static void
test_missing_file_is_io_error(void **state)
{
    struct config *cfg = NULL;
    struct brk_errinfo info;
    char path[PATH_MAX], buf[PATH_MAX + 128], want[PATH_MAX + 128];

    (void)state;
    tmp_path(path, sizeof(path), "absent.conf");
    assert_int_equal(config_load(path, &cfg, &info), BRK_ERR_IO);
    assert_null(cfg);
    assert_int_equal(info.line, 0);
    config_format_error(path, &info, buf, sizeof(buf));
    xsnprintf(want, sizeof(want), "%s: cannot read: No such file or directory",
              path);
    assert_string_equal(buf, want);
}

static void
test_directory_is_io_error(void **state)
{
    struct config *cfg = NULL;
    struct brk_errinfo info;

    (void)state;
    assert_int_equal(config_load(tmpdir, &cfg, &info), BRK_ERR_IO);
    assert_null(cfg);
    assert_non_null(strstr(info.msg, "cannot read"));
}

static void
test_null_info_allowed(void **state)
{
    struct config *cfg = NULL;

    (void)state;
    write_file("broker.conf", "[broker]\nbogus = 1\n" SUITE);
    assert_int_equal(config_load(confpath, &cfg, NULL), BRK_ERR_CONFIG);
    assert_null(cfg);
    config_free(NULL);
}

static void
test_first_error_wins(void **state)
{
    (void)state;
    load_fail("[broker]\nlog_level = x\nlog_format = y\n[nope]\n", 2,
              "log_level: must be");
}

/*---- The example and the data-driven cases ----*/

static void
root_path(char *buf, size_t len, const char *rel)
{
    /* a missing tree is a failure, not a silent pass */
    if (srcroot[0] == '\0')
        fail_msg("repository root not found (set BROKER_SRCDIR)");
    xsnprintf(buf, len, "%s/%s", srcroot, rel);
}

static void
test_example_loads(void **state)
{
    struct config *cfg = NULL;
    struct brk_errinfo info;
    const struct suite_conf *sc;
    char path[PATH_MAX], want[PATH_MAX + 64];
    enum brk_err err;

    (void)state;
    root_path(path, sizeof(path), "broker.conf.example");
    err = config_load(path, &cfg, &info);
    if (err != BRK_OK)
        fail_msg("%d: %s", info.line, info.msg);
    assert_string_equal(cfg->redis, "");
    xsnprintf(want, sizeof(want), "%s/var", cfg->dir);
    assert_string_equal(cfg->state_dir, want);
    xsnprintf(want, sizeof(want), "%s/var/master.key", cfg->dir);
    assert_string_equal(cfg->master_key_file, want);
    xsnprintf(want, sizeof(want), "%s/var/index.key", cfg->dir);
    assert_string_equal(cfg->index_key_file, want);
    assert_string_equal(cfg->public_base_url, "http://127.0.0.1:8080");
    assert_string_equal(cfg->wecom_api_base, "http://127.0.0.1:9000");
    assert_int_equal(cfg->nsuites, 1);
    sc = config_find_suite(cfg, "wwdemo0000suite01");
    assert_non_null(sc);
    assert_string_equal(sc->secret, "demo-suite-secret");
    assert_int_equal(strlen(sc->encoding_aes_key), 43);
    assert_string_equal(sc->provider_corpid, "wwdemo0000provider");
    assert_int_equal(sc->auth_type, 1);
    assert_int_equal(sc->nredirect_allow, 1);
    assert_string_equal(sc->redirect_allow[0], "http://127.0.0.1:8081/");
    config_free(cfg);
}

static void
test_example_sets_every_key(void **state)
{
    /* every [broker] key is written out, so the example documents all */
    static const char *const keys[] = {
        "callback_listen",
        "internal_listen",
        "redis",
        "state_dir",
        "scopes_dir",
        "wecom_api_base",
        "public_base_url",
        "wecom_install_url",
        "wecom_oauth_url",
        "master_key_file",
        "index_key_file",
        "callback_max_skew",
        "key_prefix",
        "upstream_timeout_ms",
        "upstream_max_body",
        "upstream_rate_per_corp",
        "upstream_rate_per_corp_hour",
        "upstream_rate_per_api",
        "upstream_rate_per_api_hour",
        "audit_max_len",
        "audit_max_age",
        "audit_file",
        "event_concurrency",
        "cache_max_age",
        "cache_max_bytes",
        "workers",
        "event_claim_idle",
        "event_max_attempts",
        "tls_cert_file",
        "tls_key_file",
        "log_level",
        "log_format",
        "trusted_proxies",
        "token",
        "encoding_aes_key",
        "secret",
        "provider_corpid",
        "auth_type",
        "redirect_allow",
    };
    char path[PATH_MAX], line[1024], *eq;
    unsigned found[nitems(keys)] = {0};
    size_t i;
    FILE *f;

    (void)state;
    root_path(path, sizeof(path), "broker.conf.example");
    f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        eq = strstr(line, " =");
        if (line[0] == ';' || eq == NULL)
            continue;
        *eq = '\0';
        for (i = 0; i < nitems(keys); i++)
            if (strcmp(line, keys[i]) == 0)
                found[i]++;
    }
    fclose(f);
    for (i = 0; i < nitems(keys); i++)
        if (found[i] != 1)
            fail_msg("key %s appears %u times", keys[i], found[i]);
}

static void
test_example_alloc_failure_loop(void **state)
{
    struct config *cfg = NULL;
    struct brk_errinfo info;
    char path[PATH_MAX];
    unsigned long n;
    enum brk_err err = BRK_ERR_NOMEM;

    (void)state;
    root_path(path, sizeof(path), "broker.conf.example");
    for (n = 1; n < 10000; n++) {
        brk_alloc_fail_at(n);
        err = config_load(path, &cfg, &info);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(cfg);
        assert_string_equal(info.msg, "out of memory");
    }
    assert_int_equal(err, BRK_OK);
    assert_true(n > 10);
    config_free(cfg);
}

static void
test_alloc_failure_with_secret_files(void **state)
{
    struct config *cfg = NULL;
    struct brk_errinfo info;
    unsigned long n;
    enum brk_err err = BRK_ERR_NOMEM;

    (void)state;
    write_file("secrets/af_token", FILESECRET "\n");
    setenv("WB_TEST_AF", ENVSECRET, 1);
    write_file("broker.conf",
               "[broker]\nredis = redis://:" REDISPW "@h:1/2\n"
               "tls_cert_file = c\ntls_key_file = k\n" SUITE_HDR
               "token_file = secrets/af_token\nsecret_env = WB_TEST_AF\n"
               "encoding_aes_key = " AESKEY "\n"
               "redirect_allow = https://a/, https://b/, https://c/\n"
               "[suite two]\n" SUITE_BODY "[suite three]\n" SUITE_BODY
               "[suite four]\n" SUITE_BODY "[suite five]\n" SUITE_BODY);
    for (n = 1; n < 10000; n++) {
        brk_alloc_fail_at(n);
        err = config_load(confpath, &cfg, &info);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
    }
    unsetenv("WB_TEST_AF");
    assert_int_equal(err, BRK_OK);
    assert_int_equal(cfg->nsuites, 5);
    config_free(cfg);
}

static char *
slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (f == NULL)
        return NULL;
    buf = brk_malloc(65536);
    if (buf == NULL) {
        fclose(f);
        return NULL;
    }
    n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Inline secret values of a case's broker.conf, checked against msg. */
static void
case_assert_no_secret(const char *conf, const char *msg, const char *name)
{
    static const char *const keys[] = {"token", "encoding_aes_key", "secret",
                                       "redis"};
    const char *p = conf, *v, *e;
    size_t i, kl, vl;
    char val[256];

    while (p != NULL && *p != '\0') {
        for (i = 0; i < nitems(keys); i++) {
            kl = strlen(keys[i]);
            if (strncmp(p, keys[i], kl) != 0)
                continue;
            v = p + kl + strspn(p + kl, " \t");
            if (*v != '=')
                continue;
            v += 1 + strspn(v + 1, " \t");
            e = v + strcspn(v, "\r\n");
            vl = (size_t)(e - v);
            if (memchr(v, ';', vl) != NULL)
                vl = (size_t)((const char *)memchr(v, ';', vl) - v);
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            if (vl < 6 || vl >= sizeof(val))
                continue;
            memcpy(val, v, vl);
            val[vl] = '\0';
            if (strstr(msg, val) != NULL)
                fail_msg("%s: secret leaked into \"%s\"", name, msg);
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
}

static void
run_case(const char *dir, const char *name, int valid, unsigned *count)
{
    struct config *cfg = NULL;
    struct brk_errinfo info;
    char conf[PATH_MAX], errpath[PATH_MAX], buf[PATH_MAX + 256];
    char *expect = NULL, *text = NULL, *colon;
    enum brk_err err;
    long line = 0;
    size_t n;

    xsnprintf(conf, sizeof(conf), "%s/%s/broker.conf", dir, name);
    xsnprintf(errpath, sizeof(errpath), "%s/%s/error", dir, name);
    err = config_load(conf, &cfg, &info);
    (*count)++;
    if (valid) {
        if (err != BRK_OK)
            fail_msg("valid/%s: %d: %s", name, info.line, info.msg);
        config_free(cfg);
        return;
    }
    if (err != BRK_ERR_CONFIG)
        fail_msg("invalid/%s: got %s", name, brk_strerror(err));
    expect = slurp(errpath);
    if (expect == NULL)
        fail_msg("invalid/%s: no error file", name);
    n = strcspn(expect, "\r\n");
    expect[n] = '\0';
    colon = expect;
    /* "LINE: message" or, for errors without a line, "message" */
    if (expect[0] >= '0' && expect[0] <= '9') {
        line = strtol(expect, &colon, 10);
        if (colon[0] != ':' || colon[1] != ' ')
            fail_msg("invalid/%s: malformed error file", name);
        colon += 2;
    }
    if (info.line != line || strstr(info.msg, colon) == NULL)
        fail_msg("invalid/%s: got \"%d: %s\", want \"%s\"", name, info.line,
                 info.msg, expect);
    config_format_error(conf, &info, buf, sizeof(buf));
    if (strncmp(buf, conf, strlen(conf)) != 0)
        fail_msg("invalid/%s: format \"%s\"", name, buf);
    text = slurp(conf);
    assert_non_null(text);
    case_assert_no_secret(text, info.msg, name);
    brk_free(text);
    brk_free(expect);
}

static void
run_cases(const char *kind, int valid)
{
    char dir[PATH_MAX], rel[64];
    struct dirent **names = NULL;
    unsigned count = 0;
    int n, i;

    xsnprintf(rel, sizeof(rel), "tests/data/config/%s", kind);
    root_path(dir, sizeof(dir), rel);
    n = scandir(dir, &names, NULL, alphasort);
    assert_true(n >= 0);
    for (i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.')
            run_case(dir, names[i]->d_name, valid, &count);
        free(names[i]);
    }
    free(names);
    print_message("%u %s cases\n", count, kind);
    assert_true(count > 0);
}

static void
test_data_valid_cases(void **state)
{
    (void)state;
    setenv("WB_CASE_TOKEN", "case-env-token", 1);
    run_cases("valid", 1);
    unsetenv("WB_CASE_TOKEN");
}

static void
test_data_invalid_cases(void **state)
{
    (void)state;
    unsetenv("WB_CASE_UNSET");
    run_cases("invalid", 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_without_broker_section),
        cmocka_unit_test(test_defaults_with_empty_broker_section),
        cmocka_unit_test(test_every_key_parsed),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_bad_log_level),
        cmocka_unit_test(test_bad_log_format),
        cmocka_unit_test(test_several_suites_and_find),
        cmocka_unit_test(test_suite_id_64_chars_kept_whole),
        cmocka_unit_test(test_suite_id_65_chars_rejected),
        cmocka_unit_test(test_bad_suite_id),
        cmocka_unit_test(test_section_spacing_tolerated),
        cmocka_unit_test(test_unknown_key_broker),
        cmocka_unit_test(test_unknown_key_suite),
        cmocka_unit_test(test_suite_key_in_broker_rejected),
        cmocka_unit_test(test_odd_key_name_not_echoed),
        cmocka_unit_test(test_unknown_section),
        cmocka_unit_test(test_missing_bracket),
        cmocka_unit_test(test_text_after_section),
        cmocka_unit_test(test_key_before_section),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_duplicate_key_in_suite),
        cmocka_unit_test(test_duplicate_suite),
        cmocka_unit_test(test_two_broker_sections),
        cmocka_unit_test(test_no_suite),
        cmocka_unit_test(test_missing_token),
        cmocka_unit_test(test_missing_aes_key),
        cmocka_unit_test(test_missing_secret),
        cmocka_unit_test(test_empty_value_rejected),
        cmocka_unit_test(test_empty_redis_is_embedded),
        cmocka_unit_test(test_long_line_rejected),
        cmocka_unit_test(test_line_at_bound_accepted),
        cmocka_unit_test(test_long_redirect_allow_accepted),
        cmocka_unit_test(test_indented_continuation_rejected),
        cmocka_unit_test(test_indented_key_rejected),
        cmocka_unit_test(test_indented_comment_and_blank_ok),
        cmocka_unit_test(test_colon_separator_rejected),
        cmocka_unit_test(test_line_without_equals_rejected),
        cmocka_unit_test(test_control_character_rejected),
        cmocka_unit_test(test_nul_byte_rejected),
        cmocka_unit_test(test_crlf_file),
        cmocka_unit_test(test_crlf_line_numbers),
        cmocka_unit_test(test_utf8_bom),
        cmocka_unit_test(test_utf8_bom_only_first_line),
        cmocka_unit_test(test_no_final_newline),
        cmocka_unit_test(test_inline_comment_cuts_secret),
        cmocka_unit_test(test_semicolon_without_space_kept),
        cmocka_unit_test(test_inih_globals_reset_each_load),
        cmocka_unit_test(test_number_not_integer),
        cmocka_unit_test(test_number_empty),
        cmocka_unit_test(test_number_negative),
        cmocka_unit_test(test_number_overflow),
        cmocka_unit_test(test_number_bounds),
        cmocka_unit_test(test_auth_type),
        cmocka_unit_test(test_parse_listen_ok),
        cmocka_unit_test(test_parse_listen_bad),
        cmocka_unit_test(test_bad_listen_in_file),
        cmocka_unit_test(test_bad_aes_key_length),
        cmocka_unit_test(test_bad_aes_key_char),
        cmocka_unit_test(test_two_forms_of_secret),
        cmocka_unit_test(test_two_forms_file_then_env),
        cmocka_unit_test(test_duplicate_file_form),
        cmocka_unit_test(test_file_relative_path),
        cmocka_unit_test(test_file_absolute_path),
        cmocka_unit_test(test_file_strips_one_newline_only),
        cmocka_unit_test(test_file_missing),
        cmocka_unit_test(test_file_empty),
        cmocka_unit_test(test_file_too_big),
        cmocka_unit_test(test_file_at_size_limit_ok),
        cmocka_unit_test(test_file_is_directory),
        cmocka_unit_test(test_file_with_nul_byte),
        cmocka_unit_test(test_file_empty_path),
        cmocka_unit_test(test_env_set),
        cmocka_unit_test(test_env_unset),
        cmocka_unit_test(test_env_empty),
        cmocka_unit_test(test_env_bad_aes_key_not_echoed),
        cmocka_unit_test(test_env_bad_name),
        cmocka_unit_test(test_env_form_unknown_for_plain_key),
        cmocka_unit_test(test_redis_forms),
        cmocka_unit_test(test_redis_bad_not_echoed),
        cmocka_unit_test(test_redis_parse),
        cmocka_unit_test(test_url_keys_bad),
        cmocka_unit_test(test_base_url_trailing_slash_removed),
        cmocka_unit_test(test_redirect_allow_bad),
        cmocka_unit_test(test_redirect_allow_trimmed),
        cmocka_unit_test(test_provider_corpid),
        cmocka_unit_test(test_key_prefix_bad),
        cmocka_unit_test(test_tls_pair),
        cmocka_unit_test(test_relative_paths_use_config_dir),
        cmocka_unit_test(test_error_format),
        cmocka_unit_test(test_missing_file_is_io_error),
        cmocka_unit_test(test_directory_is_io_error),
        cmocka_unit_test(test_null_info_allowed),
        cmocka_unit_test(test_first_error_wins),
        cmocka_unit_test(test_example_loads),
        cmocka_unit_test(test_example_sets_every_key),
        cmocka_unit_test(test_example_alloc_failure_loop),
        cmocka_unit_test(test_alloc_failure_with_secret_files),
        cmocka_unit_test(test_data_valid_cases),
        cmocka_unit_test(test_data_invalid_cases),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
