/*
 * The daemon's life: check mode, embedded Redis (ready, never orphaned, one
 * broker per state_dir), readiness, graceful stop with a request in flight,
 * and a Redis that stops answering.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "wecom_crypto.h"
#include "wecom_xml.h"

static struct harness H;

static int
setup(void **state)
{
    (void)state;
    return h_setup(&H);
}

static int
teardown(void **state)
{
    (void)state;
    h_teardown(&H);
    return 0;
}

/* After each test: no broker left running. */
static int
stop_broker(void **state)
{
    (void)state;
    if (H.broker_pid > 0)
        h_broker_stop(&H, SIGKILL);
    return 0;
}

/* First child of ppid whose command is redis-server, or 0. */
static pid_t
redis_child_of(pid_t ppid)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    char path[300], buf[512], *p;
    pid_t found = 0;
    FILE *f;
    int pid, parent;

    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        f = fopen(path, "r");
        if (f == NULL)
            continue;
        if (fgets(buf, sizeof(buf), f) != NULL) {
            p = strrchr(buf, ')');
            if (p != NULL && sscanf(buf, "%d", &pid) == 1 &&
                sscanf(p + 2, "%*c %d", &parent) == 1 && parent == ppid &&
                strstr(buf, "(redis-server)") != NULL)
                found = pid;
        }
        fclose(f);
    }
    if (d != NULL)
        closedir(d);
    return found;
}

static pid_t watched;

static int
watched_gone(void *arg)
{
    char path[64];
    char buf[256];
    FILE *f;
    int gone = 1;

    (void)arg;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)watched);
    f = fopen(path, "r");
    if (f != NULL) {
        /* a zombie has exited; it only waits for its parent to reap it */
        if (fgets(buf, sizeof(buf), f) != NULL) {
            char *p = strrchr(buf, ')');
            gone = p != NULL && p[2] == 'Z';
        } else {
            gone = 0;
        }
        fclose(f);
    }
    return gone;
}

static long
get(const char *path, char **body)
{
    char *url = h_int_url(&H, path);
    long st = h_http("GET", url, NULL, 0, body);

    free(url);
    return st;
}

/*---- check mode ----*/

static void
test_check_mode_ok(void **state)
{
    const char *argv[] = {"bin/wecom-broker", "-c", H.conf, "-t", NULL};
    char *out;

    (void)state;
    assert_int_equal(h_write_conf(&H, 0, NULL), 0);
    assert_int_equal(h_run(argv, &out), 0);
    /* without audit_file the trail lasts only audit_max_age: said so */
    assert_non_null(strstr(out, "warning: audit_file is not set"));
    assert_non_null(strstr(out, "configuration OK\n"));
    free(out);
    {
        char extra[600];

        snprintf(extra, sizeof(extra), "audit_file = %s/audit.jsonl\n", H.dir);
        assert_int_equal(h_write_conf(&H, 0, extra), 0);
    }
    assert_int_equal(h_run(argv, &out), 0);
    assert_string_equal(out, "configuration OK\n");
    free(out);
}

static void
test_check_mode_error_names_file_and_line(void **state)
{
    char path[400], want[420], *out;
    const char *argv[] = {"bin/wecom-broker", "-c", path, "-t", NULL};
    FILE *f;

    (void)state;
    snprintf(path, sizeof(path), "%s/bad.conf", H.dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "[broker]\nstate_dir = ./var\nno_such_key = 1\n");
    fclose(f);
    assert_int_equal(h_run(argv, &out), 1);
    snprintf(want, sizeof(want), "%s:3: ", path);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "no_such_key"));
    free(out);
}

static void
test_usage_and_version(void **state)
{
    const char *help[] = {"bin/wecom-broker", "-h", NULL};
    const char *bad[] = {"bin/wecom-broker", "-x", NULL};
    const char *ver[] = {"bin/wecom-broker", "-V", NULL};
    char *out;

    (void)state;
    assert_int_equal(h_run(help, &out), 0);
    assert_non_null(strstr(out, "usage: wecom-broker"));
    free(out);
    assert_int_equal(h_run(bad, &out), 2);
    free(out);
    assert_int_equal(h_run(ver, &out), 0);
    assert_non_null(strstr(out, "wecom-broker "));
    free(out);
}

/*---- embedded Redis ----*/

