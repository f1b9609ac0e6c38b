/*
 * A service's side of event delivery: `mock-wecom receive` against a
 * vector built here with fixed inputs (accepted and printed; a forged
 * signature, another receiveid, a foreign key and a broken body refused
 * and never printed), and the README's openssl steps ("For service
 * authors: receiving events") run on an event the broker really
 * delivered, agreeing with what the receiver decrypted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "broker.h"
#include "harness.h"
#include "simclient.h"
#include "tenantclient.h"
#include "wecom_crypto.h"

#define S1    H_SUITE
#define CORP1 "wwmockcorp0001"
/* the vector's token and key: not the suite's */
#define V_TOKEN "vectorToken42"
#define V_KEY   "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
#define V_SUITE "wwvectorsuite001"
#define V_XML                                                                  \
    "<xml><SuiteId><![CDATA[wwvectorsuite001]]></SuiteId><InfoType>"           \
    "<![CDATA[change_auth]]></InfoType><TimeStamp>1700000000</TimeStamp>"      \
    "<AuthCorpId><![CDATA[wwvectorcorp01]]></AuthCorpId></xml>"

static struct harness H;
static pid_t Mock;
static int MockPort;
static char Secret[256];

struct rcv {
    pid_t pid;
    int port;
    char log[400];
};

static int
port_written(void *arg)
{
    const char *path = arg;
    char *s = h_slurp(path);
    int ok = s != NULL && strtol(s, NULL, 10) > 0;

    free(s);
    return ok;
}

static void
rcv_start(struct rcv *r, const char *token, const char *key, const char *suite)
{
    char pf[400], *s;
    const char *argv[] = {"bin/mock-wecom", "receive",     "--token", token,
                          "--aes-key",      key,           "--suite", suite,
                          "--raw",          "--port-file", pf,        NULL};

    snprintf(pf, sizeof(pf), "%s/rcv-%s.port", H.dir, suite);
    snprintf(r->log, sizeof(r->log), "%s/rcv-%s.log", H.dir, suite);
    r->pid = h_spawn(argv, r->log);
    assert_true(r->pid > 0);
    assert_true(h_wait(port_written, pf, 10000));
    s = h_slurp(pf);
    r->port = (int)strtol(s, NULL, 10);
    free(s);
}

