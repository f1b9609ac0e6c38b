/*
 * HTTPS on the callback listener and SIGHUP reloads, end to end: the real
 * broker and redis-server, a self-signed certificate made with the openssl
 * command, callbacks signed and encrypted as WeCom does.
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "codec.h"
#include "harness.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

#define MASTER2_HEX                                                            \
    "2222222222222222222222222222222222222222222222222222222222222222"
#define WAIT_MS 10000

static struct harness H;
static struct wecom_crypto *C;
static char Cert1[400], Key1[400], Cert2[400], Key2[400];
static char Cert[400], Key[400], Scopes[300], Master[400];

/*---- files ----*/

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void
copy_file(const char *from, const char *to)
{
    char *txt = h_slurp(from);

    assert_true(strlen(txt) > 0);
    write_file(to, txt);
    free(txt);
}

/* broker.conf of the running broker: its ports, TLS on, extra appended to
 * [broker] (may override nothing: a repeated key is an error) and the
 * suite's secret given. */
static void
write_conf_to(const char *path, int cb_port, const char *extra,
              const char *secret)
{
    char *txt;
    size_t n = 4096 + strlen(extra);

    txt = malloc(n);
    assert_non_null(txt);
    snprintf(txt, n,
             "[broker]\n"
             "callback_listen = 127.0.0.1:%d\n"
             "internal_listen = 127.0.0.1:%d\n"
             "redis = unix://%s\n"
             "state_dir = ./var\n"
             "scopes_dir = ./scopes\n"
             "wecom_api_base = http://127.0.0.1:9\n"
             "event_max_attempts = 1000\n"
             "log_level = debug\n"
             "%s"
             "\n"
             "[suite " H_SUITE "]\n"
             "token = " H_TOKEN "\n"
             "encoding_aes_key = " H_AESKEY "\n"
             "secret = %s\n"
             "provider_corpid = " H_PROVIDER "\n",
             cb_port, H.int_port, H.redis_sock, extra, secret);
    write_file(path, txt);
    free(txt);
}

/* The default: text logs, TLS from tls/cert.pem and tls/key.pem. */
static const char *const Tls_conf = "log_format = text\n"
                                    "tls_cert_file = ./tls/cert.pem\n"
                                    "tls_key_file = ./tls/key.pem\n";

static void
write_conf(const char *extra)
{
    write_conf_to(H.conf, H.cb_port, extra ? extra : Tls_conf, H_SECRET);
}

static void
make_cert(const char *cert, const char *key, const char *cn)
{
    char subj[64], out[400];
    const char *argv[] = {"/usr/bin/openssl",
                          "req",
                          "-x509",
                          "-newkey",
                          "rsa:2048",
                          "-nodes",
                          "-days",
                          "1",
                          "-subj",
                          subj,
                          "-addext",
                          "subjectAltName=DNS:localhost,IP:127.0.0.1",
                          "-keyout",
                          key,
                          "-out",
                          cert,
                          NULL};
    char *log = NULL;

    snprintf(subj, sizeof(subj), "/CN=%s", cn);
    snprintf(out, sizeof(out), "%s", cert);
    if (h_run(argv, &log) != 0)
        fprintf(stderr, "openssl req failed:\n%s\n", log);
    free(log);
    assert_true(h_file_size(out) > 0);
}

/*---- requests ----*/

static char *
cb_url_tls(const char *pq)
{
    return h_cb_url_tls(&H, pq);
}

/* URL verification over HTTPS, the certificate checked against ca. */
static long
verify_get(const char *ca, const char *plain, char **body)
{
    char *enc = NULL, sig[WECOM_CRYPTO_SIG_SIZE], ts[24], *pct, q[2048];
    char *url;
    long st;

    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    assert_int_equal(
        wecom_crypto_encrypt(C, plain, strlen(plain), H_SUITE, &enc), BRK_OK);
    assert_int_equal(wecom_crypto_sign(C, ts, "12345", enc, sig), BRK_OK);
    pct = malloc(strlen(enc) * 3 + 1);
    codec_pct_encode(enc, pct);
    snprintf(q, sizeof(q),
             "/wecom/suite/" H_SUITE "/callback?msg_signature=%s&timestamp=%s"
             "&nonce=12345&echostr=%s",
             sig, ts, pct);
    url = cb_url_tls(q);
    st = h_https("GET", url, NULL, 0, ca, body);
    free(url);
    free(pct);
    brk_free(enc);
    return st;
}

