/*
 * brokerctl end to end: real redis-server, the WeCom simulator and the
 * broker over loopback. Every command in its table and --json forms, its
 * errors and exit statuses (0 ok, 1 failure, 2 usage); tenant purge
 * leaving nothing of the tenant; master key rotation leaving every tenant
 * readable and the old version destroyed; explain; the audit trail
 * without field values; tables aligned by display width. The key-file
 * functions of keyring.c and the display width of cli/ctl_width.c are
 * checked directly first.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "simclient.h"
#include "tenantclient.h"
#include "keyring.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

/* the display width under test, compiled into this binary */
#include "../../cli/ctl_width.c"

#define S1    H_SUITE
#define S2    "wwtestsuite00002"
#define SEC2  "second-suite-secret-0002"
#define CORP1 "wwmockcorp0001" /* the main tenant */
#define CORP2 "wwmockcorp0002" /* both suites; S1's purged with --json */
#define CORP3 "wwmockcorp0003" /* purged in table form */
#define CORP4 "wwmockcorp0004" /* reinstall_required */
#define CORP5 "wwmockcorp0005" /* never installed */

static struct harness H;
static pid_t Mock;
static int MockPort;
static char *Reader_secret, *Reader_tok; /* contacts.read */
static char *Sens_secret;                /* contacts.read,member.sensitive */

/*---- helpers ----*/

/* brokerctl -c CONF ARGS... (NULL-terminated): its exit status; stdout
 * and stderr into *out (free). */
static int
ctl_v(char **out, int json, va_list ap)
{
    const char *argv[40];
    const char *a;
    size_t n = 0;

    argv[n++] = "bin/brokerctl";
    argv[n++] = "-c";
    argv[n++] = H.conf;
    if (json)
        argv[n++] = "--json";
    while ((a = va_arg(ap, const char *)) != NULL && n < 39)
        argv[n++] = a;
    argv[n] = NULL;
    return h_run(argv, out);
}

static int
ctl(char **out, ...)
{
    va_list ap;
    int rc;

    va_start(ap, out);
    rc = ctl_v(out, 0, ap);
    va_end(ap);
    return rc;
}

/* The same with --json, stdout parsed (NULL when not JSON). */
static json_t *
ctlj(int *rc, ...)
{
    char *out = NULL;
    json_error_t e;
    json_t *v;
    va_list ap;

    va_start(ap, rc);
    *rc = ctl_v(&out, 1, ap);
    va_end(ap);
    v = json_loads(out ? out : "", JSON_DISABLE_EOF_CHECK, &e);
    if (v == NULL || *rc != 0)
        fprintf(stderr, "# brokerctl exit %d: %.600s\n", *rc, out ? out : "");
    free(out);
    return v;
}

/* Assert that output holds want, printing it when not. */
static void
expect_in(const char *out, const char *want)
{
    if (out == NULL || strstr(out, want) == NULL) {
        fprintf(stderr, "# wanted \"%s\" in:\n%s\n", want,
                out ? out : "(nothing)");
        fail();
    }
}

static json_t *
tenant_show(const char *suite, const char *corp)
{
    int rc;

    return ctlj(&rc, "--suite", suite, "tenant", "show", corp, (char *)NULL);
}

/* A service API call on the internal listener; body parsed. */
static json_t *
api(const char *pq, long *status)
{
    char *url = h_int_url(&H, pq), *body = NULL;
    json_error_t e;
    json_t *v;

    *status = h_http("GET", url, NULL, 0, &body);
    v = json_loads(body ? body : "", 0, &e);
    free(url);
    free(body);
    return v;
}

/* Display columns of s, computed independently of ctl_width: a code
 * point of the CJK, Hangul and fullwidth blocks counts 2, others 1. */
static size_t
cols(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, w = 0;
    uint32_t cp;

    while (i < n) {
        if (u[i] < 0x80) {
            cp = u[i++];
        } else if ((u[i] & 0xE0) == 0xC0) {
            cp = (uint32_t)(u[i] & 0x1F) << 6 | (u[i + 1] & 0x3F);
            i += 2;
        } else if ((u[i] & 0xF0) == 0xE0) {
            cp = (uint32_t)(u[i] & 0x0F) << 12 |
                 (uint32_t)(u[i + 1] & 0x3F) << 6 | (u[i + 2] & 0x3F);
            i += 3;
        } else {
            cp = 0x10000;
            i += 4;
        }
        w += (cp >= 0x3000 && cp <= 0x9FFF) || (cp >= 0xAC00 && cp <= 0xD7A3) ||
                     (cp >= 0xFF01 && cp <= 0xFF60)
                 ? 2
                 : 1;
    }
    return w;
}

/* Nonzero when s holds a character of three or more UTF-8 bytes. */
static int
has_cjk(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0xE3)
            return 1;
    return 0;
}

/* Send SIGHUP so the broker reads the key file again, and wait for its
 * summary line naming the master key versions it now holds. */
static size_t Log_from;
static char Want_keys[64];

static int
keys_reloaded(void *arg)
{
    char *log = h_slurp(H.log);
    int yes = log != NULL && strlen(log) > Log_from &&
              strstr(log + Log_from, Want_keys) != NULL;

    (void)arg;
    free(log);
    return yes;
}

static void
reload_broker(const char *versions)
{
    char *log = h_slurp(H.log);

    Log_from = log ? strlen(log) : 0;
    free(log);
    snprintf(Want_keys, sizeof(Want_keys), ", keys versions %s,", versions);
    assert_int_equal(kill(H.broker_pid, SIGHUP), 0);
    if (!h_wait(keys_reloaded, NULL, 10000)) {
        fprintf(stderr, "# the broker never logged \"%s\"\n", Want_keys);
        fail();
    }
}

/*---- fixtures ----*/

/* Every tenant of the group active, the services and a token made: the
 * group's starting point. */
static void tenants_ready(void);

static int
setup(void **state)
{
    const char *extra[] = {
        "--suite", S1 ":" H_SECRET, "--suite", S2 ":" SEC2, "--corps",
        "6",       "--quiet",       NULL};
    char broker[512];
    FILE *f;

    (void)state;
    if (h_setup(&H) != 0)
        return -1;
    Mock = h_mock_start(H.dir, extra, &MockPort);
    if (Mock == 0)
        return -1;
    /* a host name: the data path's own resolver and libcurl (installs,
     * tokens) both look it up, from the system's hosts file */
    snprintf(broker, sizeof(broker),
             "wecom_api_base = http://localhost:%d\n"
             "event_claim_idle = 3\n"
             "event_max_attempts = 3\n"
             "upstream_timeout_ms = 2000\n",
             MockPort);
    if (h_write_conf(&H, 0, broker) != 0)
        return -1;
    f = fopen(H.conf, "a");
    if (f == NULL)
        return -1;
    fprintf(f, "\n[suite " S2 "]\ntoken = " H_TOKEN
               "\nencoding_aes_key = " H_AESKEY "\nsecret = " SEC2 "\n");
    fclose(f);
    if (h_broker_start(&H) != 0)
        return -1;
    tc_init(&H, MockPort);
    tc_push_ticket(S1);
    tc_push_ticket(S2);
    tc_install(S1, CORP1, (long)time(NULL));
    tc_install(S1, CORP2, (long)time(NULL));
    tc_install(S2, CORP2, (long)time(NULL));
    tc_install(S1, CORP3, (long)time(NULL));
    tenants_ready();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    tc_done();
    if (Mock > 0)
        h_stop(Mock, SIGTERM);
    free(Reader_secret);
    free(Reader_tok);
    free(Sens_secret);
    h_teardown(&H);
    return 0;
}

/*---- display width (cli/ctl_width.c) ----*/

static void
test_width_ascii_cjk_fullwidth(void **state)
{
    (void)state;
    assert_int_equal(ctl_width(""), 0);
    assert_int_equal(ctl_width("wwcorp"), 6);
    assert_int_equal(ctl_width("模拟企业"), 8);
    assert_int_equal(ctl_width("模拟企业1·上海"), 2 * 4 + 1 + 1 + 2 * 2);
    assert_int_equal(ctl_width("한국"), 4);
    assert_int_equal(ctl_width("ＡＢ"), 4);             /* fullwidth Latin */
    assert_int_equal(ctl_width("ｶﾀ"), 2);               /* halfwidth katakana */
    assert_int_equal(ctl_width("、。「」"), 8);         /* CJK punctuation */
    assert_int_equal(ctl_width("\xF0\x9F\x98\x80"), 2); /* an emoji */
    assert_int_equal(ctl_width("\xF0\xA0\x80\x80"), 2); /* CJK ext. B */
}

static void
test_width_combining_and_zero_width(void **state)
{
    (void)state;
    assert_int_equal(ctl_width("e\xCC\x81"), 1); /* e + acute */
    assert_int_equal(ctl_width("a\xE2\x80\x8B"
                               "b"),
                     2);                                        /* ZWSP */
    assert_int_equal(ctl_width("\xE9\xAA\xA8\xEF\xB8\x80"), 2); /* + VS1 */
    assert_int_equal(ctl_width("\xE3\x81\x8B\xE3\x82\x99"), 2); /* か+゙ */
}

