/*
 * Tests for the pure half of the Sentinel client: the sentinel:// URL
 * (through config_redis_parse, as the store and brokerctl read it), and
 * the replies a sentinel or a data node gives, as hostile input — a
 * sentinel's answer decides where every write goes next.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "config.h"
#include "sentinel.h"

static void
test_url_forms(void **state)
{
    struct config_redis r;

    (void)state;
    assert_int_equal(
        config_redis_parse("sentinel://10.0.0.1:26380,s2,s3.example:1/mymaster",
                           &r),
        BRK_OK);
    assert_null(r.host);
    assert_null(r.unix_path);
    assert_null(r.password);
    assert_string_equal(r.master, "mymaster");
    assert_int_equal(r.nsentinels, 3);
    assert_string_equal(r.sentinels[0].host, "10.0.0.1");
    assert_int_equal(r.sentinels[0].port, 26380);
    assert_string_equal(r.sentinels[1].host, "s2");
    assert_int_equal(r.sentinels[1].port, SENTINEL_DEFAULT_PORT);
    assert_string_equal(r.sentinels[2].host, "s3.example");
    assert_int_equal(r.sentinels[2].port, 1);
    assert_int_equal(r.db, 0);
    config_redis_clear(&r);
    assert_null(r.master);

    assert_int_equal(
        config_redis_parse("sentinel://app:pw!x@h:26379/m-1.a_b/12", &r),
        BRK_OK);
    assert_string_equal(r.user, "app");
    assert_string_equal(r.password, "pw!x");
    assert_string_equal(r.master, "m-1.a_b");
    assert_int_equal(r.db, 12);
    assert_int_equal(r.nsentinels, 1);
    config_redis_clear(&r);

    assert_int_equal(config_redis_parse("sentinel://:pw@h/m", &r), BRK_OK);
    assert_null(r.user);
    assert_string_equal(r.password, "pw");
    config_redis_clear(&r);
}

static void
test_url_bad(void **state)
{
    static const char *const bad[] = {
        "sentinel://",
        "sentinel://h:26379",       /* no master name */
        "sentinel://h:26379/",      /* empty master name */
        "sentinel:///m",            /* no sentinel */
        "sentinel://h:0/m",         /* port 0 */
        "sentinel://h:65536/m",     /* port too big */
        "sentinel://h:/m",          /* empty port */
        "sentinel://h:2x/m",        /* port not a number */
        "sentinel://h,,h2/m",       /* empty element */
        "sentinel://h,/m",          /* trailing comma */
        "sentinel://[::1]:26379/m", /* no IPv6 literal */
        "sentinel://h:1/m/x",       /* db not a number */
        "sentinel://h:1/m/1001",    /* db out of range */
        "sentinel://h:1/m/1/2",     /* more path */
        "sentinel://h:1/m n",       /* space in the name */
        "sentinel://h:1/m{x}",      /* brace in the name */
        "sentinel://pw@h:1/m",      /* userinfo without ':' */
        "sentinel://:@h:1/m",       /* empty password */
        "sentinel://:a@b@h:1/m",    /* two '@' */
        "sentinel://:p\001w@h:1/m", /* control character */
        "sentinel://h\t:1/m",       /* control character */
        "sentinels://h:1/m",        /* not the scheme */
        "SENTINEL://h:1/m",         /* schemes are lower case */
    };
    struct config_redis r;
    size_t i;

    (void)state;
    memset(&r, 0x5a, sizeof(r));
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (config_redis_parse(bad[i], &r) != BRK_ERR_INVAL)
            fail_msg("accepted: %s", bad[i]);
        /* untouched on error */
        assert_int_equal(r.nsentinels, (size_t)0x5a5a5a5a5a5a5a5aULL);
    }
}

static void
test_url_limits(void **state)
{
    char url[1024], name[SENTINEL_MAX_NAME + 2];
    struct config_redis r;
    size_t n = 0;
    int i;

    (void)state;
    n += (size_t)snprintf(url + n, sizeof(url) - n, "sentinel://");
    for (i = 0; i < SENTINEL_MAX_NODES; i++)
        n += (size_t)snprintf(url + n, sizeof(url) - n, "%sh%d:%d",
                              i ? "," : "", i, 26379 + i);
    snprintf(url + n, sizeof(url) - n, "/m");
    assert_int_equal(config_redis_parse(url, &r), BRK_OK);
    assert_int_equal(r.nsentinels, SENTINEL_MAX_NODES);
    assert_int_equal(r.sentinels[SENTINEL_MAX_NODES - 1].port,
                     26379 + SENTINEL_MAX_NODES - 1);
    config_redis_clear(&r);
    /* one more is refused, not cut */
    snprintf(url + n, sizeof(url) - n, ",x:1/m");
    assert_int_equal(config_redis_parse(url, &r), BRK_ERR_INVAL);

    memset(name, 'a', sizeof(name));
    name[SENTINEL_MAX_NAME] = '\0';
    snprintf(url, sizeof(url), "sentinel://h/%s", name);
    assert_int_equal(config_redis_parse(url, &r), BRK_OK);
    config_redis_clear(&r);
    name[SENTINEL_MAX_NAME] = 'a';
    name[SENTINEL_MAX_NAME + 1] = '\0';
    snprintf(url, sizeof(url), "sentinel://h/%s", name);
    assert_int_equal(config_redis_parse(url, &r), BRK_ERR_INVAL);
}

