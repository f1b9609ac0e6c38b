/*
 * workers = 4: the internal listener served by four event loops. Service
 * API requests on many connections at once (the kernel spreads
 * connections over the loops) all answered right; every request audited
 * once in Redis and in the file; a revoked service refused on every loop
 * within 1 s although cache_max_age is long (the change notice reaches
 * each loop's caches); SIGHUP reopens every loop's audit file and the
 * loops keep serving; /metrics and /readyz answer from any loop; the
 * broker stops cleanly.
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
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "harness.h"
#include "simclient.h"
#include "svcclient.h"
#include "tenantclient.h"

#define S1    H_SUITE
#define CORP  "wwmockcorp0001"
#define NCONN 40 /* four loops all get some: 4 * (3/4)^40 < 1e-4 missed */

static struct harness H;
static pid_t Mock;
static int MockPort;
static char Secret[256], Audit[400];

static int
setup(void **state)
{
    const char *extra[] = {
        "--suite", H_SUITE ":" H_SECRET, "--corps", "2", "--members",
        "60",      "--departments",      "15",      NULL};
    char broker[1024];
    char *sec;

    (void)state;
    if (h_setup(&H) != 0)
        return -1;
    Mock = h_mock_start(H.dir, extra, &MockPort);
    if (Mock == 0)
        return -1;
    snprintf(Audit, sizeof(Audit), "%s/audit.jsonl", H.dir);
    /* caches that would outlive the test: only a notice can end them */
    snprintf(broker, sizeof(broker),
             "wecom_api_base = http://127.0.0.1:%d\n"
             "workers = 4\n"
             "cache_max_age = 600\n"
             "audit_file = %s\n",
             MockPort, Audit);
    if (h_write_conf(&H, 0, broker) != 0 || h_broker_start(&H) != 0)
        return -1;
    tc_init(&H, MockPort);
    tc_push_ticket(S1);
    tc_install(S1, CORP, h_next_ts());
    tc_wait_status(S1, CORP, "active", 30000);
    sec = tc_svc_add("reader", "contacts.read", NULL, NULL);
    snprintf(Secret, sizeof(Secret), "%s", sec);
    free(sec);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    tc_done();
    if (Mock > 0)
        h_stop(Mock, SIGTERM);
    h_teardown(&H);
    return 0;
}

/* n GETs of path (n <= NCONN) at once, each on a connection of its own;
 * how many answered HTTP 200 with errcode want. */
static int
round_of(const char *path, int n, long want)
{
    struct sc_resp r[NCONN];
    CURL *e[NCONN];
    CURLM *m = curl_multi_init();
    char url[2100];
    int i, running = 1, ok = 0;

    assert_true(n <= NCONN);
    for (i = 0; i < n; i++) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", H.int_port, path);
        e[i] = sc_easy(&r[i], "GET", url, NULL, 0, NULL);
        curl_easy_setopt(e[i], CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(e[i], CURLOPT_FORBID_REUSE, 1L);
        curl_multi_add_handle(m, e[i]);
    }
    while (running) {
        curl_multi_perform(m, &running);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (i = 0; i < n; i++) {
        sc_resp_done(e[i], &r[i]);
        if (r[i].status == 200 && sc_ecode(&r[i]) == want)
            ok++;
        else if (want == 0)
            fprintf(stderr, "# %s: %ld %.200s\n", path, r[i].status,
                    r[i].body ? r[i].body : "");
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
        sc_resp_free(&r[i]);
    }
    curl_multi_cleanup(m);
    return ok;
}

static long long
xlen_audit(void)
{
    return h_redis_int(&H, "XLEN %s", "wb:audit");
}

/* Lines of path holding needle. */
static long
lines_with(const char *path, const char *needle)
{
    char *text = h_slurp(path), *line, *save = NULL;
    long n = 0;

    if (text == NULL)
        return 0;
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save))
        if (strstr(line, needle) != NULL)
            n++;
    free(text);
    return n;
}

struct want_lines {
    const char *path, *needle;
    long n;
};

static int
has_lines(void *arg)
{
    struct want_lines *w = arg;

    return lines_with(w->path, w->needle) >= w->n;
}

static long long Want_xlen;

static int
xlen_reached(void *arg)
{
    (void)arg;
    return xlen_audit() >= Want_xlen;
}