static void
test_embedded_ready_then_clean_stop(void **state)
{
    char path[400], *body, *log;
    struct stat st;
    pid_t child;

    (void)state;
    snprintf(path, sizeof(path), "%s/var/master.key", H.dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/var/index.key", H.dir);
    unlink(path);
    assert_int_equal(h_write_conf(&H, 1, NULL), 0);
    assert_int_equal(h_broker_start(&H), 0);
    assert_int_equal(get("/readyz", &body), 200);
    assert_string_equal(body, "{\"ready\":true,\"reasons\":[]}");
    free(body);
    child = redis_child_of(H.broker_pid);
    assert_true(child > 0);
    /* generated dev keys, private to the owner */
    snprintf(path, sizeof(path), "%s/var/master.key", H.dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);
    snprintf(path, sizeof(path), "%s/var/appendonlydir", H.dir);
    assert_int_equal(stat(path, &st), 0);
    log = h_slurp(H.log);
    assert_non_null(strstr(log, "generated a new master key"));
    assert_non_null(strstr(log, "embedded redis-server started"));
    free(log);
    assert_int_equal(h_broker_stop(&H, SIGTERM), 0);
    watched = child;
    assert_true(h_wait(watched_gone, NULL, 10000));
}

static void
test_embedded_child_dies_with_sigkilled_broker(void **state)
{
    pid_t child;

    (void)state;
    assert_int_equal(h_write_conf(&H, 1, NULL), 0);
    assert_int_equal(h_broker_start(&H), 0);
    child = redis_child_of(H.broker_pid);
    assert_true(child > 0);
    assert_int_equal(h_broker_stop(&H, SIGKILL), 128 + SIGKILL);
    watched = child;
    assert_true(h_wait(watched_gone, NULL, 10000));
}

static void
test_embedded_data_survives_restart(void **state)
{
    char url[256], *out;
    const char *argv[] = {"bin/mock-wecom",
                          "callback",
                          "--url",
                          url,
                          "-c",
                          H.conf,
                          "--suite",
                          H_SUITE,
                          "create_auth",
                          "AuthCode=persist-me",
                          NULL};
    redisContext *c;
    redisReply *r;
    char sock[400];
    struct timeval tv = {2, 0};

    (void)state;
    assert_int_equal(h_write_conf(&H, 1, NULL), 0);
    assert_int_equal(h_broker_start(&H), 0);
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/wecom/suite/" H_SUITE "/callback", H.cb_port);
    assert_int_equal(h_run(argv, &out), 0);
    free(out);
    assert_int_equal(h_broker_stop(&H, SIGTERM), 0);
    assert_int_equal(h_broker_start(&H), 0);
    snprintf(sock, sizeof(sock), "%s/var/redis.sock", H.dir);
    c = redisConnectUnixWithTimeout(sock, tv);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    r = redisCommand(c, "XLEN wb:{" H_SUITE "}:events");
    assert_non_null(r);
    /* the AOF brought the acknowledged event back */
    assert_true(r->type == REDIS_REPLY_INTEGER && r->integer >= 1);
    freeReplyObject(r);
    redisFree(c);
}

static void
test_embedded_second_broker_refused(void **state)
{
    char conf2[400], log2[400], *log;
    pid_t second;
    int status;
    long end;

    (void)state;
    assert_int_equal(h_write_conf(&H, 1, NULL), 0);
    assert_int_equal(h_broker_start(&H), 0);
    snprintf(conf2, sizeof(conf2), "%s/second.conf", H.dir);
    snprintf(log2, sizeof(log2), "%s/second.log", H.dir);
    assert_int_equal(h_write_conf_to(&H, conf2, 1, NULL), 0);
    second = h_spawn_broker(conf2, log2);
    assert_true(second > 0);
    end = h_now_ms() + 15000;
    while (waitpid(second, &status, WNOHANG) != second && h_now_ms() < end)
        usleep(20000);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    log = h_slurp(log2);
    assert_non_null(strstr(log, "in use by another broker"));
    free(log);
}

/*---- readiness and Redis trouble (external Redis) ----*/

static int
readyz_is(void *arg)
{
    char *body = NULL;
    long st = get("/readyz", &body);
    int ok = st == (long)(intptr_t)arg;

    free(body);
    return ok;
}

static void
test_readyz_follows_redis(void **state)
{
    char *body;

    (void)state;
    assert_int_equal(h_write_conf(&H, 0, NULL), 0);
    assert_int_equal(h_broker_start(&H), 0);
    assert_int_equal(get("/healthz", &body), 200);
    assert_string_equal(body, "ok");
    free(body);
    h_redis_stop(&H);
    assert_true(h_wait(readyz_is, (void *)(intptr_t)503, 10000));
    assert_int_equal(get("/readyz", &body), 503);
    assert_string_equal(
        body, "{\"ready\":false,\"reasons\":[\"redis unavailable\"]}");
    free(body);
    /* liveness does not depend on Redis */
    assert_int_equal(get("/healthz", &body), 200);
    free(body);
    assert_int_equal(h_redis_start(&H), 0);
    assert_true(h_wait(readyz_is, (void *)(intptr_t)200, 20000));
}

static void
test_internal_unknown_path_refused(void **state)
{
    char *body;

    (void)state;
    assert_int_equal(h_write_conf(&H, 0, NULL), 0);
    assert_int_equal(h_broker_start(&H), 0);
    assert_int_equal(get("/cgi-bin/user/delete?userid=x", &body), 200);
    assert_non_null(strstr(body, "\"errcode\":48002"));
    free(body);
}

/* Every line of /metrics is a comment or "name[{labels}] value", every
 * sample's family is declared with HELP and TYPE first, and histograms
 * are complete. */
static void
check_exposition(const char *text)
{
    char declared[64][96], line[1024], name[160], *sp, *brace;
    size_t ndecl = 0, i, n;
    const char *p = text, *nl;
    int found, typed = 0;
    double v;

    while (*p != '\0') {
        nl = strchr(p, '\n');
        assert_non_null(nl); /* the text ends with a newline */
        n = (size_t)(nl - p);
        assert_true(n < sizeof(line));
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        if (strncmp(line, "# HELP ", 7) == 0)
            continue;
        if (strncmp(line, "# TYPE ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%95s", declared[ndecl]), 1);
            sp = strchr(line + 7, ' ');
            assert_non_null(sp);
            assert_true(strcmp(sp + 1, "counter") == 0 ||
                        strcmp(sp + 1, "gauge") == 0 ||
                        strcmp(sp + 1, "histogram") == 0);
            ndecl++;
            typed++;
            assert_true(ndecl < 64);
            continue;
        }
        assert_int_not_equal(line[0], '#');
        sp = strrchr(line, ' ');
        assert_non_null(sp);
        assert_int_equal(sscanf(sp + 1, "%lf", &v), 1);
        snprintf(name, sizeof(name), "%.*s", (int)(sp - line), line);
        brace = strchr(name, '{');
        if (brace != NULL) {
            assert_int_equal(name[strlen(name) - 1], '}');
            *brace = '\0';
        }
        found = 0;
        for (i = 0; i < ndecl; i++) {
            size_t dl = strlen(declared[i]);

            if (strncmp(name, declared[i], dl) == 0 &&
                (name[dl] == '\0' || strcmp(name + dl, "_bucket") == 0 ||
                 strcmp(name + dl, "_sum") == 0 ||
                 strcmp(name + dl, "_count") == 0))
                found = 1;
        }
        if (!found)
            fprintf(stderr, "# undeclared sample: %s\n", line);
        assert_true(found);
    }
    assert_true(typed >= 15);
}