static void
test_url_allocation_failures(void **state)
{
    struct config_redis r;
    unsigned long n;
    enum brk_err err;

    (void)state;
    for (n = 1;; n++) {
        memset(&r, 0, sizeof(r));
        brk_alloc_fail_at(n);
        err = config_redis_parse("sentinel://u:p@a:1,b:2,c/m/3", &r);
        brk_alloc_fail_at(0);
        if (err == BRK_OK)
            break;
        assert_int_equal(err, BRK_ERR_NOMEM);
        assert_null(r.master);
        assert_null(r.sentinels);
    }
    assert_true(n > 5);
    assert_int_equal(r.nsentinels, 3);
    config_redis_clear(&r);
}

static enum brk_err
addr2(const char *h, size_t hl, const char *p, size_t pl, char *host,
      size_t hostlen, int *port)
{
    const char *el[2] = {h, p};
    size_t len[2] = {hl, pl};

    return sentinel_parse_master_addr(2, el, len, host, hostlen, port);
}

static void
test_master_addr(void **state)
{
    char host[SENTINEL_HOST_MAX], small[8], longh[300];
    const char *el[3] = {"10.0.0.9", "6379", "x"};
    size_t len[3] = {8, 4, 1};
    int port = -1;

    (void)state;
    assert_int_equal(addr2("10.0.0.9", 8, "6380", 4, host, sizeof(host), &port),
                     BRK_OK);
    assert_string_equal(host, "10.0.0.9");
    assert_int_equal(port, 6380);
    assert_int_equal(addr2("fe80::1", 7, "1", 1, host, sizeof(host), &port),
                     BRK_OK);
    assert_string_equal(host, "fe80::1");
    assert_int_equal(
        addr2("redis-a.svc", 11, "65535", 5, host, sizeof(host), &port),
        BRK_OK);
    assert_int_equal(port, 65535);

    port = -1;
    snprintf(host, sizeof(host), "keep");
    /* a nil reply (unknown master), a wrong count, non-strings */
    assert_int_equal(
        sentinel_parse_master_addr(0, NULL, NULL, host, sizeof(host), &port),
        BRK_ERR_INVAL);
    assert_int_equal(
        sentinel_parse_master_addr(1, el, len, host, sizeof(host), &port),
        BRK_ERR_INVAL);
    assert_int_equal(
        sentinel_parse_master_addr(3, el, len, host, sizeof(host), &port),
        BRK_ERR_INVAL);
    el[1] = NULL;
    assert_int_equal(
        sentinel_parse_master_addr(2, el, len, host, sizeof(host), &port),
        BRK_ERR_INVAL);
    /* garbage hosts and ports */
    assert_int_equal(addr2("", 0, "6379", 4, host, sizeof(host), &port),
                     BRK_ERR_INVAL);
    assert_int_equal(addr2("a b", 3, "6379", 4, host, sizeof(host), &port),
                     BRK_ERR_INVAL);
    assert_int_equal(addr2("a\r\n", 3, "6379", 4, host, sizeof(host), &port),
                     BRK_ERR_INVAL);
    assert_int_equal(addr2("ab\0cd", 5, "6379", 4, host, sizeof(host), &port),
                     BRK_ERR_INVAL);
    assert_int_equal(addr2("h/x", 3, "6379", 4, host, sizeof(host), &port),
                     BRK_ERR_INVAL);
    assert_int_equal(addr2("h", 1, "0", 1, host, sizeof(host), &port),
                     BRK_ERR_INVAL);
    assert_int_equal(addr2("h", 1, "65536", 5, host, sizeof(host), &port),
                     BRK_ERR_INVAL);
    assert_int_equal(addr2("h", 1, "-1", 2, host, sizeof(host), &port),
                     BRK_ERR_INVAL);
    assert_int_equal(addr2("h", 1, "63 79", 5, host, sizeof(host), &port),
                     BRK_ERR_INVAL);
    assert_int_equal(addr2("h", 1, "", 0, host, sizeof(host), &port),
                     BRK_ERR_INVAL);
    assert_int_equal(addr2("h", 1, "0000006379", 10, host, sizeof(host), &port),
                     BRK_ERR_INVAL);
    memset(longh, 'a', sizeof(longh));
    assert_int_equal(
        addr2(longh, sizeof(longh), "1", 1, host, sizeof(host), &port),
        BRK_ERR_INVAL);
    /* a host that does not fit the caller's buffer is refused, not cut */
    assert_int_equal(addr2("abcdefgh", 8, "1", 1, small, sizeof(small), &port),
                     BRK_ERR_INVAL);
    assert_int_equal(addr2("abcdefg", 7, "1", 1, small, sizeof(small), &port),
                     BRK_OK);
    assert_string_equal(small, "abcdefg");
    port = -1;
    snprintf(host, sizeof(host), "keep");
    assert_int_equal(addr2("h", 1, "x", 1, host, sizeof(host), &port),
                     BRK_ERR_INVAL);
    assert_string_equal(host, "keep");
    assert_int_equal(port, -1);
}