/* A suite_ticket callback POSTed over HTTPS. */
static long
post_ticket(const char *ca, const char *ticket, char **body)
{
    char tsb[24], nonce[32], sig[WECOM_CRYPTO_SIG_SIZE], q[512];
    const char *k[] = {"SuiteId", "InfoType", "TimeStamp", "SuiteTicket"};
    const char *v[] = {H_SUITE, "suite_ticket", tsb, ticket};
    const char *ek[] = {"ToUserName", "Encrypt", "AgentID"};
    const char *ev[3] = {H_SUITE, NULL, ""};
    char *xml = NULL, *enc = NULL, *env = NULL, *url;
    size_t len, envlen;
    long st;

    snprintf(tsb, sizeof(tsb), "%ld", (long)time(NULL));
    snprintf(nonce, sizeof(nonce), "n%ld", h_now_ms());
    assert_int_equal(wecom_xml_build(k, v, 4, &xml, &len), BRK_OK);
    assert_int_equal(wecom_crypto_encrypt(C, xml, len, H_SUITE, &enc), BRK_OK);
    assert_int_equal(wecom_crypto_sign(C, tsb, nonce, enc, sig), BRK_OK);
    ev[1] = enc;
    assert_int_equal(wecom_xml_build(ek, ev, 3, &env, &envlen), BRK_OK);
    snprintf(q, sizeof(q),
             "/wecom/suite/" H_SUITE "/callback?msg_signature=%s&timestamp=%s"
             "&nonce=%s",
             sig, tsb, nonce);
    url = cb_url_tls(q);
    st = h_https("POST", url, env, envlen, ca, body);
    free(url);
    brk_free(env);
    brk_free(enc);
    brk_free(xml);
    return st;
}

/* errcode of a service API call made without a token: 41001 when the
 * path is declared in the scope maps, 48002 when it is not. */
static long
api_errcode(const char *path)
{
    char *url = h_int_url(&H, path), *body = NULL, *p;
    long st, code = -999;

    st = h_http("GET", url, NULL, 0, &body);
    free(url);
    assert_int_equal(st, 200);
    p = strstr(body, "\"errcode\":");
    if (p != NULL)
        code = strtol(p + 10, NULL, 10);
    free(body);
    return code;
}

/* The last line a reload writes, whichever way it went ("reload: scopes:"
 * with a colon is an error line before it). */
static const char *const Reload_ends[] = {
    "reload: scopes ", "reload incomplete", "reload rejected", "reload failed"};

struct reload_wait {
    size_t from;
};

static int
reload_ended(void *arg)
{
    struct reload_wait *w = arg;
    size_t i;

    for (i = 0; i < sizeof(Reload_ends) / sizeof(Reload_ends[0]); i++)
        if (h_log_wait(H.log, w->from, Reload_ends[i], 0))
            return 1;
    return 0;
}

/* The log past from (free). */
static char *
log_since(size_t from)
{
    char *txt = h_slurp(H.log), *out;

    out = strdup(strlen(txt) > from ? txt + from : "");
    free(txt);
    return out;
}

/* Send SIGHUP, wait for the reload to finish and return what it logged
 * (free). */
static char *
reload_log(void)
{
    struct reload_wait w = {h_file_size(H.log)};

    assert_int_equal(kill(H.broker_pid, SIGHUP), 0);
    assert_true(h_wait(reload_ended, &w, WAIT_MS));
    return log_since(w.from);
}