#define TICKET_AGE                                                             \
    "wecom_broker_suite_ticket_age_seconds{suite=\"" H_SUITE "\"} -1"

/* /metrics holds the ticket-age gauge. */
static int
metrics_have(void *arg)
{
    char *body = NULL;
    int ok = get("/metrics", &body) == 200 && strstr(body, TICKET_AGE) != NULL;

    (void)arg;
    free(body);
    return ok;
}

static void
test_metrics_exposition(void **state)
{
    char *body;

    (void)state;
    assert_int_equal(h_write_conf(&H, 0, NULL), 0);
    assert_int_equal(h_broker_start(&H), 0);
    /* a few requests so labelled series and histograms exist */
    assert_int_equal(get("/healthz", &body), 200);
    free(body);
    assert_int_equal(get("/cgi-bin/user/get", &body), 200);
    free(body);
    /* the housekeeping pass sets the ticket-age gauge */
    assert_true(h_wait(metrics_have, NULL, 10000));
    assert_int_equal(get("/metrics", &body), 200);
    check_exposition(body);
    assert_non_null(strstr(body, "wecom_broker_http_request_duration_seconds_"
                                 "bucket{listener=\"internal\",route="
                                 "\"healthz\",le=\"+Inf\"}"));
    assert_non_null(strstr(body, TICKET_AGE));
    assert_non_null(strstr(body, "wecom_broker_redis_up 1"));
    assert_non_null(strstr(body, "wecom_broker_api_requests_total{endpoint="));
    free(body);
}

static char *
event_xml(const char *code)
{
    char ts[24], *out;
    size_t len;
    const char *k[] = {"SuiteId", "InfoType", "TimeStamp", "AuthCode"};
    const char *v[] = {H_SUITE, "create_auth", ts, code};

    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    assert_int_equal(wecom_xml_build(k, v, 4, &out, &len), BRK_OK);
    return out;
}