static void
test_role(void **state)
{
    (void)state;
    assert_true(sentinel_role_is_master("master", 6));
    assert_false(sentinel_role_is_master("slave", 5));
    assert_false(sentinel_role_is_master("sentinel", 8));
    assert_false(sentinel_role_is_master("masterx", 7));
    assert_false(sentinel_role_is_master("maste", 5));
    assert_false(sentinel_role_is_master("MASTER", 6));
    assert_false(sentinel_role_is_master(NULL, 6));
    assert_false(sentinel_role_is_master("master\0", 7));
}

static void
test_switch(void **state)
{
    static const char ok[] = "mymaster 127.0.0.1 6379 127.0.0.1 6380";
    static const char *const bad[] = {
        "",
        "mymaster",
        "mymaster 127.0.0.1 6379 127.0.0.1",
        "mymaster 127.0.0.1 6379 127.0.0.1 6380 extra",
        "mymaster 127.0.0.1 6379 127.0.0.1 0",
        "mymaster 127.0.0.1 6379 127.0.0.1 6380 ",
        "mymaster  127.0.0.1 6379 127.0.0.1 6380",
        "mymaster 127.0.0.1 x 127.0.0.1 6380",
        "mymaster 127.0.0.1 6379 127.0.\n0.1 6380",
        "my{master} 127.0.0.1 6379 127.0.0.1 6380",
    };
    char host[SENTINEL_HOST_MAX];
    int port = 0;
    size_t i;

    (void)state;
    assert_int_equal(sentinel_parse_switch(ok, strlen(ok), "mymaster", host,
                                           sizeof(host), &port),
                     BRK_OK);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6380);
    assert_int_equal(sentinel_parse_switch(ok, strlen(ok), "other", host,
                                           sizeof(host), &port),
                     BRK_ERR_NOTFOUND);
    assert_int_equal(sentinel_parse_switch(ok, strlen(ok), "mymast", host,
                                           sizeof(host), &port),
                     BRK_ERR_NOTFOUND);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (sentinel_parse_switch(bad[i], strlen(bad[i]), "mymaster", host,
                                  sizeof(host), &port) != BRK_ERR_INVAL)
            fail_msg("accepted: %s", bad[i]);
    /* the length is what counts, not a NUL */
    assert_int_equal(sentinel_parse_switch(ok, strlen(ok) - 1, "mymaster", host,
                                           sizeof(host), &port),
                     BRK_OK);
    assert_int_equal(port, 638);
}

static void
test_info(void **state)
{
    static const char info[] = "# Replication\r\n"
                               "role:master\r\n"
                               "connected_slaves:2\r\n"
                               "slave0:ip=127.0.0.1,port=1,state=online\r\n"
                               "master_repl_offset:123456\r\n"
                               "big:99999999999\r\n"
                               "neg:-1\r\n"
                               "empty:\r\n"
                               "last:7";
    long v = -5;

    (void)state;
    assert_int_equal(
        sentinel_info_long(info, strlen(info), "connected_slaves", &v), BRK_OK);
    assert_int_equal(v, 2);
    assert_int_equal(
        sentinel_info_long(info, strlen(info), "master_repl_offset", &v),
        BRK_OK);
    assert_int_equal(v, 123456);
    assert_int_equal(sentinel_info_long(info, strlen(info), "last", &v),
                     BRK_OK);
    assert_int_equal(v, 7);
    v = -5;
    assert_int_equal(sentinel_info_long(info, strlen(info), "connected", &v),
                     BRK_ERR_NOTFOUND);
    assert_int_equal(sentinel_info_long(info, strlen(info), "slaves", &v),
                     BRK_ERR_NOTFOUND);
    assert_int_equal(sentinel_info_long(info, strlen(info), "role", &v),
                     BRK_ERR_INVAL);
    assert_int_equal(sentinel_info_long(info, strlen(info), "big", &v),
                     BRK_ERR_INVAL);
    assert_int_equal(sentinel_info_long(info, strlen(info), "neg", &v),
                     BRK_ERR_INVAL);
    assert_int_equal(sentinel_info_long(info, strlen(info), "empty", &v),
                     BRK_ERR_INVAL);
    assert_int_equal(v, -5);
    assert_int_equal(sentinel_info_long(info, 0, "role", &v), BRK_ERR_NOTFOUND);
    assert_int_equal(sentinel_info_long(info, strlen(info), "", &v),
                     BRK_ERR_INVAL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_forms),
        cmocka_unit_test(test_url_bad),
        cmocka_unit_test(test_url_limits),
        cmocka_unit_test(test_url_allocation_failures),
        cmocka_unit_test(test_master_addr),
        cmocka_unit_test(test_role),
        cmocka_unit_test(test_switch),
        cmocka_unit_test(test_info),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