static int
wait_exit(pid_t pid, long ms)
{
    long end = h_now_ms() + ms;
    int status;

    while (h_now_ms() < end) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -2;
}

/*---- fixtures ----*/

static int
setup(void **state)
{
    char dir[300];

    (void)state;
    /* ports and key files come from the harness; the rest is ours */
    if (h_setup(&H) != 0 || h_write_conf(&H, 0, NULL) != 0)
        return -1;
    snprintf(dir, sizeof(dir), "%s/tls", H.dir);
    mkdir(dir, 0700);
    snprintf(Cert1, sizeof(Cert1), "%s/cert1.pem", dir);
    snprintf(Key1, sizeof(Key1), "%s/key1.pem", dir);
    snprintf(Cert2, sizeof(Cert2), "%s/cert2.pem", dir);
    snprintf(Key2, sizeof(Key2), "%s/key2.pem", dir);
    snprintf(Cert, sizeof(Cert), "%s/cert.pem", dir);
    snprintf(Key, sizeof(Key), "%s/key.pem", dir);
    snprintf(Master, sizeof(Master), "%s/var/master.key", H.dir);
    make_cert(Cert1, Key1, "localhost");
    make_cert(Cert2, Key2, "localhost");
    copy_file(Cert1, Cert);
    copy_file(Key1, Key);
    chmod(Key, 0600);
    /* a scope directory of our own, with one file of the defaults */
    snprintf(Scopes, sizeof(Scopes), "%s/scopes", H.dir);
    mkdir(Scopes, 0700);
    snprintf(Cert1, sizeof(Cert1), "%s/tags.json", Scopes);
    copy_file("scopes/tags.json", Cert1);
    snprintf(Cert1, sizeof(Cert1), "%s/cert1.pem", dir);
    write_conf(NULL);
    if (h_broker_start(&H) != 0) {
        fprintf(stderr, "cannot start the broker with TLS\n");
        return -1;
    }
    return wecom_crypto_new(H_TOKEN, H_AESKEY, &C) == BRK_OK ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    wecom_crypto_free(C);
    h_teardown(&H);
    return 0;
}

/*---- HTTPS ----*/

static void
test_https_url_verification(void **state)
{
    char *body = NULL;

    (void)state;
    /* the chain is checked against our certificate: the broker presents
     * it, for 127.0.0.1 */
    assert_int_equal(verify_get(Cert1, "tls-echo-2718", &body), 200);
    assert_string_equal(body, "tls-echo-2718");
    free(body);
}

static void
test_https_other_ca_refused(void **state)
{
    char *body = NULL;

    (void)state;
    /* a client trusting only another certificate refuses ours */
    assert_int_equal(verify_get(Cert2, "never-seen", &body), -1);
    free(body);
}

static void
test_https_post_suite_ticket_acked(void **state)
{
    char *body = NULL;
    redisContext *c;
    redisReply *r;

    (void)state;
    assert_int_equal(post_ticket(Cert1, "ticket-over-https-1", &body), 200);
    assert_string_equal(body, "success");
    free(body);
    /* stored before the ack, sealed */
    c = h_redis(&H);
    assert_non_null(c);
    r = redisCommand(c, "HGET wb:{" H_SUITE "}:ticket ts");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);
    redisFree(c);
}

static void
test_plain_http_to_tls_port_fails(void **state)
{
    char *url = h_cb_url(&H, "/wecom/suite/" H_SUITE "/callback"), *body;
    char *body2 = NULL;

    (void)state;
    body = NULL;
    assert_int_equal(h_http("GET", url, NULL, 0, &body), -1);
    free(body);
    free(url);
    /* and the listener is still fine afterwards */
    assert_int_equal(verify_get(Cert1, "after-plain", &body2), 200);
    free(body2);
}

static void
test_internal_listener_stays_plain(void **state)
{
    char *url = h_int_url(&H, "/healthz"), *body = NULL;

    (void)state;
    assert_int_equal(h_http("GET", url, NULL, 0, &body), 200);
    assert_string_equal(body, "ok");
    free(body);
    free(url);
}