static void
test_four_loops_serve_and_audit(void **state)
{
    char *tok = tc_token_for(0, Secret, CORP), path[600];
    struct want_lines w;
    long long x0;
    long f0;
    int i;

    (void)state;
    /* the setup's own entries (the install's lifecycle) may still be on
     * their way: count from a trail that has stopped growing */
    x0 = xlen_audit();
    for (i = 0; i < 50; i++) {
        usleep(100 * 1000); /* polling for a settled length */
        if (xlen_audit() == x0)
            break;
        x0 = xlen_audit();
    }
    f0 = lines_with(Audit, "tag/list");
    snprintf(path, sizeof(path), "/cgi-bin/tag/list?access_token=%s", tok);
    /* three rounds: cold caches on each loop, then warm */
    for (i = 0; i < 3; i++)
        assert_int_equal(round_of(path, NCONN, 0), NCONN);
    snprintf(path, sizeof(path), "/cgi-bin/department/list?access_token=%s",
             tok);
    assert_int_equal(round_of(path, NCONN, 0), NCONN);
    /* refusals too: an undeclared path, an unknown token */
    snprintf(path, sizeof(path), "/cgi-bin/user/delete?access_token=%s", tok);
    assert_int_equal(round_of(path, NCONN, 48002), NCONN);
    assert_int_equal(
        round_of("/cgi-bin/tag/list?access_token=0123456789abcdef0123456789"
                 "abcdef0123456789abcdef0123456789abcdef01",
                 NCONN, 40014),
        NCONN);
    /* every answer with a service behind it audited once, in Redis and
     * in the file, whichever loop wrote it (the refusals above name no
     * service) */
    Want_xlen = x0 + 4 * NCONN;
    assert_true(h_wait(xlen_reached, NULL, 5000));
    assert_int_equal(xlen_audit(), x0 + 4 * NCONN);
    w.path = Audit;
    w.needle = "tag/list";
    w.n = f0 + 3 * NCONN;
    assert_true(h_wait(has_lines, &w, 5000));
    assert_int_equal(lines_with(Audit, "tag/list"), f0 + 3 * NCONN);
    /* the operations answer from any loop */
    assert_int_equal(round_of("/readyz", NCONN, -9999), NCONN);
    free(tok);
}

static int Revoked_seen;

struct revoke_wait {
    const char *path;
};

static int
all_refused(void *arg)
{
    struct revoke_wait *w = arg;

    return round_of(w->path, NCONN, 40014) == NCONN;
}

static void
test_revoke_reaches_every_loop(void **state)
{
    char *sec = tc_svc_add("revoke-me", "contacts.read", NULL, NULL);
    char *tok = tc_token_for(0, sec, CORP), path[600];
    struct revoke_wait w = {path};
    long t0, ms;
    json_t *v;
    int rc;

    (void)state;
    snprintf(path, sizeof(path), "/cgi-bin/tag/list?access_token=%s", tok);
    /* every loop caches the token, the service and the tenant */
    assert_int_equal(round_of(path, NCONN, 0), NCONN);
    assert_int_equal(round_of(path, NCONN, 0), NCONN);
    t0 = h_now_ms();
    v = tc_ctl(&rc, "service", "revoke", "revoke-me", (const char *)NULL);
    assert_int_equal(rc, 0);
    json_decref(v);
    Revoked_seen = h_wait(all_refused, &w, 3000);
    ms = h_now_ms() - t0;
    fprintf(stderr, "# revoke: refused on every loop after %ld ms\n", ms);
    assert_true(Revoked_seen);
    assert_true(ms <= 1000);
    /* and stays refused */
    assert_int_equal(round_of(path, NCONN, 40014), NCONN);
    free(tok);
    free(sec);
}

static const char *Moved, *Path;

/* One round of requests; nonzero when none of it reached the rotated
 * file (the entries are written by the end of the loops' turns, before
 * the replies leave). */
static int
round_misses_moved(void *arg)
{
    long before = lines_with(Moved, "department/list");

    (void)arg;
    assert_int_equal(round_of(Path, NCONN, 0), NCONN);
    return lines_with(Moved, "department/list") == before;
}

