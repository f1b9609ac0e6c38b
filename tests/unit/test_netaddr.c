/*
 * Tests for client addresses: strict parsing of addresses and CIDR lists,
 * IPv4-mapped IPv6 taken as IPv4, budget keys (an IPv4 address, the /64 of
 * an IPv6 one), prefix matching at every bit boundary, and the client
 * behind trusted proxies read from the right of X-Forwarded-For, never
 * from what the client itself could have written.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "broker.h"
#include "netaddr.h"

static struct netaddr
addr(const char *s)
{
    struct netaddr a;

    assert_int_equal(netaddr_parse(s, &a), BRK_OK);
    return a;
}

static void
key_is(const char *s, const char *want)
{
    struct netaddr a = addr(s);
    char k[NETADDR_KEY_MAX];

    netaddr_key(&a, k);
    assert_string_equal(k, want);
}

static void
test_parse_and_keys(void **state)
{
    static const char *const bad[] = {
        "",         "1.2.3",        "1.2.3.4.5",         "1.2.3.256",
        " 1.2.3.4", "1.2.3.4 ",     "1.2.3.4:80",        "[::1]",
        "::1%eth0", "2001:db8::g",  "localhost",         "1.2.3.4/8",
        "01.2.3.4", "::ffff:1.2.3", "1:2:3:4:5:6:7:8:9",
    };
    struct netaddr a;
    size_t i;

    (void)state;
    key_is("192.0.2.1", "192.0.2.1");
    key_is("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64");
    key_is("2001:db8:1:2::ffff", "2001:db8:1:2::/64");
    key_is("::1", "::/64");
    /* an IPv4 client seen through an IPv6 socket is the same client */
    key_is("::ffff:192.0.2.1", "192.0.2.1");
    a = addr("::ffff:192.0.2.1");
    assert_false(a.v6);
    for (i = 0; i < nitems(bad); i++) {
        memset(&a, 7, sizeof(a));
        assert_int_equal(netaddr_parse(bad[i], &a), BRK_ERR_INVAL);
    }
    assert_int_equal(netaddr_parse(NULL, &a), BRK_ERR_INVAL);
}

static void
test_from_sockaddr(void **state)
{
    struct sockaddr_in s4;
    struct sockaddr_in6 s6;
    struct sockaddr sa;
    struct netaddr a;
    char k[NETADDR_KEY_MAX];

    (void)state;
    memset(&s4, 0, sizeof(s4));
    s4.sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, "198.51.100.7", &s4.sin_addr), 1);
    assert_int_equal(
        netaddr_from_sockaddr((struct sockaddr *)&s4, sizeof(s4), &a), BRK_OK);
    netaddr_key(&a, k);
    assert_string_equal(k, "198.51.100.7");
    memset(&s6, 0, sizeof(s6));
    s6.sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, "::ffff:198.51.100.7", &s6.sin6_addr),
                     1);
    assert_int_equal(
        netaddr_from_sockaddr((struct sockaddr *)&s6, sizeof(s6), &a), BRK_OK);
    assert_false(a.v6);
    /* short lengths and other families */
    assert_int_equal(
        netaddr_from_sockaddr((struct sockaddr *)&s6, sizeof(s4), &a),
        BRK_ERR_INVAL);
    memset(&sa, 0, sizeof(sa));
    sa.sa_family = AF_UNIX;
    assert_int_equal(netaddr_from_sockaddr(&sa, sizeof(sa), &a), BRK_ERR_INVAL);
}

static struct netaddr_list *
list(const char *s)
{
    struct netaddr_list *l = NULL;
    struct brk_errinfo info;

    assert_int_equal(netaddr_list_parse(s, &l, &info), BRK_OK);
    return l;
}