/* A handshake at exactly one protocol version, with everything else as
 * permissive as the client allows. 1 when it completes. */
static int
handshake_at(int version)
{
    struct sockaddr_in sa;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok = 0;

    assert_non_null(ctx);
    assert_true(fd >= 0);
    SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0");
    SSL_CTX_set_min_proto_version(ctx, version);
    SSL_CTX_set_max_proto_version(ctx, version);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)H.cb_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    ok = SSL_connect(ssl) == 1;
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return ok;
}

static void
test_tls12_accepted(void **state)
{
    (void)state;
    assert_int_equal(handshake_at(TLS1_2_VERSION), 1);
    assert_int_equal(handshake_at(TLS1_3_VERSION), 1);
}

static void
test_tls11_refused(void **state)
{
    (void)state;
    /* the client offers TLS 1.1 with any cipher; the broker says no */
    assert_int_equal(handshake_at(TLS1_1_VERSION), 0);
    assert_int_equal(handshake_at(TLS1_VERSION), 0);
}

/*---- startup failures ----*/

/* Start a second broker on fresh ports with tls files cert and key;
 * returns its exit status and *log its log (free). */
static int
start_with_tls(const char *cert, const char *key, char **log)
{
    char conf[400], logpath[400], extra[1200];
    pid_t pid;
    int rc;

    snprintf(conf, sizeof(conf), "%s/bad.conf", H.dir);
    snprintf(logpath, sizeof(logpath), "%s/bad.log", H.dir);
    unlink(logpath);
    snprintf(extra, sizeof(extra),
             "log_format = text\ntls_cert_file = %s\ntls_key_file = %s\n", cert,
             key);
    write_conf_to(conf, h_free_port(), extra, H_SECRET);
    pid = h_spawn_broker(conf, logpath);
    assert_true(pid > 0);
    rc = wait_exit(pid, WAIT_MS);
    *log = h_slurp(logpath);
    return rc;
}

static void
test_missing_cert_exits_1(void **state)
{
    char missing[400], *log = NULL;

    (void)state;
    snprintf(missing, sizeof(missing), "%s/tls/missing.pem", H.dir);
    assert_int_equal(start_with_tls(missing, Key1, &log), 1);
    assert_non_null(strstr(log, "tls_cert_file"));
    assert_non_null(strstr(log, missing));
    assert_non_null(strstr(log, "No such file"));
    free(log);
}

static void
test_garbage_cert_exits_1(void **state)
{
    char bad[400], *log = NULL;

    (void)state;
    snprintf(bad, sizeof(bad), "%s/tls/garbage.pem", H.dir);
    write_file(bad, "this is not a certificate\n");
    assert_int_equal(start_with_tls(bad, Key1, &log), 1);
    assert_non_null(strstr(log, bad));
    free(log);
}

static void
test_mismatched_key_exits_1(void **state)
{
    char *log = NULL;

    (void)state;
    assert_int_equal(start_with_tls(Cert1, Key2, &log), 1);
    assert_non_null(strstr(log, "tls_key_file"));
    assert_non_null(strstr(log, Key2));
    free(log);
}

static void
test_check_flag_names_bad_key(void **state)
{
    char conf[400], extra[1200], missing[400], *out = NULL;
    const char *argv[] = {"bin/wecom-broker", "-c", conf, "-t", NULL};

    (void)state;
    snprintf(conf, sizeof(conf), "%s/check.conf", H.dir);
    snprintf(missing, sizeof(missing), "%s/tls/nokey.pem", H.dir);
    snprintf(extra, sizeof(extra), "tls_cert_file = %s\ntls_key_file = %s\n",
             Cert1, missing);
    write_conf_to(conf, h_free_port(), extra, H_SECRET);
    assert_int_equal(h_run(argv, &out), 1);
    assert_non_null(strstr(out, missing));
    assert_null(strstr(out, "configuration OK"));
    free(out);
    /* and the good pair passes */
    snprintf(extra, sizeof(extra), "tls_cert_file = %s\ntls_key_file = %s\n",
             Cert1, Key1);
    write_conf_to(conf, h_free_port(), extra, H_SECRET);
    assert_int_equal(h_run(argv, &out), 0);
    assert_non_null(strstr(out, "configuration OK"));
    free(out);
}