static void
test_sighup_reopens_every_loop(void **state)
{
    char *tok = tc_token_for(0, Secret, CORP), path[600], moved[450];
    struct want_lines w;
    long old_lines;

    (void)state;
    snprintf(path, sizeof(path), "/cgi-bin/department/list?access_token=%s",
             tok);
    assert_int_equal(round_of(path, NCONN, 0), NCONN);
    /* logrotate: move the file away, then SIGHUP */
    snprintf(moved, sizeof(moved), "%s.1", Audit);
    assert_int_equal(rename(Audit, moved), 0);
    old_lines = lines_with(moved, "department/list");
    assert_int_equal(kill(H.broker_pid, SIGHUP), 0);
    assert_int_equal(h_log_wait(H.log, 0, "reload:", 5000), 1);
    /* each loop reopens when its mailbox is read, at once unless busy:
     * until a whole round leaves the rotated file alone */
    Moved = moved;
    Path = path;
    assert_true(h_wait(round_misses_moved, NULL, 5000));
    old_lines = lines_with(moved, "department/list");
    w.path = Audit;
    w.needle = "department/list";
    w.n = lines_with(Audit, "department/list") + 2 * NCONN;
    assert_int_equal(round_of(path, NCONN, 0), NCONN);
    assert_int_equal(round_of(path, NCONN, 0), NCONN);
    assert_true(h_wait(has_lines, &w, 5000));
    /* after the reopen nothing goes to the rotated file any more */
    assert_int_equal(lines_with(moved, "department/list"), old_lines);
    free(tok);
}

struct rid {
    char id[40];
};

static size_t
on_header(char *buf, size_t size, size_t n, void *arg)
{
    struct rid *r = arg;
    size_t len = size * n;
    static const char name[] = "X-Request-Id: ";

    if (len > sizeof(name) - 1 && strncasecmp(buf, name, sizeof(name) - 1) == 0)
        snprintf(r->id, sizeof(r->id), "%.*s", (int)(len - sizeof(name) + 1),
                 buf + sizeof(name) - 1);
    r->id[strcspn(r->id, "\r\n")] = '\0';
    return len;
}

static size_t
discard(char *buf, size_t size, size_t n, void *arg)
{
    (void)buf;
    (void)arg;
    return size * n;
}

/* Request ids come from blocks of random bytes per loop: every one of
 * them distinct, 16 hex digits, whichever loop answered. */
static void
test_request_ids_distinct(void **state)
{
    static struct rid ids[3 * NCONN];
    CURL *e[NCONN];
    CURLM *m;
    char url[200];
    int round, i, j, running;

    (void)state;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", H.int_port);
    for (round = 0; round < 3; round++) {
        m = curl_multi_init();
        for (i = 0; i < NCONN; i++) {
            e[i] = curl_easy_init();
            curl_easy_setopt(e[i], CURLOPT_URL, url);
            curl_easy_setopt(e[i], CURLOPT_FRESH_CONNECT, 1L);
            curl_easy_setopt(e[i], CURLOPT_FORBID_REUSE, 1L);
            curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, discard);
            curl_easy_setopt(e[i], CURLOPT_HEADERFUNCTION, on_header);
            curl_easy_setopt(e[i], CURLOPT_HEADERDATA, &ids[round * NCONN + i]);
            curl_multi_add_handle(m, e[i]);
        }
        running = 1;
        while (running) {
            curl_multi_perform(m, &running);
            if (running)
                curl_multi_poll(m, NULL, 0, 100, NULL);
        }
        for (i = 0; i < NCONN; i++) {
            curl_multi_remove_handle(m, e[i]);
            curl_easy_cleanup(e[i]);
        }
        curl_multi_cleanup(m);
    }
    for (i = 0; i < 3 * NCONN; i++) {
        assert_int_equal(strlen(ids[i].id), 16);
        assert_int_equal(strspn(ids[i].id, "0123456789abcdef"), 16);
        for (j = 0; j < i; j++)
            assert_string_not_equal(ids[i].id, ids[j].id);
    }
}

static void
test_stops_cleanly(void **state)
{
    int status = 0;

    (void)state;
    assert_int_equal(kill(H.broker_pid, SIGTERM), 0);
    assert_int_equal(waitpid(H.broker_pid, &status, 0), H.broker_pid);
    H.broker_pid = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_four_loops_serve_and_audit),
        cmocka_unit_test(test_revoke_reaches_every_loop),
        cmocka_unit_test(test_sighup_reopens_every_loop),
        cmocka_unit_test(test_request_ids_distinct),
        cmocka_unit_test(test_stops_cleanly),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
