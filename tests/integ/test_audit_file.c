/*
 * The audit file: every audit entry also appended to audit_file as one
 * JSON line, the file reopened on SIGHUP (logrotate), and a file that
 * cannot be written reported by /readyz while requests are served and the
 * Redis trail keeps every entry.
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
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "harness.h"

static struct harness H;
static char Secret[256], File[400];

static long long
xlen_audit(void)
{
    redisContext *c = h_redis(&H);
    redisReply *r;
    long long v = -1;

    assert_non_null(c);
    r = redisCommand(c, "XLEN wb:audit");
    if (r != NULL && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

/* A request the proxy audits: a real service asking for a corp that is
 * no tenant (40013). */
static void
audited_request(void)
{
    char path[400], *url, *body = NULL;

    snprintf(path, sizeof(path),
             "/cgi-bin/gettoken?corpid=wwnotatenant01&corpsecret=%s", Secret);
    url = h_int_url(&H, path);
    assert_int_equal(h_http("GET", url, NULL, 0, &body), 200);
    assert_non_null(strstr(body, "40013"));
    free(url);
    free(body);
}

/* Lines of the file that are JSON objects with endpoint gettoken; -1
 * when a line is not a JSON object. */
static int
gettoken_lines(const char *path)
{
    char *text = h_slurp(path), *line, *save = NULL;
    int n = 0;

    if (text == NULL)
        return 0;
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        json_error_t e;
        json_t *v = json_loads(line, JSON_REJECT_DUPLICATES, &e);

        if (!json_is_object(v)) {
            json_decref(v);
            free(text);
            return -1;
        }
        if (json_is_string(json_object_get(v, "endpoint")) &&
            strcmp(json_string_value(json_object_get(v, "endpoint")),
                   "/cgi-bin/gettoken") == 0 &&
            json_is_number(json_object_get(v, "at")))
            n++;
        json_decref(v);
    }
    free(text);
    return n;
}

struct want {
    const char *path;
    int n;
};

static int
has_lines(void *arg)
{
    struct want *w = arg;

    return gettoken_lines(w->path) >= w->n;
}

static long
readyz(char **body)
{
    char *url = h_int_url(&H, "/readyz");
    long st = h_http("GET", url, NULL, 0, body);

    free(url);
    return st;
}

static int
not_ready(void *arg)
{
    char *body = NULL;
    long st = readyz(&body);
    int ok = st == 503 && body != NULL &&
             strstr(body, "audit_file not writable") != NULL;

    (void)arg;
    free(body);
    return ok;
}

static int
ready(void *arg)
{
    char *body = NULL;
    long st = readyz(&body);

    (void)arg;
    free(body);
    return st == 200;
}

static int
setup(void **state)
{
    char extra[600], *out = NULL;
    const char *argv[] = {"bin/brokerctl", "-c",  H.conf,    "--json",
                          "service",       "add", "auditor", "--scopes",
                          "contacts.read", NULL};
    json_error_t e;
    json_t *v;

    (void)state;
    if (h_setup(&H) != 0)
        return -1;
    snprintf(File, sizeof(File), "%s/audit.jsonl", H.dir);
    snprintf(extra, sizeof(extra), "audit_file = %s\n", File);
    if (h_write_conf(&H, 0, extra) != 0 || h_broker_start(&H) != 0)
        return -1;
    argv[2] = H.conf;
    if (h_run(argv, &out) != 0)
        return -1;
    v = json_loads(out, 0, &e);
    free(out);
    if (json_string_value(json_object_get(v, "secret")) == NULL)
        return -1;
    snprintf(Secret, sizeof(Secret), "%s",
             json_string_value(json_object_get(v, "secret")));
    json_decref(v);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    h_teardown(&H);
    return 0;
}

static void
test_entries_appended_as_json_lines(void **state)
{
    struct want w = {File, 2};
    char *text;

    (void)state;
    audited_request();
    audited_request();
    assert_true(h_wait(has_lines, &w, 10000));
    /* names and ids, never a secret */
    text = h_slurp(File);
    assert_null(strstr(text, strchr(Secret, '.') + 1));
    assert_non_null(strstr(text, "\"service\":\"auditor\""));
    free(text);
}

static void
test_reopened_on_sighup(void **state)
{
    char old[420];
    struct want w = {File, 1};
    int before;

    (void)state;
    snprintf(old, sizeof(old), "%s.1", File);
    assert_int_equal(rename(File, old), 0);
    before = gettoken_lines(old);
    assert_int_equal(kill(H.broker_pid, SIGHUP), 0);
    /* the new file appears with the next entry; the rotated one stays */
    assert_true(h_wait(ready, NULL, 10000));
    {
        long deadline = h_now_ms() + 10000;

        while (access(File, F_OK) != 0 && h_now_ms() < deadline) {
            audited_request();
            usleep(100 * 1000); /* pacing the probe requests */
        }
    }
    audited_request();
    assert_true(h_wait(has_lines, &w, 10000));
    assert_int_equal(gettoken_lines(old), before);
}

static void
test_unwritable_file_is_a_readyz_reason(void **state)
{
    char moved[420];
    long long x0;

    (void)state;
    snprintf(moved, sizeof(moved), "%s.2", File);
    assert_int_equal(rename(File, moved), 0);
    /* a directory where the file should be: it cannot be opened */
    assert_int_equal(mkdir(File, 0700), 0);
    assert_int_equal(kill(H.broker_pid, SIGHUP), 0);
    assert_true(h_wait(not_ready, NULL, 10000));
    /* requests are served and the Redis trail keeps every entry */
    x0 = xlen_audit();
    audited_request();
    audited_request();
    {
        long deadline = h_now_ms() + 5000;

        while (xlen_audit() < x0 + 2 && h_now_ms() < deadline)
            usleep(20 * 1000); /* polling Redis with a deadline */
    }
    assert_true(xlen_audit() >= x0 + 2);
    /* fixed and reloaded: ready again, and the file written */
    assert_int_equal(rmdir(File), 0);
    assert_int_equal(kill(H.broker_pid, SIGHUP), 0);
    audited_request();
    assert_true(h_wait(ready, NULL, 10000));
    {
        struct want w = {File, 1};

        audited_request();
        assert_true(h_wait(has_lines, &w, 10000));
    }
}

static void
test_ctl_says_when_since_reaches_past_redis(void **state)
{
    const char *argv[] = {"bin/brokerctl", "-c", H.conf, "audit",
                          "--since",       "1d", NULL};
    char *out = NULL;

    (void)state;
    argv[2] = H.conf;
    /* untrimmed: nothing to say */
    assert_int_equal(h_run(argv, &out), 0);
    assert_null(strstr(out, "older entries are only in audit_file"));
    free(out);
    /* trimmed to the newest entry, as audit_max_age does */
    {
        redisContext *c = h_redis(&H);
        redisReply *r = redisCommand(c, "XTRIM wb:audit MAXLEN 1");

        assert_non_null(r);
        freeReplyObject(r);
        redisFree(c);
    }
    assert_int_equal(h_run(argv, &out), 0);
    assert_non_null(strstr(out, "older entries are only in audit_file"));
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entries_appended_as_json_lines),
        cmocka_unit_test(test_reopened_on_sighup),
        cmocka_unit_test(test_unwritable_file_is_a_readyz_reason),
        cmocka_unit_test(test_ctl_says_when_since_reaches_past_redis),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