/*---- SIGHUP ----*/

static void
test_reload_adds_scope_file(void **state)
{
    char to[400], *log;

    (void)state;
    assert_int_equal(api_errcode("/cgi-bin/tag/list"), 41001);
    assert_int_equal(api_errcode("/cgi-bin/department/list"), 48002);
    snprintf(to, sizeof(to), "%s/departments.json", Scopes);
    copy_file("scopes/departments.json", to);
    log = reload_log();
    assert_non_null(strstr(log, "reload: scopes 5 endpoints, keys versions "
                                "1, tls reloaded"));
    free(log);
    assert_int_equal(api_errcode("/cgi-bin/department/list"), 41001);
    assert_int_equal(api_errcode("/cgi-bin/tag/list"), 41001);
}

static void
test_reload_broken_scope_keeps_old(void **state)
{
    char bad[400], *log;

    (void)state;
    snprintf(bad, sizeof(bad), "%s/zz_broken.json", Scopes);
    write_file(bad, "{\n"
                    "  \"endpoints\": [\n"
                    "    {\"pth\": \"/cgi-bin/agent/get\"}\n"
                    "  ]\n"
                    "}\n");
    log = reload_log();
    assert_non_null(strstr(log, "zz_broken.json:3:"));
    assert_non_null(strstr(log, "reload incomplete: scopes kept "
                                "(5 endpoints)"));
    free(log);
    /* the previous maps still serve: declared paths are not 48002 */
    assert_int_equal(api_errcode("/cgi-bin/department/list"), 41001);
    assert_int_equal(api_errcode("/cgi-bin/tag/get"), 41001);
    assert_int_equal(api_errcode("/cgi-bin/agent/get"), 48002);
    unlink(bad);
    log = reload_log();
    assert_non_null(strstr(log, "reload: scopes 5 endpoints"));
    free(log);
}

static int
suite_dk_is_v2(void *arg)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    int ok = 0;

    (void)arg;
    if (c == NULL)
        return 0;
    r = redisCommand(c, "GET wb:{" H_SUITE "}:dk");
    ok = r != NULL && r->type == REDIS_REPLY_STRING &&
         strncmp(r->str, "k2.", 3) == 0;
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return ok;
}

static void
test_reload_new_key_version(void **state)
{
    char *log, *body = NULL;

    (void)state;
    write_file(Master, "1 " H_MASTER_HEX "\n2 " MASTER2_HEX "\n");
    log = reload_log();
    assert_non_null(strstr(log, "keys versions 1,2"));
    assert_non_null(strstr(log, "master key version 2 is now current"));
    free(log);
    /* the suites use the new keyring: a Redis that lost everything gets
     * a fresh suite data key, wrapped under version 2 */
    h_redis_stop(&H);
    assert_int_equal(h_redis_start(&H), 0);
    assert_true(h_wait(suite_dk_is_v2, NULL, WAIT_MS));
    /* and callbacks are sealed with it */
    assert_int_equal(post_ticket(Cert1, "ticket-after-rotation", &body), 200);
    assert_string_equal(body, "success");
    free(body);
}

static void
test_reload_bad_key_file_keeps_old(void **state)
{
    char *log;

    (void)state;
    write_file(Master, "1 " H_MASTER_HEX "\n2 nothex\n");
    log = reload_log();
    assert_non_null(strstr(log, "reload: keys: "));
    assert_non_null(strstr(log, "master.key"));
    assert_non_null(strstr(log, "keys kept (versions 1,2)"));
    free(log);
    write_file(Master, "1 " H_MASTER_HEX "\n2 " MASTER2_HEX "\n");
}

