/*
 * Refresh-ahead of the service API's caches: a tenant, service or token
 * served from the cache past 3/4 of cache_max_age is read again in the
 * background, so a hot entry is replaced before it expires and requests
 * do not wait for Redis when it would have. Seen from outside: a change
 * stored without a change notice (none is published here) is picked up
 * before the first entry's cache_max_age has run out, and never is an
 * entry older than cache_max_age served.
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

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "harness.h"
#include "simclient.h"
#include "svcclient.h"
#include "tenantclient.h"

#define S1 H_SUITE
/* seconds: 3/4 of it is when a hit reads ahead */
#define MAX_AGE 6
#define STR_(x) #x
#define STR(x)  STR_(x)

static struct harness H;
static pid_t Mock;
static int MockPort;
static char Secret[256];
static int Shape;

static int
setup(void **state)
{
    const char *extra[] = {
        "--suite", H_SUITE ":" H_SECRET, "--corps", "4", "--members",
        "30",      "--departments",      "6",       NULL};

    (void)state;
    return tc_world_start_with(&H, extra, "cache_max_age = " STR(MAX_AGE) "\n",
                               &Mock, &MockPort, Secret, sizeof(Secret));
}

static int
teardown(void **state)
{
    (void)state;
    tc_world_stop(&H, Mock);
    return 0;
}

static long
tag_list(const char *tok)
{
    struct sc_resp r;
    long code;

    sc_call(&r, H.int_port, "GET", NULL, "/cgi-bin/tag/list?access_token=%s",
            tok);
    assert_int_equal(r.status, 200);
    code = sc_ecode(&r);
    sc_resp_free(&r);
    return code;
}

/* The tenant hash's status set behind the broker's back: no notice. */
static void
set_status_quietly(const char *corp, const char *status)
{
    redisContext *c = h_redis(&H);
    redisReply *x;

    assert_non_null(c);
    x = redisCommand(c, "HSET wb:{%s}:%s:tenant status %s", corp, S1, status);
    assert_non_null(x);
    assert_int_equal(x->type, REDIS_REPLY_INTEGER);
    freeReplyObject(x);
    redisFree(c);
}

static void
sleep_until(long t_ms)
{
    long now = h_now_ms();

    /* pacing: the test is about the age of a cache entry */
    if (t_ms > now)
        usleep((useconds_t)(t_ms - now) * 1000);
}

static void
test_tenant_read_ahead_of_expiry(void **state)
{
    char corp[32], *tok;
    long t0, seen = -1;

    (void)state;
    snprintf(corp, sizeof(corp), "wwmockcorp%04d", ++Shape);
    tc_install(S1, corp, h_next_ts());
    tc_wait_status(S1, corp, "active", 30000);
    tok = tc_token_for(0, Secret, corp);
    /* cached now: token, service, tenant */
    t0 = h_now_ms();
    assert_int_equal(tag_list(tok), 0);
    set_status_quietly(corp, "cancelled");
    /* within the first 3/4 the cached tenant serves, as before */
    assert_int_equal(tag_list(tok), 0);
    /* past 3/4: this hit reads the tenant again in the background */
    sleep_until(t0 + MAX_AGE * 1000 * 3 / 4 + 100);
    tag_list(tok);
    while (h_now_ms() < t0 + MAX_AGE * 1000 + 2000) {
        if (tag_list(tok) == 48004) {
            seen = h_now_ms() - t0;
            break;
        }
        usleep(20000); /* pacing between polls */
    }
    fprintf(stderr, "# the stored change served %ld ms after the first entry\n",
            seen);
    assert_true(seen >= 0);
    /* before the first entry ran out: it was replaced ahead of time */
    assert_true(seen < MAX_AGE * 1000 - 300);
    set_status_quietly(corp, "active");
    free(tok);
}

static void
test_never_older_than_max_age(void **state)
{
    char corp[32], *tok;
    long t0, seen = -1;

    (void)state;
    snprintf(corp, sizeof(corp), "wwmockcorp%04d", ++Shape);
    tc_install(S1, corp, h_next_ts());
    tc_wait_status(S1, corp, "active", 30000);
    tok = tc_token_for(0, Secret, corp);
    t0 = h_now_ms();
    assert_int_equal(tag_list(tok), 0);
    set_status_quietly(corp, "cancelled");
    /* no hit past 3/4: nothing read ahead, and still the entry goes at
     * cache_max_age */
    sleep_until(t0 + MAX_AGE * 1000 + 100);
    seen = tag_list(tok);
    assert_int_equal(seen, 48004);
    set_status_quietly(corp, "active");
    free(tok);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tenant_read_ahead_of_expiry),
        cmocka_unit_test(test_never_older_than_max_age),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