/* POST one create_auth through mock-wecom; returns its exit status. */
static int
send_event(const char *code)
{
    char url[256], field[128], *out;
    const char *argv[] = {
        "bin/mock-wecom", "callback", "--url",       url,   "-c", H.conf,
        "--suite",        H_SUITE,    "create_auth", field, NULL};
    int rc;

    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/wecom/suite/" H_SUITE "/callback", H.cb_port);
    snprintf(field, sizeof(field), "AuthCode=%s", code);
    rc = h_run(argv, &out);
    if (rc != 0)
        fprintf(stderr, "# mock-wecom exit %d: %s\n", rc, out);
    free(out);
    return rc;
}

static void
redis_cmd(const char *cmd)
{
    redisContext *c = h_redis(&H);
    redisReply *r;

    assert_non_null(c);
    r = redisCommand(c, cmd);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    redisFree(c);
}

static void
test_sigterm_finishes_inflight_request(void **state)
{
    pid_t client;
    int status, rc;

    (void)state;
    assert_int_equal(h_write_conf(&H, 0, NULL), 0);
    assert_int_equal(h_broker_start(&H), 0);
    /* writes stall for 600 ms, so the callback is in flight when the
     * broker is told to stop */
    redis_cmd("CLIENT PAUSE 600 WRITE");
    client = fork();
    if (client == 0)
        _exit(send_event("inflight-at-sigterm") == 0 ? 0 : 1);
    /* pacing, not waiting for a state: a request stalled on the paused
     * Redis shows nowhere outside the broker; this lets it arrive well
     * inside the 600 ms pause */
    usleep(200000);
    rc = h_broker_stop(&H, SIGTERM);
    waitpid(client, &status, 0);
    assert_int_equal(rc, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void
test_hung_redis_gets_503_not_a_hang(void **state)
{
    char *xml = event_xml("during-pause"), *enc = NULL, *body = NULL, *env;
    struct wecom_crypto *c = NULL;
    char sig[WECOM_CRYPTO_SIG_SIZE], ts[24], q[256], *url;
    const char *ek[] = {"ToUserName", "Encrypt"};
    const char *ev[2] = {H_SUITE, NULL};
    size_t envlen;
    long st, t0, elapsed;

    (void)state;
    assert_int_equal(h_write_conf(&H, 0, NULL), 0);
    assert_int_equal(h_broker_start(&H), 0);
    assert_int_equal(wecom_crypto_new(H_TOKEN, H_AESKEY, &c), BRK_OK);
    assert_int_equal(wecom_crypto_encrypt(c, xml, strlen(xml), H_SUITE, &enc),
                     BRK_OK);
    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    assert_int_equal(wecom_crypto_sign(c, ts, "1", enc, sig), BRK_OK);
    ev[1] = enc;
    assert_int_equal(wecom_xml_build(ek, ev, 2, &env, &envlen), BRK_OK);
    snprintf(q, sizeof(q),
             "/wecom/suite/" H_SUITE "/callback?msg_signature=%s&timestamp=%s"
             "&nonce=1",
             sig, ts);
    url = h_cb_url(&H, q);
    redis_cmd("CLIENT PAUSE 3000 ALL");
    t0 = h_now_ms();
    st = h_http("POST", url, env, envlen, &body);
    elapsed = h_now_ms() - t0;
    fprintf(stderr, "# answer with Redis paused: HTTP %ld after %ld ms\n", st,
            elapsed);
    assert_int_equal(st, 503);
    assert_null(strstr(body, "success"));
    free(body);
    free(url);
    brk_free(env);
    brk_free(enc);
    brk_free(xml);
    wecom_crypto_free(c);
    /* once Redis answers again, callbacks are accepted again */
    assert_true(h_wait(readyz_is, (void *)(intptr_t)200, 20000));
    assert_int_equal(send_event("after-pause"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_mode_ok),
        cmocka_unit_test(test_check_mode_error_names_file_and_line),
        cmocka_unit_test(test_usage_and_version),
        cmocka_unit_test_teardown(test_embedded_ready_then_clean_stop,
                                  stop_broker),
        cmocka_unit_test_teardown(
            test_embedded_child_dies_with_sigkilled_broker, stop_broker),
        cmocka_unit_test_teardown(test_embedded_data_survives_restart,
                                  stop_broker),
        cmocka_unit_test_teardown(test_embedded_second_broker_refused,
                                  stop_broker),
        cmocka_unit_test_teardown(test_readyz_follows_redis, stop_broker),
        cmocka_unit_test_teardown(test_internal_unknown_path_refused,
                                  stop_broker),
        cmocka_unit_test_teardown(test_metrics_exposition, stop_broker),
        cmocka_unit_test_teardown(test_sigterm_finishes_inflight_request,
                                  stop_broker),
        cmocka_unit_test_teardown(test_hung_redis_gets_503_not_a_hang,
                                  stop_broker),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