static void
test_reload_new_certificate(void **state)
{
    char *log, *body = NULL;

    (void)state;
    copy_file(Cert2, Cert);
    copy_file(Key2, Key);
    log = reload_log();
    assert_non_null(strstr(log, "tls reloaded"));
    free(log);
    assert_int_equal(verify_get(Cert2, "new-cert", &body), 200);
    assert_string_equal(body, "new-cert");
    free(body);
    body = NULL;
    assert_int_equal(verify_get(Cert1, "old-cert", &body), -1);
    free(body);
}

static void
test_reload_bad_certificate_keeps_old(void **state)
{
    char *log, *body = NULL;

    (void)state;
    write_file(Cert, "-----BEGIN CERTIFICATE-----\nbroken\n");
    log = reload_log();
    assert_non_null(strstr(log, "tls_cert_file"));
    assert_non_null(strstr(log, "cert.pem"));
    assert_non_null(strstr(log, "tls kept"));
    free(log);
    /* still the certificate loaded last */
    assert_int_equal(verify_get(Cert2, "kept-cert", &body), 200);
    free(body);
    copy_file(Cert2, Cert);
}

static void
test_reload_changed_listen_rejected(void **state)
{
    char *log, *url, *body = NULL;
    int port = h_free_port();

    (void)state;
    write_conf_to(H.conf, port, Tls_conf, H_SECRET);
    log = reload_log();
    assert_non_null(strstr(log, "reload rejected: callback_listen changed"));
    assert_null(strstr(log, "reload: scopes"));
    free(log);
    /* the old listener serves, the new address is not bound */
    assert_int_equal(verify_get(Cert2, "same-port", &body), 200);
    free(body);
    body = NULL;
    url = malloc(128);
    snprintf(url, 128, "https://127.0.0.1:%d/healthz", port);
    assert_int_equal(h_https("GET", url, NULL, 0, NULL, &body), -1);
    free(body);
    free(url);
    write_conf(NULL);
}

static void
test_reload_bad_config_rejected(void **state)
{
    char *log, *body = NULL;
    char extra[600];

    (void)state;
    snprintf(extra, sizeof(extra), "%sno_such_key = 1\n", Tls_conf);
    write_conf(extra);
    log = reload_log();
    assert_non_null(strstr(log, "reload failed: "));
    assert_non_null(strstr(log, "broker.conf:"));
    free(log);
    assert_int_equal(verify_get(Cert2, "still-up", &body), 200);
    free(body);
    assert_int_equal(api_errcode("/cgi-bin/department/list"), 41001);
    write_conf(NULL);
}

static void
test_reload_suite_change_needs_restart(void **state)
{
    char *log;

    (void)state;
    write_conf_to(H.conf, H.cb_port, Tls_conf, "another-suite-secret-77");
    log = reload_log();
    assert_non_null(strstr(log, "needs a restart: [suite " H_SUITE "]"));
    assert_null(strstr(log, "another-suite-secret-77"));
    free(log);
    write_conf(NULL);
}

static void
test_reload_log_format(void **state)
{
    char extra[600], *log;

    (void)state;
    snprintf(extra, sizeof(extra),
             "log_format = json\n"
             "tls_cert_file = ./tls/cert.pem\n"
             "tls_key_file = ./tls/key.pem\n");
    write_conf(extra);
    log = reload_log();
    assert_non_null(strstr(log, "{\"ts\":"));
    assert_non_null(strstr(log, "\"msg\":\"reload: scopes"));
    free(log);
    write_conf(NULL);
    log = reload_log();
    assert_null(strstr(log, "\"msg\":\"reload: scopes"));
    assert_non_null(strstr(log, " reload: scopes"));
    free(log);
}

