/*
 * The corp token renewed ahead of its end: with the simulator's tokens
 * living TOKEN_LIFE seconds and every WeCom reply LATENCY_MS late, a
 * service calling user/get without pause for more than two of those lives
 * never waits for a token refresh (each request takes one WeCom call, not
 * two), never meets an expired token, and the broker fetched new tokens
 * (the simulator counts them), a few, not one per request.
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

#include <jansson.h>

#include "harness.h"
#include "simclient.h"
#include "svcclient.h"
#include "tenantclient.h"

#define S1 H_SUITE
/* seconds: the simulator's suite and corp tokens */
#define TOKEN_LIFE 16
/* added to every WeCom reply: a request that waits for a token refresh
 * takes at least two of it */
#define LATENCY_MS 400
/* a request's time when it made one WeCom call, with room for a loaded
 * machine, and below two calls */
#define ONE_CALL_MS (LATENCY_MS * 7 / 4)
#define CORP_TOKEN  "/cgi-bin/service/get_corp_token"
#define STR_(x)     #x
#define STR(x)      STR_(x)

static struct harness H;
static pid_t Mock;
static int MockPort;
static char Secret[256];

static int
setup(void **state)
{
    const char *extra[] = {"--suite",
                           H_SUITE ":" H_SECRET,
                           "--corps",
                           "2",
                           "--members",
                           "30",
                           "--departments",
                           "6",
                           "--token-lifetime",
                           STR(TOKEN_LIFE),
                           NULL};

    (void)state;
    /* a short cache_max_age: the cache is read again ahead of it too */
    return tc_world_start_with(&H, extra, "cache_max_age = 4\n", &Mock,
                               &MockPort, Secret, sizeof(Secret));
}

static int
teardown(void **state)
{
    (void)state;
    tc_world_stop(&H, Mock);
    return 0;
}

/* user/get through the broker: its errcode, and its time into *ms. */
static long
user_get(const char *tok, long *ms)
{
    struct sc_resp r;
    long t0 = h_now_ms(), code;

    sc_call(&r, H.int_port, "GET", NULL,
            "/cgi-bin/user/get?access_token=%s&userid=u00003", tok);
    *ms = h_now_ms() - t0;
    assert_int_equal(r.status, 200);
    code = sc_ecode(&r);
    sc_resp_free(&r);
    return code;
}

static void
set_latency(long ms)
{
    char body[64];

    snprintf(body, sizeof(body), "{\"ms\":%ld}", ms);
    h_sim_ok(MockPort, "POST", "/__mock/latency", body);
}

static void
test_no_request_waits_for_a_refresh(void **state)
{
    const char *corp = "wwmockcorp0001";
    char *tok;
    long ms, worst = 0, end, code;
    size_t fetched0, fetched, n = 0, slow = 0;

    (void)state;
    tc_install(S1, corp, h_next_ts());
    tc_wait_status(S1, corp, "active", 30000);
    tok = tc_token_for(0, Secret, corp);
    /* warm: the corp token is in the broker's cache */
    assert_int_equal(user_get(tok, &ms), 0);
    set_latency(LATENCY_MS);
    fetched0 = tc_mock_count(CORP_TOKEN, corp);
    end = h_now_ms() + TOKEN_LIFE * 1000 * 9 / 4;
    while (h_now_ms() < end) {
        code = user_get(tok, &ms);
        /* an expired token would be 42001 (or a refresh after it) */
        assert_int_equal(code, 0);
        n++;
        if (ms > worst)
            worst = ms;
        if (ms >= ONE_CALL_MS)
            slow++;
    }
    set_latency(0);
    fetched = tc_mock_count(CORP_TOKEN, corp) - fetched0;
    fprintf(stderr,
            "# %zu requests over %d s, slowest %ld ms, %zu at or above %d "
            "ms; %zu corp tokens fetched\n",
            n, TOKEN_LIFE * 9 / 4, worst, slow, ONE_CALL_MS, fetched);
    assert_int_equal(slow, 0);
    /* renewed while in use, more than two lives: at least twice, and
     * never per request */
    assert_true(fetched >= 2);
    assert_true(fetched <= 4);
    free(tok);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_request_waits_for_a_refresh),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
