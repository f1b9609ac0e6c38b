/*
 * mock-wecom serve's populations for the scale bench: --members-spread
 * (each corp's size drawn from the seed), --big-corp (one more corp of a
 * given size, last) and --range-all (every corp's range is the whole
 * corp), and the refusal of malformed values.
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
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "harness.h"
#include "simclient.h"

#define SUITE  "wwscalesuite"
#define NCORPS 6

static char Dir[256];
static pid_t Pid;
static int Port;

static int
setup(void **state)
{
    static const char *const extra[] = {
        "--suite", SUITE ":sec", "--corps", "6",           "--members-spread",
        "20:30",   "--big-corp", "50:7",    "--range-all", NULL};

    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(Dir, sizeof(Dir), "/tmp/wbscale.XXXXXX");
    if (mkdtemp(Dir) == NULL)
        return -1;
    Pid = h_mock_start(Dir, extra, &Port);
    return Pid > 0 ? 0 : -1;
}

static int
teardown(void **state)
{
    char f[400];
    int i, rc = 0;

    (void)state;
    if (Pid > 0 && h_stop(Pid, SIGTERM) != 0)
        rc = -1;
    for (i = 1; i < 8; i++) {
        snprintf(f, sizeof(f), "%s/mock-%d.port", Dir, i);
        unlink(f);
        snprintf(f, sizeof(f), "%s/mock-%d.log", Dir, i);
        unlink(f);
    }
    rmdir(Dir);
    curl_global_cleanup();
    return rc;
}

/* A corp token of corp index i (1-based) into tok. */
static void
corp_token(long i, char *tok, size_t cap)
{
    json_t *j = h_jcall(Port, "GET", NULL, NULL,
                        "/__mock/corp_token?suite_id=%s&corpid=wwmockcorp%04ld",
                        SUITE, i);

    h_copy_str(tok, cap, h_need_str(j, "access_token"));
    json_decref(j);
}

/* user/get of member n (u%05ld) in the corp of tok: its errcode. */
static long
user_get(const char *tok, long n)
{
    json_t *j =
        h_jcall(Port, "GET", NULL, NULL,
                "/cgi-bin/user/get?userid=u%05ld&access_token=%s", n, tok);
    long e = h_errcode(j);

    json_decref(j);
    return e;
}

/* The departments department/simplelist lists in the corp of tok. */
static size_t
departments(const char *tok)
{
    json_t *j = h_jcall(Port, "GET", NULL, NULL,
                        "/cgi-bin/department/simplelist?access_token=%s", tok);
    size_t n;

    assert_int_equal(h_errcode(j), 0);
    n = json_array_size(json_object_get(j, "department_id"));
    json_decref(j);
    return n;
}

/* The members of the corp of tok: the highest u%05ld user/get answers
 * (members are numbered from u00001 without gaps), below limit. */
static long
members(const char *tok, long limit)
{
    long n = 0;

    while (n < limit && user_get(tok, n + 1) == 0)
        n++;
    return n;
}

static void
test_corps_listed_big_last(void **state)
{
    json_t *j = h_jcall(Port, "GET", NULL, NULL, "/__mock/corps");

    (void)state;
    assert_int_equal(json_array_size(j), NCORPS + 1);
    assert_string_equal(h_str(json_array_get(j, NCORPS), "corpid"),
                        "wwmockcorp0007");
    json_decref(j);
}

static void
test_spread_sizes(void **state)
{
    char tok[128];
    long i, n, first = 0, differ = 0;

    (void)state;
    for (i = 1; i <= NCORPS; i++) {
        corp_token(i, tok, sizeof(tok));
        n = members(tok, 40);
        assert_in_range(n, 20, 30);
        if (i == 1)
            first = n;
        differ |= n != first;
        /* one department per 15 members, at least 3 */
        assert_int_equal(departments(tok), n / 15 < 3 ? 3 : n / 15);
    }
    /* drawn per corp, not one size for all */
    assert_true(differ);
}

static void
test_big_corp_size(void **state)
{
    char tok[128];

    (void)state;
    corp_token(NCORPS + 1, tok, sizeof(tok));
    assert_int_equal(members(tok, 60), 50);
    assert_int_equal(departments(tok), 7);
}

/* Without --range-all, u00002 (department 3) is outside every corp's
 * range (60011); with it, every member is in range. */
static void
test_range_is_the_whole_corp(void **state)
{
    char tok[128];
    long i;

    (void)state;
    for (i = 1; i <= NCORPS + 1; i++) {
        corp_token(i, tok, sizeof(tok));
        assert_int_equal(user_get(tok, 2), 0);
        assert_int_equal(user_get(tok, 3), 0);
    }
}

/* The same seed gives the same sizes: a second simulator agrees. */
static void
test_sizes_follow_the_seed(void **state)
{
    static const char *const extra[] = {
        "--suite",          SUITE ":sec", "--corps",     "6",
        "--members-spread", "20:30",      "--range-all", NULL};
    char tok[128];
    long i, a[NCORPS];
    pid_t pid;
    int port, saved = Port;

    (void)state;
    for (i = 1; i <= NCORPS; i++) {
        corp_token(i, tok, sizeof(tok));
        a[i - 1] = members(tok, 40);
    }
    pid = h_mock_start(Dir, extra, &port);
    assert_true(pid > 0);
    Port = port;
    for (i = 1; i <= NCORPS; i++) {
        corp_token(i, tok, sizeof(tok));
        assert_int_equal(members(tok, 40), a[i - 1]);
    }
    Port = saved;
    assert_int_equal(h_stop(pid, SIGTERM), 0);
}

static void
test_bad_values_refused(void **state)
{
    static const char *const bad[][2] = {
        {"--members-spread", "30:20"}, {"--members-spread", "20"},
        {"--members-spread", "2:30"},  {"--members-spread", "20:x"},
        {"--members-spread", ":30"},   {"--members-spread", "20:"},
        {"--members-spread", "-5:30"}, {"--big-corp", "50"},
        {"--big-corp", "50:2"},        {"--big-corp", "2000000:5"},
        {"--big-corp", "50:100001"},   {"--corps", "20001"},
    };
    char *out = NULL;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *argv[] = {"bin/mock-wecom", "serve",   "--suite", "a:b",
                              bad[i][0],        bad[i][1], NULL};

        assert_int_equal(h_run(argv, &out), 2);
        assert_non_null(strstr(out, bad[i][0] + 2));
        free(out);
        out = NULL;
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corps_listed_big_last),
        cmocka_unit_test(test_spread_sizes),
        cmocka_unit_test(test_big_corp_size),
        cmocka_unit_test(test_range_is_the_whole_corp),
        cmocka_unit_test(test_sizes_follow_the_seed),
        cmocka_unit_test(test_bad_values_refused),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