static void
test_reload_repeated_while_serving(void **state)
{
    char *body = NULL;
    size_t from = h_file_size(H.log);
    int i;

    (void)state;
    /* maps and keyrings replaced under traffic are retired, not freed
     * under a request */
    for (i = 0; i < 10; i++) {
        assert_int_equal(kill(H.broker_pid, SIGHUP), 0);
        assert_int_equal(api_errcode("/cgi-bin/department/list"), 41001);
        assert_int_equal(verify_get(Cert2, "busy", &body), 200);
        free(body);
        body = NULL;
    }
    assert_true(h_log_wait(H.log, from, "reload: scopes", WAIT_MS));
    assert_int_equal(api_errcode("/cgi-bin/tag/list"), 41001);
}

static int
broker_ready(void *arg)
{
    char *url = h_int_url(&H, "/readyz"), *body = NULL;
    long st = h_http("GET", url, NULL, 0, &body);

    (void)arg;
    free(url);
    free(body);
    return st == 200;
}

static void
test_reload_keeps_map_of_request_in_flight(void **state)
{
    char tok[80], path[160], *log;
    size_t from;
    pid_t child;
    int status;

    (void)state;
    /* a service request waiting on a stopped Redis stays in flight */
    memset(tok, 'a', 64);
    tok[64] = '\0';
    snprintf(path, sizeof(path), "/cgi-bin/tag/list?access_token=%s", tok);
    assert_int_equal(kill(H.redis_pid, SIGSTOP), 0);
    child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char *url = h_int_url(&H, path), *body = NULL;
        long st = h_http("GET", url, NULL, 0, &body);

        _exit(st > 0 ? 0 : 1);
    }
    /* pacing: a request stalled on the stopped Redis shows nowhere outside
     * the broker; this lets it arrive before the reload */
    usleep(300000);
    from = h_file_size(H.log);
    log = reload_log();
    assert_non_null(strstr(log, "reload: scopes 5 endpoints"));
    /* the map the request started with outlives the swap... */
    assert_null(strstr(log, "freed the replaced scope map"));
    free(log);
    assert_int_equal(kill(H.redis_pid, SIGCONT), 0);
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_int_equal(WEXITSTATUS(status), 0);
    /* ...and is freed once the request is over */
    assert_true(
        h_log_wait(H.log, from, "freed the replaced scope map", WAIT_MS));
    assert_true(h_wait(broker_ready, NULL, WAIT_MS));
}

static void
test_sigterm_after_reloads_exits_zero(void **state)
{
    (void)state;
    assert_int_equal(h_broker_stop(&H, SIGTERM), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_https_url_verification),
        cmocka_unit_test(test_https_other_ca_refused),
        cmocka_unit_test(test_https_post_suite_ticket_acked),
        cmocka_unit_test(test_plain_http_to_tls_port_fails),
        cmocka_unit_test(test_internal_listener_stays_plain),
        cmocka_unit_test(test_tls12_accepted),
        cmocka_unit_test(test_tls11_refused),
        cmocka_unit_test(test_missing_cert_exits_1),
        cmocka_unit_test(test_garbage_cert_exits_1),
        cmocka_unit_test(test_mismatched_key_exits_1),
        cmocka_unit_test(test_check_flag_names_bad_key),
        cmocka_unit_test(test_reload_adds_scope_file),
        cmocka_unit_test(test_reload_broken_scope_keeps_old),
        cmocka_unit_test(test_reload_new_key_version),
        cmocka_unit_test(test_reload_bad_key_file_keeps_old),
        cmocka_unit_test(test_reload_new_certificate),
        cmocka_unit_test(test_reload_bad_certificate_keeps_old),
        cmocka_unit_test(test_reload_changed_listen_rejected),
        cmocka_unit_test(test_reload_bad_config_rejected),
        cmocka_unit_test(test_reload_suite_change_needs_restart),
        cmocka_unit_test(test_reload_log_format),
        cmocka_unit_test(test_reload_repeated_while_serving),
        cmocka_unit_test(test_reload_keeps_map_of_request_in_flight),
        cmocka_unit_test(test_sigterm_after_reloads_exits_zero),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