/* Bytes that are not UTF-8 and controls are shown as "?": one column. */
static void
test_width_hostile_bytes(void **state)
{
    uint32_t cp;

    (void)state;
    assert_int_equal(ctl_width("\xFF"), 1);
    assert_int_equal(ctl_width("\x1B[2J"), 4);
    assert_int_equal(ctl_width("\xE6\xA8"), 2);         /* truncated */
    assert_int_equal(ctl_width("\xC0\xAF"), 2);         /* overlong */
    assert_int_equal(ctl_width("\xED\xA0\x80"), 3);     /* surrogate */
    assert_int_equal(ctl_width("\xF4\x90\x80\x80"), 4); /* > U+10FFFF */
    assert_int_equal(ctl_utf8_next("\xE6\xA8", 2, &cp), 0);
    assert_int_equal(ctl_utf8_next("\xE6\xA8\xA1", 3, &cp), 3);
    assert_int_equal(cp, 0x6A21);
    assert_int_equal(ctl_width_n("模拟", 3), 2);
}

/*---- keyring key-file maintenance ----*/

struct kdir {
    char dir[64], master[96], index[96];
};

static void
kdir_make(struct kdir *k, const char *master_text)
{
    FILE *f;

    snprintf(k->dir, sizeof(k->dir), "/tmp/brokerctl-kr-XXXXXX");
    assert_non_null(mkdtemp(k->dir));
    snprintf(k->master, sizeof(k->master), "%s/master.key", k->dir);
    snprintf(k->index, sizeof(k->index), "%s/index.key", k->dir);
    f = fopen(k->master, "w");
    assert_non_null(f);
    fputs(master_text, f);
    fclose(f);
    chmod(k->master, 0640);
    f = fopen(k->index, "w");
    assert_non_null(f);
    fputs(H_INDEX_HEX "\n", f);
    fclose(f);
    chmod(k->index, 0600);
}

/* Number of entries in the directory (temporary files left behind show
 * up here). */