static void
test_lists(void **state)
{
    static const char *const bad[] = {
        "1.2.3.4,",    ",1.2.3.4",     "1.2.3.4,,5.6.7.8", "1.2.3.4/33",
        "1.2.3.4/",    "1.2.3.4/-1",   "1.2.3.4/08",       "::1/129",
        "10.0.0.0/8x", "host.example", "1.2.3.4 5.6.7.8",  "::ffff:1.2.3.4/120",
    };
    struct netaddr_list *l, *none = NULL;
    struct netaddr a;
    struct brk_errinfo info;
    char many[NETADDR_LIST_MAX * 10 + 16] = "";
    size_t i;

    (void)state;
    l = list(" 10.0.0.1 , 192.168.0.0/16,\t2001:db8::/32, ::1, 0.0.0.0/0 ");
    assert_int_equal(netaddr_list_count(l), 5);
    netaddr_list_free(l);
    l = list("");
    assert_int_equal(netaddr_list_count(l), 0);
    a = addr("10.0.0.1");
    assert_false(netaddr_list_has(l, &a));
    netaddr_list_free(l);
    assert_false(netaddr_list_has(NULL, &a));
    assert_int_equal(netaddr_list_count(NULL), 0);
    /* prefixes at bit boundaries */
    l = list("10.1.2.0/23, 2001:db8:8000::/33, 192.0.2.9");
    a = addr("10.1.3.255");
    assert_true(netaddr_list_has(l, &a));
    a = addr("10.1.4.0");
    assert_false(netaddr_list_has(l, &a));
    a = addr("10.1.1.255");
    assert_false(netaddr_list_has(l, &a));
    a = addr("2001:db8:ffff::1");
    assert_true(netaddr_list_has(l, &a));
    a = addr("2001:db8:7fff::1");
    assert_false(netaddr_list_has(l, &a));
    a = addr("192.0.2.9");
    assert_true(netaddr_list_has(l, &a));
    a = addr("192.0.2.8");
    assert_false(netaddr_list_has(l, &a));
    /* families do not mix; a mapped address matches its IPv4 entry */
    a = addr("::ffff:192.0.2.9");
    assert_true(netaddr_list_has(l, &a));
    netaddr_list_free(l);
    for (i = 0; i < nitems(bad); i++) {
        none = NULL;
        assert_int_equal(netaddr_list_parse(bad[i], &none, &info),
                         BRK_ERR_INVAL);
        assert_null(none);
    }
    for (i = 0; i <= NETADDR_LIST_MAX; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s",
                 i ? ",10.0.0.1" : "10.0.0.1");
    assert_int_equal(netaddr_list_parse(many, &none, &info), BRK_ERR_TOOBIG);
    assert_null(none);
}

static void
client_is(const char *peer, const char *xff, const char *trusted,
          const char *want)
{
    struct netaddr_list *l = list(trusted);
    struct netaddr p = addr(peer), c, w;

    memset(&c, 0, sizeof(c));
    assert_int_equal(netaddr_client(&p, xff, l, &c), BRK_OK);
    w = addr(want);
    assert_memory_equal(&c, &w, sizeof(c));
    netaddr_list_free(l);
}

static void
client_refused(const char *peer, const char *xff, const char *trusted)
{
    struct netaddr_list *l = list(trusted);
    struct netaddr p = addr(peer), c, keep;

    memset(&c, 9, sizeof(c));
    keep = c;
    assert_int_equal(netaddr_client(&p, xff, l, &c), BRK_ERR_INVAL);
    assert_memory_equal(&c, &keep, sizeof(c));
    netaddr_list_free(l);
}

static void
test_client_behind_proxies(void **state)
{
    char longxff[NETADDR_XFF_MAX * 12 + 16] = "";
    size_t i;

    (void)state;
    /* not behind a trusted proxy: the header is the client's own */
    client_is("203.0.113.5", "198.51.100.1", "", "203.0.113.5");
    client_is("203.0.113.5", "198.51.100.1", "10.0.0.1", "203.0.113.5");
    client_is("203.0.113.5", "garbage", "10.0.0.1", "203.0.113.5");
    /* behind one: the rightmost entry it appended */
    client_is("10.0.0.1", "198.51.100.1", "10.0.0.1", "198.51.100.1");
    client_is("10.0.0.1", "6.6.6.6, 198.51.100.1", "10.0.0.1", "198.51.100.1");
    /* what the client wrote left of it is never read */
    client_is("10.0.0.1", "garbage, 198.51.100.1", "10.0.0.1", "198.51.100.1");
    /* two proxies: the first untrusted from the right */
    client_is("10.0.0.1", "6.6.6.6, 198.51.100.1, 10.0.0.2", "10.0.0.0/24",
              "198.51.100.1");
    /* all trusted: the leftmost */
    client_is("10.0.0.1", "10.0.0.3,10.0.0.2", "10.0.0.0/24", "10.0.0.3");
    /* no header: the proxy itself */
    client_is("10.0.0.1", NULL, "10.0.0.1", "10.0.0.1");
    client_is("::1", "2001:db8::5", "::1", "2001:db8::5");
    client_is("10.0.0.1", " 198.51.100.1 ", "10.0.0.1", "198.51.100.1");
    /* the part that has to be read is not an address */
    client_refused("10.0.0.1", "", "10.0.0.1");
    client_refused("10.0.0.1", "198.51.100.1,", "10.0.0.1");
    client_refused("10.0.0.1", "unknown", "10.0.0.1");
    client_refused("10.0.0.1", "198.51.100.1:443", "10.0.0.1");
    client_refused("10.0.0.1", "10.0.0.2, bad", "10.0.0.0/24");
    for (i = 0; i <= NETADDR_XFF_MAX; i++)
        snprintf(longxff + strlen(longxff), sizeof(longxff) - strlen(longxff),
                 "%s", i ? ",10.0.0.9" : "10.0.0.9");
    client_refused("10.0.0.1", longxff, "10.0.0.0/24");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_keys),
        cmocka_unit_test(test_from_sockaddr),
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_client_behind_proxies),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