/* Lines of the receiver's output starting with prefix. */
static size_t
count_lines(const char *text, const char *prefix)
{
    size_t n = 0, len = strlen(prefix);
    const char *p = text;

    while (p != NULL && *p) {
        if (strncmp(p, prefix, len) == 0)
            n++;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return n;
}

/* The rest of the first line after prefix, into out. */
static int
line_after(const char *text, const char *prefix, char *out, size_t len)
{
    const char *p = text;
    size_t plen = strlen(prefix), n;

    while (p != NULL && *p) {
        if (strncmp(p, prefix, plen) == 0) {
            n = strcspn(p + plen, "\n");
            if (n >= len)
                return 0;
            memcpy(out, p + plen, n);
            out[n] = '\0';
            return 1;
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return 0;
}

/* POST the vector, built with key/token/receiveid given, to r; the
 * status and body. */
static long
post_vector(const struct rcv *r, const char *token, const char *key,
            const char *receiveid, int forge, char **body)
{
    static const unsigned char rnd[16] = "0123456789abcdef";
    struct wecom_crypto *c = NULL;
    char *enc = NULL, sig[WECOM_CRYPTO_SIG_SIZE], url[300], xml[2048];
    long st;

    assert_int_equal(wecom_crypto_new(token, key, &c), BRK_OK);
    assert_int_equal(wecom_crypto_encrypt_with_random(
                         c, rnd, V_XML, strlen(V_XML), receiveid, &enc),
                     BRK_OK);
    assert_int_equal(wecom_crypto_sign(c, "1700000000", "n0nce", enc, sig),
                     BRK_OK);
    if (forge)
        sig[0] = sig[0] == 'a' ? 'b' : 'a';
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/cb?msg_signature=%s&timestamp=1700000000"
             "&nonce=n0nce",
             r->port, sig);
    snprintf(xml, sizeof(xml),
             "<xml><ToUserName><![CDATA[%s]]></ToUserName><Encrypt><![CDATA["
             "%s]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>",
             receiveid, enc);
    st = h_http("POST", url, xml, strlen(xml), body);
    brk_free(enc);
    wecom_crypto_free(c);
    return st;
}

static void
test_receiver_vector(void **state)
{
    struct rcv r;
    char *body = NULL, *out, url[200];

    (void)state;
    rcv_start(&r, V_TOKEN, V_KEY, V_SUITE);
    assert_int_equal(post_vector(&r, V_TOKEN, V_KEY, V_SUITE, 0, &body), 200);
    assert_string_equal(body, "success");
    free(body);
    /* refused, never success: a forged signature, another receiveid, a
     * foreign token (403), a foreign key, a body with no Encrypt, a GET
     * (400) */
    assert_int_equal(post_vector(&r, V_TOKEN, V_KEY, V_SUITE, 1, &body), 403);
    assert_null(strstr(body ? body : "", "success"));
    free(body);
    assert_int_equal(
        post_vector(&r, V_TOKEN, V_KEY, "wwothersuite0001", 0, &body), 403);
    free(body);
    assert_int_equal(post_vector(&r, "otherToken", V_KEY, V_SUITE, 0, &body),
                     403);
    free(body);
    assert_int_equal(post_vector(&r, V_TOKEN,
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg",
                                 V_SUITE, 0, &body),
                     400);
    free(body);
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/cb?msg_signature=x&timestamp=1&nonce=n",
             r.port);
    assert_int_equal(h_http("POST", url, "<xml><a>1</a></xml>", 19, &body),
                     400);
    free(body);
    assert_int_equal(h_http("GET", url, NULL, 0, &body), 400);
    free(body);
    assert_int_equal(h_stop(r.pid, SIGTERM), 0);
    out = h_slurp(r.log);
    assert_non_null(out);
    /* exactly one event, no header id, the XML as encrypted */
    assert_int_equal(count_lines(out, "event "), 1);
    assert_int_equal(count_lines(out, "event -"), 1);
    assert_non_null(strstr(out, "\n" V_XML "\n"));
    assert_int_equal(count_lines(out, "mock-wecom receive: refused"), 6);
    free(out);
}

/* The README block marked events-example (owned). */
static char *
readme_block(void)
{
    char *readme = h_slurp("README.md"), *p, *end, *block;

    assert_non_null(readme);
    p = strstr(readme, "<!-- events-example:");
    assert_non_null(p);
    p = strstr(p, "```sh\n");
    assert_non_null(p);
    p += strlen("```sh\n");
    end = strstr(p, "\n```");
    assert_non_null(end);
    block = strndup(p, (size_t)(end - p) + 1);
    free(readme);
    return block;
}

/* Run the README's steps with these inputs; the exit status, *out. */
static int
run_steps(const char *token, const char *key, const char *query,
          const char *enc, const char *sig, char **out)
{
    char path[400], ts[64] = "", nonce[128] = "", *block = readme_block();
    const char *argv[] = {"/bin/sh", path, NULL};
    const char *p;
    FILE *f;
    int rc;

    p = strstr(query, "timestamp=");
    assert_non_null(p);
    snprintf(ts, sizeof(ts), "%.*s", (int)strcspn(p + 10, "&"), p + 10);
    p = strstr(query, "nonce=");
    assert_non_null(p);
    snprintf(nonce, sizeof(nonce), "%.*s", (int)strcspn(p + 6, "&"), p + 6);
    snprintf(path, sizeof(path), "%s/steps.sh", H.dir);
    f = fopen(path, "w");
    assert_non_null(f);
    /* the values are [A-Za-z0-9+/=] (tokens, keys, base64, hex, digits) */
    fprintf(f,
            "set -u\ncd '%s'\nTOKEN='%s'\nAESKEY='%s'\nTIMESTAMP='%s'\n"
            "NONCE='%s'\nMSG_SIGNATURE='%s'\nENCRYPT='%s'\n%s",
            H.dir, token, key, ts, nonce, sig, enc, block);
    assert_int_equal(fclose(f), 0);
    free(block);
    rc = h_run(argv, out);
    return rc;
}

static void
test_readme_steps_on_a_delivery(void **state)
{
    struct rcv r;
    json_t *v;
    int rc;
    char url[200], token[128], key[128], *out = NULL, *shell = NULL;
    char query[512], enc[4096], sig[64], xml[4096], line[4200];
    const char *p;

    (void)state;
    assert_int_equal(
        tc_world_start(&H, &Mock, &MockPort, Secret, sizeof(Secret)), 0);
    tc_install(S1, CORP1, h_next_ts());
    tc_wait_status(S1, CORP1, "active", 30000);
    /* the service's token and key, printed once */
    v = tc_ctl(&rc, "service", "deliver", "reader", "--url",
               "http://127.0.0.1:1/placeholder", (const char *)NULL);
    assert_int_equal(rc, 0);
    snprintf(token, sizeof(token), "%s", h_str(v, "token"));
    snprintf(key, sizeof(key), "%s", h_str(v, "encoding_aes_key"));
    assert_int_equal(strlen(key), 43);
    json_decref(v);
    rcv_start(&r, token, key, S1);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/wecom/events", r.port);
    v = tc_ctl(&rc, "service", "deliver", "reader", "--url", url,
               (const char *)NULL);
    assert_int_equal(rc, 0);
    json_decref(v);
    tc_corp_event(S1, "change_auth", CORP1, h_next_ts(), NULL, NULL);
    assert_true(h_log_wait(r.log, 0, "change_auth", 20000));
    out = h_slurp(r.log);
    assert_true(line_after(out, "query ", query, sizeof(query)));
    assert_true(line_after(out, "encrypt ", enc, sizeof(enc)));
    p = strstr(out, "\nevent ");
    assert_non_null(p);
    /* the event id line, then the XML */
    p = strchr(p + 1, '\n');
    assert_non_null(p);
    snprintf(xml, sizeof(xml), "%.*s", (int)strcspn(p + 1, "\n"), p + 1);
    p = strstr(query, "msg_signature=");
    assert_non_null(p);
    snprintf(sig, sizeof(sig), "%.*s", (int)strcspn(p + 14, "&"), p + 14);

    rc = run_steps(token, key, query, enc, sig, &shell);
    if (rc != 0)
        fprintf(stderr, "# README steps: %s\n", shell ? shell : "");
    assert_int_equal(rc, 0);
    snprintf(line, sizeof(line), "xml: %s\n", xml);
    assert_non_null(strstr(shell, line));
    assert_non_null(strstr(shell, "<InfoType><![CDATA[change_auth]]>"));
    assert_non_null(strstr(shell, "receiveid: " S1 "\n"));
    free(shell);
    /* the same steps refuse what was not signed with the token */
    sig[0] = sig[0] == 'a' ? 'b' : 'a';
    rc = run_steps(token, key, query, enc, sig, &shell);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(shell, "bad signature"));
    assert_null(strstr(shell, "xml:"));
    free(shell);
    free(out);
    h_stop(r.pid, SIGTERM);
    tc_world_stop(&H, Mock);
}

static int
setup_dir(void **state)
{
    (void)state;
    return h_setup(&H);
}

static int
teardown_dir(void **state)
{
    (void)state;
    h_teardown(&H);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_receiver_vector, setup_dir,
                                        teardown_dir),
        cmocka_unit_test(test_readme_steps_on_a_delivery),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