static int
kdir_entries(const struct kdir *k)
{
    DIR *d = opendir(k->dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void
kdir_remove(struct kdir *k)
{
    unlink(k->master);
    unlink(k->index);
    rmdir(k->dir);
}

static struct keyring *
kload(const struct kdir *k)
{
    struct brk_errinfo info = {"", 0, -1};
    struct keyring *kr = NULL;

    if (keyring_load(k->master, k->index, 0, &kr, NULL, NULL, &info) != BRK_OK)
        fprintf(stderr, "# %s\n", info.msg);
    assert_non_null(kr);
    return kr;
}

static void
test_keyring_add_version_spells_out_bare_key(void **state)
{
    struct brk_errinfo info = {"", 0, -1};
    unsigned char dk[KEYRING_KEY_LEN], back[KEYRING_KEY_LEN];
    struct keyring *kr;
    struct kdir k;
    struct stat st;
    char *wrapped = NULL, *text;
    unsigned v = 0;

    (void)state;
    kdir_make(&k, "# the dev key\n" H_MASTER_HEX "\n");
    kr = kload(&k);
    assert_int_equal(keyring_dk_generate(dk), BRK_OK);
    assert_int_equal(keyring_wrap(kr, dk, "suite:x", &wrapped), BRK_OK);
    keyring_free(kr);
    assert_int_equal(keyring_file_add_version(k.master, &v, &info), BRK_OK);
    assert_int_equal(v, 2);
    text = h_slurp(k.master);
    /* the comment stays, the bare key is version 1, version 2 is new */
    assert_memory_equal(text, "# the dev key\n1 " H_MASTER_HEX "\n2 ",
                        strlen("# the dev key\n1 " H_MASTER_HEX "\n2 "));
    assert_int_equal(strlen(text),
                     strlen("# the dev key\n1 " H_MASTER_HEX "\n2 ") + 65);
    assert_null(strstr(text + 20 + 64, H_MASTER_HEX));
    free(text);
    assert_int_equal(stat(k.master, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(kdir_entries(&k), 2);
    kr = kload(&k);
    assert_int_equal(keyring_current_version(kr), 2);
    assert_int_equal(keyring_version_count(kr), 2);
    assert_int_equal(keyring_version_at(kr, 0), 1);
    /* data wrapped before still opens */
    assert_int_equal(keyring_unwrap(kr, wrapped, "suite:x", back, NULL),
                     BRK_OK);
    assert_memory_equal(dk, back, sizeof(dk));
    keyring_free(kr);
    brk_free(wrapped);
    kdir_remove(&k);
}

static void
test_keyring_remove_version(void **state)
{
    struct brk_errinfo info = {"", 0, -1};
    struct keyring *kr;
    struct kdir k;
    char *text;
    unsigned v = 0;

    (void)state;
    kdir_make(&k, "1 " H_MASTER_HEX "\n# keep me\n");
    assert_int_equal(keyring_file_add_version(k.master, &v, &info), BRK_OK);
    assert_int_equal(keyring_file_add_version(k.master, &v, &info), BRK_OK);
    assert_int_equal(v, 3);
    /* the current version, a missing one and 0 are refused */
    assert_int_equal(keyring_file_remove_version(k.master, 3, &info),
                     BRK_ERR_INVAL);
    assert_non_null(strstr(info.msg, "current"));
    assert_int_equal(keyring_file_remove_version(k.master, 7, &info),
                     BRK_ERR_NOTFOUND);
    assert_int_equal(keyring_file_remove_version(k.master, 0, &info),
                     BRK_ERR_NOTFOUND);
    assert_int_equal(keyring_file_remove_version(k.master, 1, &info), BRK_OK);
    text = h_slurp(k.master);
    assert_null(strstr(text, H_MASTER_HEX));
    assert_non_null(strstr(text, "# keep me\n"));
    assert_non_null(strstr(text, "\n2 "));
    free(text);
    kr = kload(&k);
    assert_int_equal(keyring_version_count(kr), 2);
    assert_false(keyring_has_version(kr, 1));
    keyring_free(kr);
    assert_int_equal(keyring_file_remove_version(k.master, 2, &info), BRK_OK);
    /* now the only one */
    assert_int_equal(keyring_file_remove_version(k.master, 3, &info),
                     BRK_ERR_INVAL);
    assert_int_equal(kdir_entries(&k), 2);
    kdir_remove(&k);
}

/* A malformed or missing file is refused and left exactly as it was. */
static void
test_keyring_file_errors_change_nothing(void **state)
{
    struct brk_errinfo info = {"", 0, -1};
    static const char bad[] = "1 " H_MASTER_HEX "\n2 nothex\n";
    struct kdir k;
    char *text, missing[128];
    unsigned v = 0;

    (void)state;
    kdir_make(&k, bad);
    assert_int_equal(keyring_file_add_version(k.master, &v, &info),
                     BRK_ERR_CONFIG);
    assert_non_null(strstr(info.msg, "line 2"));
    assert_int_equal(keyring_file_remove_version(k.master, 1, &info),
                     BRK_ERR_CONFIG);
    text = h_slurp(k.master);
    assert_string_equal(text, bad);
    free(text);
    assert_int_equal(kdir_entries(&k), 2);
    snprintf(missing, sizeof(missing), "%s/none.key", k.dir);
    assert_int_equal(keyring_file_add_version(missing, &v, &info), BRK_ERR_IO);
    assert_int_equal(kdir_entries(&k), 2);
    kdir_remove(&k);
}

/* Every allocation failure leaves the old file or the whole new one, no
 * temporary file, and no leak (run under ASan). */
static void
test_keyring_file_alloc_failures(void **state)
{
    struct brk_errinfo info = {"", 0, -1};
    struct keyring *kr;
    struct kdir k;
    enum brk_err err;
    unsigned long n;
    unsigned v = 0;

    (void)state;
    kdir_make(&k, "1 " H_MASTER_HEX "\n");
    for (n = 1;; n++) {
        assert_true(n < 100);
        brk_alloc_fail_at(n);
        err = keyring_file_add_version(k.master, &v, &info);
        brk_alloc_fail_at(0);
        assert_int_equal(kdir_entries(&k), 2);
        kr = kload(&k);
        if (err == BRK_OK) {
            assert_int_equal(keyring_current_version(kr), 2);
            keyring_free(kr);
            break;
        }
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_int_equal(keyring_current_version(kr), 1);
        keyring_free(kr);
    }
    assert_true(n > 1);
    for (n = 1;; n++) {
        assert_true(n < 100);
        brk_alloc_fail_at(n);
        err = keyring_file_remove_version(k.master, 1, &info);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        kr = kload(&k);
        assert_true(keyring_has_version(kr, 1));
        keyring_free(kr);
    }
    kr = kload(&k);
    assert_false(keyring_has_version(kr, 1));
    keyring_free(kr);
    kdir_remove(&k);
}

static void
test_keyring_rewrap_and_wrapped_version(void **state)
{
    struct brk_errinfo info = {"", 0, -1};
    unsigned char dk[KEYRING_KEY_LEN], back[KEYRING_KEY_LEN];
    struct keyring *kr;
    struct kdir k;
    char *w1 = NULL, *w2 = NULL, *w3 = NULL;
    unsigned v = 0;

    (void)state;
    kdir_make(&k, "1 " H_MASTER_HEX "\n");
    kr = kload(&k);
    assert_int_equal(keyring_dk_generate(dk), BRK_OK);
    assert_int_equal(keyring_wrap(kr, dk, "tenant:s:c", &w1), BRK_OK);
    keyring_free(kr);
    assert_int_equal(keyring_file_add_version(k.master, &v, &info), BRK_OK);
    kr = kload(&k);
    assert_int_equal(keyring_rewrap(kr, w1, "tenant:s:c", &w2), BRK_OK);
    assert_int_equal(keyring_wrapped_version(w1, &v), BRK_OK);
    assert_int_equal(v, 1);
    assert_int_equal(keyring_wrapped_version(w2, &v), BRK_OK);
    assert_int_equal(v, 2);
    assert_int_equal(keyring_unwrap(kr, w2, "tenant:s:c", back, NULL), BRK_OK);
    assert_memory_equal(dk, back, sizeof(dk));
    /* bound to its owner: another context does not open or re-wrap */
    assert_int_equal(keyring_rewrap(kr, w1, "tenant:s:other", &w3),
                     BRK_ERR_CRYPTO);
    assert_null(w3);
    assert_int_equal(keyring_wrapped_version("k12.abc", &v), BRK_OK);
    assert_int_equal(v, 12);
    assert_int_equal(keyring_wrapped_version("k0.abc", &v), BRK_ERR_INVAL);
    assert_int_equal(keyring_wrapped_version("k.abc", &v), BRK_ERR_INVAL);
    assert_int_equal(keyring_wrapped_version("kx1.abc", &v), BRK_ERR_INVAL);
    assert_int_equal(keyring_wrapped_version("s1.abc", &v), BRK_ERR_INVAL);
    assert_int_equal(keyring_wrapped_version("k1", &v), BRK_ERR_INVAL);
    keyring_free(kr);
    brk_free(w1);
    brk_free(w2);
    kdir_remove(&k);
}

/*---- help and usage ----*/

static void
test_help_lists_every_command(void **state)
{
    static const char *const cmds[] = {"tenants", "tenant", "suite",
                                       "service", "key",    "explain",
                                       "audit",   "scopes", "help"};
    const char *all[] = {"bin/brokerctl", "help", NULL};
    const char *one[] = {"bin/brokerctl", "help", NULL, NULL};
    char *out, want[64];
    size_t i;

    (void)state;
    assert_int_equal(h_run(all, &out), 0);
    for (i = 0; i < nitems(cmds); i++) {
        snprintf(want, sizeof(want), "  %s ", cmds[i]);
        expect_in(out, want);
    }
    expect_in(out, "Exit status: 0 ok, 1 failure, 2 usage error");
    free(out);
    for (i = 0; i < nitems(cmds); i++) {
        one[2] = cmds[i];
        assert_int_equal(h_run(one, &out), 0);
        snprintf(want, sizeof(want), "usage: brokerctl %s", cmds[i]);
        expect_in(out, want);
        expect_in(out, "Examples:\n  brokerctl ");
        free(out);
    }
}

static void
test_help_service_shows_every_verb_with_examples(void **state)
{
    const char *argv[] = {"bin/brokerctl", "help", "service", NULL};
    const char *after[] = {"bin/brokerctl", "service", "--help", NULL};
    char *out, *out2;

    (void)state;
    assert_int_equal(h_run(argv, &out), 0);
    expect_in(out, "brokerctl service add NAME --scopes A,B");
    expect_in(out, "brokerctl service list");
    expect_in(out, "brokerctl service show NAME");
    expect_in(out, "brokerctl service revoke NAME");
    expect_in(out, "brokerctl service rotate NAME");
    expect_in(out, "  brokerctl -c broker.conf service add crm --scopes "
                   "contacts.read\n");
    expect_in(out, "service rotate crm\n");
    expect_in(out, "service revoke crm\n");
    /* COMMAND --help prints the same */
    assert_int_equal(h_run(after, &out2), 0);
    assert_string_equal(out, out2);
    free(out);
    free(out2);
}

static void
test_help_unknown_is_usage_error(void **state)
{
    const char *a[] = {"bin/brokerctl", "help", "frobnicate", NULL};
    const char *b[] = {"bin/brokerctl", "help", "key", "list", NULL};
    const char *c[] = {"bin/brokerctl", "frobnicate", NULL};
    const char *d[] = {"bin/brokerctl", NULL};
    char *out;

    (void)state;
    assert_int_equal(h_run(a, &out), 2);
    expect_in(out, "no command frobnicate");
    free(out);
    assert_int_equal(h_run(b, &out), 2);
    free(out);
    assert_int_equal(h_run(c, &out), 2);
    expect_in(out, "unknown command frobnicate");
    free(out);
    assert_int_equal(h_run(d, &out), 2);
    free(out);
}

static void
test_usage_errors_exit_2(void **state)
{
    char *out;

    (void)state;
    assert_int_equal(ctl(&out, "tenants", "extra", (char *)NULL), 2);
    expect_in(out, "usage: brokerctl tenants");
    free(out);
    assert_int_equal(ctl(&out, "tenant", (char *)NULL), 2);
    free(out);
    assert_int_equal(ctl(&out, "tenant", "frob", CORP1, (char *)NULL), 2);
    free(out);
    assert_int_equal(ctl(&out, "tenant", "show", "not/a*corp", (char *)NULL),
                     2);
    free(out);
    assert_int_equal(ctl(&out, "suite", "x", (char *)NULL), 2);
    free(out);
    assert_int_equal(ctl(&out, "key", (char *)NULL), 2);
    free(out);
    assert_int_equal(ctl(&out, "key", "frob", (char *)NULL), 2);
    free(out);
    assert_int_equal(ctl(&out, "key", "rotate", "--yes", (char *)NULL), 2);
    free(out);
    assert_int_equal(ctl(&out, "key", "destroy", "abc", "--yes", (char *)NULL),
                     2);
    free(out);
    assert_int_equal(ctl(&out, "key", "destroy", "0", "--yes", (char *)NULL),
                     2);
    free(out);
    assert_int_equal(ctl(&out, "key", "destroy", "--yes", (char *)NULL), 2);
    free(out);
    assert_int_equal(ctl(&out, "explain", CORP1, "reader", (char *)NULL), 2);
    expect_in(out, "usage: brokerctl explain CORPID SERVICE PATH");
    free(out);
    assert_int_equal(ctl(&out, "audit", "--bogus", (char *)NULL), 2);
    free(out);
    assert_int_equal(ctl(&out, "audit", "--corp", "a b", (char *)NULL), 2);
    free(out);
    assert_int_equal(
        ctl(&out, "--suite", "wwnosuchsuite", "tenants", (char *)NULL), 2);
    free(out);
}

static void
test_audit_bad_since(void **state)
{
    static const char *const bad[] = {
        "10x", "-5m", "5", "m", "", "1.5h", "10mm", "0m", "99999999999999999d"};
    char *out;
    size_t i;

    (void)state;
    for (i = 0; i < nitems(bad); i++) {
        assert_int_equal(ctl(&out, "audit", "--since", bad[i], (char *)NULL),
                         2);
        expect_in(out, "--since takes a number and s, m, h or d");
        free(out);
    }
}

/*---- tenants ----*/

static void
tenants_ready(void)
{
    tc_wait_status(S1, CORP1, "active", 30000);
    tc_wait_status(S1, CORP2, "active", 30000);
    tc_wait_status(S2, CORP2, "active", 30000);
    tc_wait_status(S1, CORP3, "active", 30000);
    Reader_secret = tc_svc_add("reader", "contacts.read", NULL, NULL);
    Sens_secret =
        tc_svc_add("sens", "contacts.read,member.sensitive", NULL, NULL);
    Reader_tok = tc_token_for(0, Reader_secret, CORP1);
}

static json_t *
find_tenant(json_t *arr, const char *suite, const char *corp)
{
    json_t *t;
    size_t i;

    json_array_foreach(arr, i,
                       t) if (strcmp(h_str(t, "suite_id"), suite) == 0 &&
                              strcmp(h_str(t, "corpid"), corp) == 0) return t;
    return NULL;
}

static void
test_tenants_json(void **state)
{
    json_t *arr, *t;
    int rc;

    (void)state;
    arr = ctlj(&rc, "tenants", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_true(json_is_array(arr));
    t = find_tenant(arr, S1, CORP1);
    assert_non_null(t);
    assert_string_equal(h_str(t, "status"), "active");
    assert_true(json_is_false(json_object_get(t, "reinstall_required")));
    assert_int_equal(json_integer_value(json_object_get(t, "dead_letters")), 0);
    assert_true(strlen(h_str(t, "corp_name")) > 0);
    assert_true(json_is_array(json_object_get(t, "scopes")));
    assert_non_null(find_tenant(arr, S2, CORP2));
    json_decref(arr);
    /* --suite narrows */
    arr = ctlj(&rc, "--suite", S2, "tenants", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(json_array_size(arr), 1);
    assert_non_null(find_tenant(arr, S2, CORP2));
    json_decref(arr);
}

/* Column where needle starts on line (display columns), or -1. */
static long
col_of(const char *line, size_t len, const char *needle, size_t from)
{
    const char *p = memmem(line + from, len - from, needle, strlen(needle));

    return p ? (long)cols(line, (size_t)(p - line)) : -1;
}

/* The tenants table: each column starts at the same display column on
 * every line, though corp names are Chinese (two columns a character). */
static void
test_tenants_table_aligned_by_display_width(void **state)
{
    static const char *const heads[] = {"SUITE", "STATUS", "LEVEL", "REINSTALL",
                                        "DEAD"};
    char *out, *line, *next;
    long hcol[5], c;
    size_t i, rows = 0, cjk = 0, len;

    (void)state;
    assert_int_equal(ctl(&out, "tenants", (char *)NULL), 0);
    len = strcspn(out, "\n");
    for (i = 0; i < nitems(heads); i++) {
        hcol[i] = col_of(out, len, heads[i], 0);
        assert_true(hcol[i] > 0);
    }
    assert_int_equal(strncmp(out, "CORPID", 6), 0);
    expect_in(out, "  NAME  ");
    for (line = out + len + 1; *line != '\0'; line = next) {
        next = strchr(line, '\n');
        next = next ? next + 1 : line + strlen(line);
        len = (size_t)(next - line);
        if (len <= 1)
            continue;
        rows++;
        cjk += has_cjk(line, len);
        /* the suite, then the status, right under their headers */
        c = col_of(line, len, "wwtestsuite0000", 0);
        assert_int_equal(c, hcol[0]);
        c = col_of(line, len, "active", 0);
        if (c < 0)
            c = col_of(line, len, "reinstall_required", 0);
        if (c < 0)
            c = col_of(line, len, "installing", 0);
        assert_int_equal(c, hcol[1]);
    }
    assert_true(rows >= 4);
    assert_true(cjk >= 4);
    free(out);
}

static int
lost_recorded(void *arg)
{
    (void)arg;
    return tc_suite_field(S1, "lost_authorizations") >= 1;
}

static int
dead_lettered(void *arg)
{
    (void)arg;
    return tc_suite_field(S1, "dead_letters") >= 1;
}

/* A lost authorization makes CORP4 reinstall_required; a change_auth of
 * CORP1 that keeps failing is dead-lettered: both show in tenants, the
 * dead letter counted for CORP1 only. */
static void
test_tenants_reinstall_and_dead_letters(void **state)
{
    json_t *arr, *t;
    char *out, *line;
    int rc;

    (void)state;
    h_sim_ok(MockPort, "POST", "/__mock/faults",
             "{\"path\":\"/cgi-bin/service/get_permanent_code\","
             "\"count\":1,\"drop_reply\":true}");
    tc_install(S1, CORP4, (long)time(NULL));
    assert_true(h_wait(lost_recorded, NULL, 30000));
    tc_corp_event(S1, "change_contact", CORP4, h_next_ts(), "ChangeType",
                  "delete_user");
    tc_wait_status(S1, CORP4, "reinstall_required", 30000);

    h_sim_ok(MockPort, "POST", "/__mock/faults",
             "{\"path\":\"/cgi-bin/service/get_auth_info\",\"count\":3,"
             "\"errcode\":40084}");
    tc_corp_event(S1, "change_auth", CORP1, h_next_ts(), NULL, NULL);
    assert_true(h_wait(dead_lettered, NULL, 60000));

    arr = ctlj(&rc, "tenants", (char *)NULL);
    assert_int_equal(rc, 0);
    t = find_tenant(arr, S1, CORP4);
    assert_non_null(t);
    assert_string_equal(h_str(t, "status"), "reinstall_required");
    assert_true(json_is_true(json_object_get(t, "reinstall_required")));
    t = find_tenant(arr, S1, CORP1);
    assert_int_equal(json_integer_value(json_object_get(t, "dead_letters")), 1);
    assert_true(json_is_false(json_object_get(t, "reinstall_required")));
    t = find_tenant(arr, S1, CORP3);
    assert_int_equal(json_integer_value(json_object_get(t, "dead_letters")), 0);
    json_decref(arr);

    assert_int_equal(ctl(&out, "tenants", (char *)NULL), 0);
    line = strstr(out, CORP4 "  ");
    assert_non_null(line);
    line[strcspn(line, "\n")] = '\0';
    expect_in(line, "reinstall_required");
    expect_in(line, "  yes  ");
    free(out);
}

static void
test_tenant_show_unknown_corp(void **state)
{
    char *out;

    (void)state;
    assert_int_equal(ctl(&out, "tenant", "show", CORP5, (char *)NULL), 1);
    expect_in(out, CORP5 " is not a tenant");
    free(out);
}

/*---- explain ----*/

static json_t *
row_of(json_t *rows, const char *field)
{
    json_t *r;
    size_t i;

    json_array_foreach(rows, i,
                       r) if (strcmp(h_str(r, "field"), field) == 0) return r;
    fprintf(stderr, "# no row for %s\n", field);
    fail();
    return NULL;
}

static void
expect_row(json_t *rows, const char *field, int kept, const char *why)
{
    json_t *r = row_of(rows, field);

    if (json_is_true(json_object_get(r, "kept")) != kept ||
        strstr(h_str(r, "reason"), why) == NULL) {
        fprintf(stderr, "# %s: kept %d, \"%s\"; wanted %d, \"%s\"\n", field,
                json_is_true(json_object_get(r, "kept")), h_str(r, "reason"),
                kept, why);
        fail();
    }
}

static void
test_explain_user_get_for_contacts_read(void **state)
{
    json_t *rows, *last;
    int rc;

    (void)state;
    rows = ctlj(&rc, "explain", CORP1, "reader", "/cgi-bin/user/get",
                (char *)NULL);
    assert_int_equal(rc, 0);
    expect_row(rows, "errcode", 1, "always kept");
    expect_row(rows, "userid", 1, "granted by the tenant (contact:base:base");
    expect_row(rows, "userid", 1, "allowed for the service");
    expect_row(rows, "mobile", 0, "never returned");
    expect_row(rows, "email", 0, "never returned");
    expect_row(rows, "gender", 0,
               "not allowed for the service (contact:sensitive:gender is "
               "not in its scopes: contacts.read)");
    expect_row(rows, "direct_leader", 0, "not allowed for the service");
    expect_row(rows, "extattr", 0, "never returned");
    expect_row(rows, "extattr.attrs", 0, "removed with extattr");
    expect_row(rows, "extattr.attrs[].type", 0, "removed with extattr");
    last = json_array_get(rows, json_array_size(rows) - 1);
    assert_string_equal(h_str(last, "field"), "*");
    assert_true(json_is_false(json_object_get(last, "kept")));
    assert_non_null(
        strstr(h_str(last, "reason"), "unknown fields are removed"));
    json_decref(rows);
}

/* A service that may see sensitive fields still gets none the tenant did
 * not grant. */
static void
test_explain_not_granted_by_tenant(void **state)
{
    json_t *rows;
    int rc;

    (void)state;
    rows = ctlj(&rc, "explain", CORP1, "sens", "user/get", (char *)NULL);
    assert_int_equal(rc, 0);
    expect_row(rows, "gender", 0,
               "not granted by the tenant (contact:sensitive:gender)");
    expect_row(rows, "avatar", 0, "not granted by the tenant");
    expect_row(rows, "mobile", 0, "never returned");
    expect_row(rows, "userid", 1, "granted by the tenant");
    json_decref(rows);
}

static void
test_explain_records_and_table(void **state)
{
    json_t *rows, *r;
    char *out;
    int rc;

    (void)state;
    rows = ctlj(&rc, "explain", CORP1, "reader", "cgi-bin/user/list",
                (char *)NULL);
    assert_int_equal(rc, 0);
    r = row_of(rows, "userlist");
    assert_true(json_is_true(json_object_get(r, "kept")));
    assert_non_null(strstr(h_str(r, "reason"), "out of range"));
    assert_string_equal(h_str(json_object_get(r, "record"), "kind"), "member");
    assert_string_equal(h_str(json_object_get(r, "record"), "id"), "userid");
    expect_row(rows, "userlist[].mobile", 0, "never returned");
    expect_row(rows, "userlist[].userid", 1, "granted by the tenant");
    json_decref(rows);

    assert_int_equal(ctl(&out, "explain", CORP1, "reader", "/cgi-bin/user/get",
                         (char *)NULL),
                     0);
    expect_in(out, "GET /cgi-bin/user/get");
    expect_in(out, "service:  reader, scopes contacts.read");
    expect_in(out, "result:   served;");
    expect_in(out, "FIELD");
    expect_in(out, "\nmobile ");
    expect_in(out, "never returned");
    expect_in(out, "* unknown fields are removed");
    free(out);
}

static void
test_explain_refusals(void **state)
{
    json_t *rows, *r;
    char *out;
    size_t i;
    int rc;

    (void)state;
    /* contacts.read has no customer scope: 48002, nothing kept */
    assert_int_equal(ctl(&out, "explain", CORP1, "reader",
                         "/cgi-bin/externalcontact/get", (char *)NULL),
                     0);
    expect_in(out, "refused with errcode 48002");
    expect_in(out, "not allowed for the service");
    free(out);
    rows = ctlj(&rc, "explain", CORP4, "reader", "/cgi-bin/user/get",
                (char *)NULL);
    assert_int_equal(rc, 0);
    json_array_foreach(rows, i, r)
        assert_true(json_is_false(json_object_get(r, "kept")));
    expect_row(rows, "errcode", 0, "request refused first (48004)");
    expect_row(rows, "userid", 0, "not granted by the tenant");
    json_decref(rows);
    assert_int_equal(ctl(&out, "explain", CORP4, "reader", "/cgi-bin/user/get",
                         (char *)NULL),
                     0);
    expect_in(out, "the tenant is reinstall_required");
    free(out);
}

static void
test_explain_errors(void **state)
{
    char *out;

    (void)state;
    assert_int_equal(ctl(&out, "explain", CORP1, "nosuchservice",
                         "/cgi-bin/user/get", (char *)NULL),
                     1);
    expect_in(out, "no service called nosuchservice");
    free(out);
    assert_int_equal(ctl(&out, "explain", CORP5, "reader", "/cgi-bin/user/get",
                         (char *)NULL),
                     1);
    expect_in(out, CORP5 " is not a tenant");
    free(out);
    assert_int_equal(ctl(&out, "explain", CORP1, "reader",
                         "/cgi-bin/user/create", (char *)NULL),
                     1);
    expect_in(out, "48002");
    free(out);
    assert_int_equal(ctl(&out, "explain", "bad/corp", "reader",
                         "/cgi-bin/user/get", (char *)NULL),
                     2);
    free(out);
}

/*---- explain of an event ----*/

static void
test_explain_event_fields(void **state)
{
    json_t *rows, *last;
    char *out;
    int rc;

    (void)state;
    rows = ctlj(&rc, "explain", CORP1, "reader",
                "event:change_contact/create_user", (char *)NULL);
    assert_int_equal(rc, 0);
    expect_row(rows, "SuiteId", 1, "always kept");
    expect_row(rows, "UserID", 1, "granted by the tenant (contact:base:base");
    expect_row(rows, "UserID", 1,
               "names the event's member: delivered only when it is in the "
               "service's range");
    expect_row(rows, "Mobile", 0, "never returned");
    expect_row(rows, "Gender", 0,
               "not allowed for the service (contact:sensitive:gender is "
               "not in its scopes: contacts.read)");
    expect_row(rows, "DirectLeader", 0, "not allowed for the service");
    expect_row(rows, "Department", 1, "one text, \",\" between items");
    expect_row(rows, "ExtAttr[].Name", 0, "removed with ExtAttr");
    last = json_array_get(rows, json_array_size(rows) - 1);
    assert_string_equal(h_str(last, "field"), "*");
    json_decref(rows);

    assert_int_equal(ctl(&out, "explain", CORP1, "reader",
                         "event:change_contact/create_user", (char *)NULL),
                     0);
    expect_in(out, "event:change_contact/create_user (command callback)");
    expect_in(out, "capability none");
    expect_in(out, "result:   delivered when its subject is in the service's "
                   "range;");
    expect_in(out, "\nMobile ");
    free(out);
}

static void
test_explain_event_refusals(void **state)
{
    json_t *rows;
    char *out;
    char *sec;
    int rc;

    (void)state;
    /* contacts.read does not open customer events */
    rows = ctlj(&rc, "explain", CORP1, "reader",
                "event:change_external_contact/add_external_contact",
                (char *)NULL);
    assert_int_equal(rc, 0);
    expect_row(rows, "SuiteId", 0, "event not delivered (permission)");
    expect_row(rows, "UserID", 0, "not allowed for the service");
    json_decref(rows);
    /* the WelcomeCode needs the capability besides the permission */
    sec = tc_svc_add("evcust", "external.customers", NULL, NULL);
    free(sec);
    rows = ctlj(&rc, "explain", CORP1, "evcust",
                "event:change_external_contact/add_external_contact",
                (char *)NULL);
    assert_int_equal(rc, 0);
    expect_row(rows, "UserID", 1, "names the event's follow_user");
    expect_row(rows, "WelcomeCode", 0,
               "the service does not hold the capability external.welcome");
    json_decref(rows);
    /* the one external.welcome service of this tenant only */
    assert_int_equal(ctl(&out, "service", "add", "evwelcome", "--scopes",
                         "external.customers", "--suite", S1, "--corps", CORP1,
                         "--capabilities", "external.welcome", (char *)NULL),
                     0);
    free(out);
    rows = ctlj(&rc, "explain", CORP1, "evwelcome",
                "change_external_contact/add_external_contact", (char *)NULL);
    /* without the event: prefix it is a path, and no such endpoint */
    assert_int_equal(rc, 1);
    json_decref(rows);
    rows = ctlj(&rc, "explain", CORP1, "evwelcome",
                "event:change_external_contact/add_external_contact",
                (char *)NULL);
    assert_int_equal(rc, 0);
    expect_row(rows, "WelcomeCode", 1, "needs the capability external.welcome");
    json_decref(rows);
    /* a whole-tenant event and a service with a range of its own */
    sec = tc_svc_add("evnarrow", "external.customers", "--parties", CORP1 ":2");
    free(sec);
    assert_int_equal(ctl(&out, "explain", CORP1, "evnarrow",
                         "event:change_external_tag/create", (char *)NULL),
                     0);
    expect_in(out, "result:   not delivered (narrowed)");
    free(out);
    assert_int_equal(ctl(&out, "explain", CORP1, "evcust",
                         "event:change_external_tag/create", (char *)NULL),
                     0);
    expect_in(out, "result:   delivered (a whole-tenant event)");
    free(out);
    /* data callbacks need the messages capability */
    assert_int_equal(
        ctl(&out, "explain", CORP1, "reader", "event:text", (char *)NULL), 0);
    expect_in(out, "result:   not delivered (capability): the event needs "
                   "the capability messages");
    free(out);
    /* an event nobody declared */
    assert_int_equal(ctl(&out, "explain", CORP1, "reader", "event:suite_ticket",
                         (char *)NULL),
                     1);
    expect_in(out, "event:suite_ticket is not declared");
    expect_in(out, "delivered to no service");
    free(out);
}

/*---- audit ----*/

/* Nonzero once the audit trail holds the reader's user/get of CORP1, with
 * errcode 0, fields stripped and a numeric time. */
static int
user_get_audited(void *arg)
{
    char *out = NULL, *line, *save = NULL;
    json_t *e;
    int found = 0;

    (void)arg;
    if (ctl(&out, "--json", "audit", "--since", "10m", (char *)NULL) != 0) {
        free(out);
        return 0;
    }
    for (line = strtok_r(out, "\n", &save); line != NULL && !found;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t jerr;

        e = json_loads(line, 0, &jerr);
        assert_non_null(e);
        found = strcmp(h_str(e, "type"), "request") == 0 &&
                strcmp(h_str(e, "endpoint"), "/cgi-bin/user/get") == 0 &&
                strcmp(h_str(e, "service"), "reader") == 0 &&
                strcmp(h_str(e, "corpid"), CORP1) == 0 &&
                json_integer_value(json_object_get(e, "errcode")) == 0 &&
                json_integer_value(json_object_get(e, "stripped")) > 0 &&
                json_is_integer(json_object_get(e, "at"));
        json_decref(e);
    }
    free(out);
    return found;
}

static void
test_audit_request_entry_without_values(void **state)
{
    char pq[400], user[64] = "", *out;
    json_t *v, *mock_user, *e, *ct;
    size_t i;
    const char *mobile, *email;
    long st;

    (void)state;
    /* a member in range, as the service sees it, with a mobile and an
     * email at WeCom */
    snprintf(pq, sizeof(pq),
             "/cgi-bin/user/simplelist?access_token=%s&department_id=2",
             Reader_tok);
    v = api(pq, &st);
    assert_int_equal(json_integer_value(json_object_get(v, "errcode")), 0);
    ct = h_sim_json(MockPort, "GET",
                    "/__mock/corp_token?suite_id=" S1 "&corpid=" CORP1, NULL);
    mock_user = NULL;
    json_array_foreach(json_object_get(v, "userlist"), i, e)
    {
        snprintf(pq, sizeof(pq), "/cgi-bin/user/get?access_token=%s&userid=%s",
                 h_str(ct, "access_token"), h_str(e, "userid"));
        mock_user = h_sim_json(MockPort, "GET", pq, NULL);
        if (strlen(h_str(mock_user, "mobile")) > 5 &&
            strlen(h_str(mock_user, "email")) > 5) {
            snprintf(user, sizeof(user), "%s", h_str(e, "userid"));
            break;
        }
        json_decref(mock_user);
        mock_user = NULL;
    }
    json_decref(ct);
    json_decref(v);
    assert_non_null(mock_user);
    mobile = h_str(mock_user, "mobile");
    email = h_str(mock_user, "email");
    snprintf(pq, sizeof(pq), "/cgi-bin/user/get?access_token=%s&userid=%s",
             Reader_tok, user);
    v = api(pq, &st);
    assert_int_equal(json_integer_value(json_object_get(v, "errcode")), 0);
    assert_null(json_object_get(v, "mobile"));
    json_decref(v);

    /* the entry goes to Redis with its batch, just after the reply */
    assert_true(h_wait(user_get_audited, NULL, 10000));
    /* the table, every entry, and never a value */
    assert_int_equal(ctl(&out, "audit", (char *)NULL), 0);
    expect_in(out, "TIME");
    expect_in(out, "/cgi-bin/user/get");
    expect_in(out, "lifecycle");
    expect_in(out, "grant_stored");
    assert_null(strstr(out, mobile));
    assert_null(strstr(out, email));
    free(out);
    assert_int_equal(ctl(&out, "--json", "audit", (char *)NULL), 0);
    assert_null(strstr(out, mobile));
    assert_null(strstr(out, email));
    free(out);
    json_decref(mock_user);
}

static void
test_audit_filters(void **state)
{
    char *out, *line, *save = NULL;
    json_t *e;
    size_t n = 0;

    (void)state;
    assert_int_equal(ctl(&out, "--json", "audit", "--service", "reader",
                         "--corp", CORP1, "--since", "1h", (char *)NULL),
                     0);
    for (line = strtok_r(out, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t jerr;

        e = json_loads(line, 0, &jerr);
        assert_string_equal(h_str(e, "service"), "reader");
        assert_string_equal(h_str(e, "corpid"), CORP1);
        json_decref(e);
        n++;
    }
    assert_true(n >= 2); /* gettoken, simplelist, user/get */
    free(out);
    assert_int_equal(
        ctl(&out, "--json", "audit", "--corp", CORP5, (char *)NULL), 0);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(
        ctl(&out, "audit", "--service", "nosuchservice", (char *)NULL), 1);
    expect_in(out, "no service called nosuchservice");
    free(out);
    /* a delivery names its event in the table as explain does */
    (void)h_redis_int(&H,
                      "XADD wb:audit * type delivery service reader corpid %s "
                      "info_type change_contact change_type update_user "
                      "result delivered",
                      CORP5);
    assert_int_equal(ctl(&out, "audit", "--corp", CORP5, (char *)NULL), 0);
    expect_in(out, "event:change_contact/update_user");
    expect_in(out, "result=delivered");
    free(out);
}

struct grep {
    const char *path, *what;
};

static int
file_has(void *arg)
{
    struct grep *g = arg;
    char *s = h_slurp(g->path);
    int yes = s != NULL && strstr(s, g->what) != NULL;

    free(s);
    return yes;
}

/* A Redis client (the follower) is blocked reading the audit stream. */
static int
follower_blocked(void *arg)
{
    redisContext *c = h_redis(&H);
    redisReply *r = c ? redisCommand(c, "CLIENT LIST") : NULL;
    int yes = r != NULL && r->type == REDIS_REPLY_STRING &&
              strstr(r->str, " cmd=xread ") != NULL;

    (void)arg;
    if (r != NULL)
        freeReplyObject(r);
    if (c != NULL)
        redisFree(c);
    return yes;
}

static void
test_audit_follow_until_interrupted(void **state)
{
    char log[400], conf_arg[400];
    const char *argv[] = {"bin/brokerctl", "-c",    conf_arg,
                          "--json",        "audit", "--follow",
                          "--service",     "sens",  NULL};
    struct grep g;
    char *t, *s;
    pid_t pid;

    (void)state;
    snprintf(conf_arg, sizeof(conf_arg), "%s", H.conf);
    snprintf(log, sizeof(log), "%s/follow.log", H.dir);
    pid = h_spawn(argv, log);
    assert_true(pid > 0);
    /* the entry must be a new one, seen by the follow and not by the
     * first read of the trail */
    assert_true(h_wait(follower_blocked, NULL, 10000));
    t = tc_token_for(0, Sens_secret, CORP1);
    g.path = log;
    g.what = "\"endpoint\":\"/cgi-bin/gettoken\"";
    assert_true(h_wait(file_has, &g, 10000));
    assert_int_equal(h_stop(pid, SIGINT), 0);
    s = h_slurp(log);
    assert_null(strstr(s, t));
    assert_null(strstr(s, "\"service\":\"reader\""));
    free(s);
    free(t);
}

/*---- tenant purge ----*/

static void
test_purge_refusals(void **state)
{
    char *out;

    (void)state;
    /* two suites: which one? */
    assert_int_equal(ctl(&out, "tenant", "purge", CORP2, "--yes", (char *)NULL),
                     2);
    expect_in(out, "give --suite");
    free(out);
    /* no --yes, nothing done */
    assert_int_equal(
        ctl(&out, "--suite", S1, "tenant", "purge", CORP2, (char *)NULL), 2);
    expect_in(out, "nothing done without --yes");
    free(out);
    tc_wait_status(S1, CORP2, "active", 30000);
    assert_int_equal(ctl(&out, "tenant", "purge", CORP5, "--yes", (char *)NULL),
                     1);
    expect_in(out, CORP5 " is not a tenant");
    free(out);
    assert_int_equal(
        ctl(&out, "tenant", "purge", "bad/corp", "--yes", (char *)NULL), 2);
    free(out);
}

static int
stale_dropped(void *arg)
{
    (void)arg;
    return tc_metric("wecom_broker_events_total{suite=\"" S1
                     "\",info_type=\"create_auth\",result=\"stale_dropped\"}") >
           0;
}

static const char *Probe;

/* Broker tokens (named by hash, outside the tenant's keys) of a tenant. */
static long
btokens_of(const char *suite, const char *corp)
{
    redisContext *c = h_redis(&H);
    redisReply *keys, *v;
    size_t i;
    long n = 0;

    keys = redisCommand(c, "KEYS wb:btok:*");
    for (i = 0; i < keys->elements; i++) {
        v = redisCommand(c, "HMGET %s suite corp", keys->element[i]->str);
        n += v->type == REDIS_REPLY_ARRAY && v->elements == 2 &&
             v->element[0]->str != NULL && v->element[1]->str != NULL &&
             strcmp(v->element[0]->str, suite) == 0 &&
             strcmp(v->element[1]->str, corp) == 0;
        freeReplyObject(v);
    }
    freeReplyObject(keys);
    redisFree(c);
    return n;
}

static int
token_refused(void *arg)
{
    json_t *o;
    long st;
    int yes;

    (void)arg;
    o = api(Probe, &st);
    yes = json_integer_value(json_object_get(o, "errcode")) == 40014;
    json_decref(o);
    return yes;
}

/* Everything of (S1, CORP2) goes, the data key first, and the broker
 * tokens a service held for it; S2's installation stays. */
static void
test_purge_leaves_nothing_of_the_tenant(void **state)
{
    char *secret, *tok, *text, *line, *save = NULL, pq[300];
    redisContext *sub = h_redis(&H);
    struct timeval tv = {10, 0};
    json_t *o, *rep, *arr;
    redisReply *r;
    long purged_at;
    int rc;

    (void)state;
    secret = tc_svc_add("purgesvc", "contacts.read", NULL, NULL);
    tok = tc_token_for(0, secret, CORP2);
    assert_int_equal(btokens_of(S1, CORP2), 1);
    assert_non_null(sub);
    r = redisCommand(sub, "SUBSCRIBE wb:inval");
    freeReplyObject(r);

    o = ctlj(&rc, "--suite", S1, "tenant", "purge", CORP2, "--yes",
             (char *)NULL);
    assert_int_equal(rc, 0);
    assert_string_equal(h_str(o, "status"), "cancelled");
    assert_string_equal(h_str(o, "suite_id"), S1);
    assert_true(strlen(h_str(o, "aof_rewrite")) > 0);
    purged_at = (long)json_integer_value(json_object_get(o, "purged_at"));
    assert_true(purged_at >= (long)time(NULL) - 30);
    rep = json_object_get(o, "deletion_report");
    assert_int_equal(json_integer_value(json_object_get(rep, "data_key")), 1);
    assert_int_equal(json_integer_value(json_object_get(rep, "tenant")), 1);
    assert_true(json_integer_value(json_object_get(rep, "directory")) >= 1);
    assert_true(json_integer_value(json_object_get(rep, "token")) >= 1);
    json_decref(o);

    /* every instance is told */
    redisSetTimeout(sub, tv);
    assert_int_equal(redisGetReply(sub, (void **)&r), REDIS_OK);
    assert_int_equal(r->elements, 3);
    assert_string_equal(r->element[2]->str, S1 " " CORP2);
    freeReplyObject(r);
    redisFree(sub);

    /* nothing of (S1, CORP2) left: only S2's installation and the audit
     * trail name the corp */
    text = tc_redis_text();
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strstr(line, CORP2) == NULL)
            continue;
        if (strstr(line, "{" CORP2 "}:" S2 ":") != NULL ||
            strcmp(line, S2 " " CORP2) == 0 || strcmp(line, CORP2) == 0 ||
            strstr(line, "wb:audit") != NULL)
            continue;
        fprintf(stderr, "# left behind: %s\n", line);
        fail();
    }
    free(text);

    assert_int_equal(btokens_of(S1, CORP2), 0);
    /* the old broker token is gone with it (an instance may hold it in
     * its cache for cache_max_age) */
    snprintf(pq, sizeof(pq),
             "/cgi-bin/user/simplelist?access_token=%s&department_id=2", tok);
    Probe = pq;
    assert_true(h_wait(token_refused, NULL, 10000));

    /* shown as cancelled, not listed, the other suite untouched */
    o = tenant_show(S1, CORP2);
    assert_string_equal(h_str(o, "status"), "cancelled");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(o, "deletion_report"), "data_key")),
                     1);
    json_decref(o);
    arr = ctlj(&rc, "tenants", (char *)NULL);
    assert_null(find_tenant(arr, S1, CORP2));
    assert_non_null(find_tenant(arr, S2, CORP2));
    json_decref(arr);
    tc_wait_status(S2, CORP2, "active", 30000);

    /* recorded in the audit trail */
    assert_int_equal(
        ctl(&text, "--json", "audit", "--corp", CORP2, (char *)NULL), 0);
    expect_in(text, "\"event\":\"purged\"");
    expect_in(text, "\"source\":\"brokerctl\"");
    free(text);

    /* a create_auth WeCom sent before the purge is dropped; a newer one
     * installs the corp again */
    tc_install(S1, CORP2, purged_at - 100);
    assert_true(h_wait(stale_dropped, NULL, 30000));
    tc_wait_status(S1, CORP2, "cancelled", 30000);
    tc_install(S1, CORP2, purged_at + 2);
    tc_wait_status(S1, CORP2, "active", 30000);
    free(tok);
    free(secret);
}

static void
test_purge_table_form_then_again(void **state)
{
    char *out;

    (void)state;
    assert_int_equal(ctl(&out, "tenant", "purge", CORP3, "--yes", (char *)NULL),
                     0);
    expect_in(out, "purged tenant " CORP3 " of suite " S1);
    expect_in(out, "keys removed: data_key 1, tenant 1, token ");
    expect_in(out, "AOF rewrite: ");
    free(out);
    assert_int_equal(ctl(&out, "tenant", "show", CORP3, (char *)NULL), 0);
    expect_in(out, "status:          cancelled");
    expect_in(out, "data_key 1");
    free(out);
    assert_int_equal(ctl(&out, "tenant", "purge", CORP3, "--yes", (char *)NULL),
                     1);
    expect_in(out, "purged already");
    free(out);
}

/*---- key rotation ----*/

/* Every data key in Redis, and how many are wrapped with version v. */
static long
count_dks(unsigned v, long *total)
{
    redisContext *c = h_redis(&H);
    redisReply *keys, *val;
    char want[16];
    size_t i;
    long n = 0;

    snprintf(want, sizeof(want), "k%u.", v);
    keys = redisCommand(c, "KEYS wb:*:dk");
    *total = (long)keys->elements;
    for (i = 0; i < keys->elements; i++) {
        val = redisCommand(c, "GET %s", keys->element[i]->str);
        n += val->type == REDIS_REPLY_STRING &&
             strncmp(val->str, want, strlen(want)) == 0;
        freeReplyObject(val);
    }
    freeReplyObject(keys);
    redisFree(c);
    return n;
}

static char *
master_path(void)
{
    static char p[400];

    snprintf(p, sizeof(p), "%s/var/master.key", H.dir);
    return p;
}

static long want_party;

static int
party_is(void *arg)
{
    json_t *t = tenant_show(S1, CORP1);
    json_t *p = json_object_get(json_object_get(t, "visible"), "parties");
    int ok = json_array_size(p) == 1 &&
             json_integer_value(json_array_get(p, 0)) == want_party;

    (void)arg;
    json_decref(t);
    return ok;
}

/* The broker reads CORP1: a change_auth (permanent code under the
 * tenant's data key) takes effect, and a service call gets data after
 * WeCom dropped the corp token (a fresh corp token needs the permanent
 * code too). */
static void
broker_reads_tenant(long party)
{
    char body[200], pq[300];
    json_t *v;
    long st;

    snprintf(body, sizeof(body),
             "{\"corpid\":\"" CORP1 "\",\"allow_party\":[%ld],"
             "\"allow_user\":[],\"allow_tag\":[]}",
             party);
    h_sim_ok(MockPort, "POST", "/__mock/privilege", body);
    tc_corp_event(S1, "change_auth", CORP1, h_next_ts(), NULL, NULL);
    want_party = party;
    assert_true(h_wait(party_is, NULL, 30000));
    h_sim_ok(MockPort, "POST", "/__mock/invalidate",
             "{\"corpid\":\"" CORP1 "\"}");
    snprintf(pq, sizeof(pq),
             "/cgi-bin/user/simplelist?access_token=%s&department_id=%ld",
             Reader_tok, party);
    v = api(pq, &st);
    if (json_integer_value(json_object_get(v, "errcode")) != 0) {
        char *s = json_dumps(v, 0);

        fprintf(stderr, "# %ld %s\n", st, s);
        free(s);
        fail();
    }
    json_decref(v);
}

static void
test_key_list_and_destroy_refusals(void **state)
{
    json_t *o, *v;
    char *out;
    long total, n;
    int rc;

    (void)state;
    n = count_dks(1, &total);
    assert_int_equal(n, total);
    assert_true(total >= 4); /* two suites, tenants */
    o = ctlj(&rc, "key", "list", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(json_integer_value(json_object_get(o, "current")), 1);
    v = json_array_get(json_object_get(o, "versions"), 0);
    assert_int_equal(json_integer_value(json_object_get(v, "version")), 1);
    assert_int_equal(json_integer_value(json_object_get(v, "data_keys")),
                     total);
    json_decref(o);
    assert_int_equal(ctl(&out, "key", "list", (char *)NULL), 0);
    expect_in(out, "VERSION  CURRENT  DATA KEYS");
    expect_in(out, "wraps new data keys");
    free(out);
    /* the only, current version */
    assert_int_equal(ctl(&out, "key", "destroy", "1", "--yes", (char *)NULL),
                     1);
    expect_in(out, "current master key version and the only one");
    free(out);
    assert_int_equal(ctl(&out, "key", "destroy", "1", (char *)NULL), 2);
    expect_in(out, "nothing done without --yes");
    free(out);
}

static void
test_key_rotate_add_only_then_rewrap_then_destroy(void **state)
{
    struct stat st;
    json_t *o;
    char *out, *file;
    long total, n;
    int rc;

    (void)state;
    o = ctlj(&rc, "key", "rotate", "--add-only", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(json_integer_value(json_object_get(o, "version")), 2);
    assert_null(json_object_get(o, "rewrapped"));
    json_decref(o);
    assert_int_equal(stat(master_path(), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    file = h_slurp(master_path());
    expect_in(file, "1 " H_MASTER_HEX "\n2 ");
    free(file);
    n = count_dks(1, &total);
    assert_int_equal(n, total);

    /* still in use: refused, the file unchanged */
    assert_int_equal(ctl(&out, "key", "destroy", "1", "--yes", (char *)NULL),
                     1);
    expect_in(out, "still wrapped with version 1");
    expect_in(out, "key rewrap");
    free(out);
    file = h_slurp(master_path());
    expect_in(file, "1 " H_MASTER_HEX "\n");
    free(file);
    assert_int_equal(ctl(&out, "key", "destroy", "9", "--yes", (char *)NULL),
                     1);
    expect_in(out, "has no version 9");
    free(out);

    /* every instance learns version 2, then the data keys move to it */
    reload_broker("1,2");
    o = ctlj(&rc, "key", "rewrap", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(json_integer_value(json_object_get(o, "rewrapped")),
                     total);
    assert_int_equal(json_integer_value(json_object_get(o, "failed")), 0);
    json_decref(o);
    n = count_dks(2, &total);
    assert_int_equal(n, total);
    n = count_dks(1, &total);
    assert_int_equal(n, 0);

    o = ctlj(&rc, "key", "destroy", "1", "--yes", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(json_integer_value(json_object_get(o, "destroyed")), 1);
    json_decref(o);
    file = h_slurp(master_path());
    assert_null(strstr(file, H_MASTER_HEX));
    assert_int_equal(strncmp(file, "2 ", 2), 0);
    free(file);

    /* the broker, without version 1, still reads every tenant */
    reload_broker("2");
    o = tenant_show(S1, CORP1);
    assert_string_equal(h_str(o, "status"), "active");
    json_decref(o);
    broker_reads_tenant(3);
}

static void
test_key_rotate_rewraps_everything(void **state)
{
    json_t *o, *v;
    char *out;
    long total, n;
    int rc;

    (void)state;
    assert_int_equal(ctl(&out, "key", "rotate", (char *)NULL), 0);
    expect_in(out, "master key version 3 added to ");
    expect_in(out, "re-wrapped under version 3");
    expect_in(out, "SIGHUP");
    free(out);
    n = count_dks(3, &total);
    assert_int_equal(n, total);
    reload_broker("2,3");
    assert_int_equal(ctl(&out, "key", "destroy", "2", "--yes", (char *)NULL),
                     0);
    expect_in(out, "master key version 2 removed");
    expect_in(out, "SIGHUP");
    free(out);
    reload_broker("3");
    broker_reads_tenant(2);
    o = ctlj(&rc, "key", "list", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_int_equal(json_array_size(json_object_get(o, "versions")), 1);
    v = json_array_get(json_object_get(o, "versions"), 0);
    assert_int_equal(json_integer_value(json_object_get(v, "version")), 3);
    assert_int_equal(json_integer_value(json_object_get(v, "data_keys")),
                     total);
    json_decref(o);
    /* every tenant still shows */
    o = ctlj(&rc, "tenants", (char *)NULL);
    assert_int_equal(rc, 0);
    assert_true(json_array_size(o) >= 4);
    json_decref(o);
}

/* Capabilities are stored as given and shown; external.welcome is held
 * by at most one live service per tenant, whichever way two services
 * would meet (any corp, a shared corp, any suite), and a record that
 * does not decode counts as holding it. */
static void
test_service_capabilities(void **state)
{
    static const char *const bad[] = {"", "bogus", "messages,messages",
                                      "messages,", "External.write"};
    char *out = NULL;
    json_t *v, *caps;
    size_t i;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ctl(&out, "service", "add", "capbad", "--scopes",
                             "contacts.read", "--capabilities", bad[i],
                             (char *)NULL),
                         2);
        expect_in(out, "--capabilities takes");
        free(out);
    }
    assert_int_equal(ctl(&out, "service", "show", "capbad", (char *)NULL), 1);
    free(out);

    assert_int_equal(ctl(&out, "service", "add", "welA", "--scopes",
                         "external.customers", "--suite", S1, "--corps",
                         "wwcapcorp01,wwcapcorp02", "--capabilities",
                         "messages,external.welcome", (char *)NULL),
                     0);
    free(out);
    v = ctlj(&rc, "service", "show", "welA", (char *)NULL);
    assert_int_equal(rc, 0);
    caps = json_object_get(v, "capabilities");
    assert_int_equal(json_array_size(caps), 2);
    assert_string_equal(json_string_value(json_array_get(caps, 0)),
                        "external.welcome");
    assert_string_equal(json_string_value(json_array_get(caps, 1)), "messages");
    json_decref(v);
    assert_int_equal(ctl(&out, "service", "show", "welA", (char *)NULL), 0);
    expect_in(out, "capabilities: external.welcome,messages");
    free(out);

    /* another corp, another suite: no tenant in common */
    assert_int_equal(ctl(&out, "service", "add", "welB", "--scopes",
                         "external.customers", "--suite", S1, "--corps",
                         "wwcapcorp03", "--capabilities", "external.welcome",
                         (char *)NULL),
                     0);
    free(out);
    assert_int_equal(ctl(&out, "service", "add", "welS2", "--scopes",
                         "external.customers", "--suite", S2, "--capabilities",
                         "external.welcome", (char *)NULL),
                     0);
    free(out);
    /* meeting welA through a shared corp, any corp, or any suite */
    assert_int_equal(ctl(&out, "service", "add", "welC", "--scopes",
                         "external.customers", "--suite", S1, "--corps",
                         "wwcapcorp09,wwcapcorp02", "--capabilities",
                         "external.welcome", (char *)NULL),
                     1);
    expect_in(out, "service welA already holds external.welcome");
    free(out);
    assert_int_equal(ctl(&out, "service", "add", "welC", "--scopes",
                         "external.customers", "--suite", S1, "--capabilities",
                         "external.welcome", (char *)NULL),
                     1);
    free(out);
    assert_int_equal(ctl(&out, "service", "add", "welC", "--scopes",
                         "external.customers", "--capabilities",
                         "external.welcome", "--corps", "wwcapcorp01",
                         (char *)NULL),
                     1);
    free(out);
    assert_int_equal(ctl(&out, "service", "show", "welC", (char *)NULL), 1);
    free(out);
    /* without the capability the same service is fine */
    assert_int_equal(ctl(&out, "service", "add", "welC", "--scopes",
                         "external.customers", "--suite", S1, "--corps",
                         "wwcapcorp02", "--capabilities", "external.write",
                         (char *)NULL),
                     0);
    free(out);
    /* revoked services hold nothing */
    assert_int_equal(ctl(&out, "service", "revoke", "welA", (char *)NULL), 0);
    free(out);
    assert_int_equal(ctl(&out, "service", "add", "welD", "--scopes",
                         "external.customers", "--suite", S1, "--corps",
                         "wwcapcorp02", "--capabilities", "external.welcome",
                         (char *)NULL),
                     0);
    free(out);
    /* a record that does not decode: in doubt, refused */
    assert_int_equal(ctl(&out, "service", "add", "welE", "--scopes",
                         "external.customers", "--suite", S1, "--corps",
                         "wwcapcorp07", (char *)NULL),
                     0);
    free(out);
    v = ctlj(&rc, "service", "show", "welE", (char *)NULL);
    assert_int_equal(
        h_redis_int(&H, "HSET %ssvc:{%s} capabilities bogus",
                    "wb:", json_string_value(json_object_get(v, "id"))),
        0);
    json_decref(v);
    assert_int_equal(ctl(&out, "service", "add", "welF", "--scopes",
                         "external.customers", "--suite", S1, "--corps",
                         "wwcapcorp08", "--capabilities", "external.welcome",
                         (char *)NULL),
                     1);
    expect_in(out, "does not decode");
    free(out);
    v = ctlj(&rc, "service", "show", "welE", (char *)NULL);
    assert_string_equal(json_string_value(json_object_get(v, "status")),
                        "unusable");
    json_decref(v);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_width_ascii_cjk_fullwidth),
        cmocka_unit_test(test_width_combining_and_zero_width),
        cmocka_unit_test(test_width_hostile_bytes),
        cmocka_unit_test(test_keyring_add_version_spells_out_bare_key),
        cmocka_unit_test(test_keyring_remove_version),
        cmocka_unit_test(test_keyring_file_errors_change_nothing),
        cmocka_unit_test(test_keyring_file_alloc_failures),
        cmocka_unit_test(test_keyring_rewrap_and_wrapped_version),
        cmocka_unit_test(test_help_lists_every_command),
        cmocka_unit_test(test_help_service_shows_every_verb_with_examples),
        cmocka_unit_test(test_help_unknown_is_usage_error),
        cmocka_unit_test(test_usage_errors_exit_2),
        cmocka_unit_test(test_audit_bad_since),
        cmocka_unit_test(test_tenants_json),
        cmocka_unit_test(test_tenants_table_aligned_by_display_width),
        cmocka_unit_test_teardown(test_tenants_reinstall_and_dead_letters,
                                  tc_clear_faults),
        cmocka_unit_test(test_tenant_show_unknown_corp),
        cmocka_unit_test(test_explain_user_get_for_contacts_read),
        cmocka_unit_test(test_explain_not_granted_by_tenant),
        cmocka_unit_test(test_explain_records_and_table),
        cmocka_unit_test(test_explain_refusals),
        cmocka_unit_test(test_explain_errors),
        cmocka_unit_test(test_explain_event_fields),
        cmocka_unit_test(test_explain_event_refusals),
        cmocka_unit_test_setup_teardown(test_audit_request_entry_without_values,
                                        tc_sim_leaky, tc_sim_strict),
        cmocka_unit_test(test_audit_filters),
        cmocka_unit_test(test_audit_follow_until_interrupted),
        cmocka_unit_test(test_purge_refusals),
        cmocka_unit_test(test_purge_leaves_nothing_of_the_tenant),
        cmocka_unit_test(test_purge_table_form_then_again),
        cmocka_unit_test(test_key_list_and_destroy_refusals),
        cmocka_unit_test(test_key_rotate_add_only_then_rewrap_then_destroy),
        cmocka_unit_test(test_key_rotate_rewraps_everything),
        cmocka_unit_test(test_service_capabilities),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
