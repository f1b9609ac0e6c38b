/*
 * Tests for the delivery settings: receiver URLs, --events lists and
 * their matching, the backoff, generated keys (which WeCom's crypto must
 * accept) and the key names of a service's queues.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "broker.h"
#include "delivery_def.h"
#include "wecom_crypto.h"

static void
test_urls(void **state)
{
    char longurl[DELIVERY_URL_MAX + 8];

    (void)state;
    assert_true(delivery_url_ok("http://127.0.0.1:8080/cb"));
    assert_true(delivery_url_ok("https://crm.internal/wecom/events?x=1"));
    assert_true(delivery_url_ok("HTTPS://h"));
    assert_true(delivery_url_ok("http://[::1]:80/x"));
    assert_false(delivery_url_ok(""));
    assert_false(delivery_url_ok("ftp://h/x"));
    assert_false(delivery_url_ok("http://"));
    assert_false(delivery_url_ok("http:///x"));
    assert_false(delivery_url_ok("http://u:p@h/x"));
    assert_false(delivery_url_ok("http://u@h/x"));
    assert_false(delivery_url_ok("http://h/x#f"));
    assert_false(delivery_url_ok("http://h/a b"));
    assert_false(delivery_url_ok("http://h\\@evil/"));
    assert_false(delivery_url_ok("http://h:/x"));
    assert_false(delivery_url_ok("http://h:123456/x"));
    assert_false(delivery_url_ok("http://h:8x/x"));
    assert_false(delivery_url_ok("http://h/\x7f"));
    memset(longurl, 'a', sizeof(longurl));
    memcpy(longurl, "http://h/", 9);
    longurl[DELIVERY_URL_MAX + 1] = '\0';
    assert_false(delivery_url_ok(longurl));
    longurl[DELIVERY_URL_MAX] = '\0';
    assert_true(delivery_url_ok(longurl));
}

static void
test_events(void **state)
{
    (void)state;
    assert_int_equal(delivery_events_check("create_auth"), BRK_OK);
    assert_int_equal(delivery_events_check("create_auth,cancel_auth,"
                                           "change_contact/create_user"),
                     BRK_OK);
    assert_int_equal(delivery_events_check(""), BRK_ERR_INVAL);
    assert_int_equal(delivery_events_check(","), BRK_ERR_INVAL);
    assert_int_equal(delivery_events_check("create_auth,"), BRK_ERR_INVAL);
    assert_int_equal(delivery_events_check("create_auth,create_auth"),
                     BRK_ERR_INVAL);
    assert_int_equal(delivery_events_check("nope"), BRK_ERR_INVAL);
    assert_int_equal(delivery_events_check("create_auth/x"), BRK_ERR_INVAL);
    assert_int_equal(delivery_events_check("change_contact/"), BRK_ERR_INVAL);
    assert_int_equal(delivery_events_check("suite_ticket"), BRK_ERR_INVAL);
    assert_true(delivery_events_match("", "create_auth", NULL));
    assert_true(delivery_events_match("create_auth", "create_auth", NULL));
    assert_false(delivery_events_match("change_auth", "create_auth", NULL));
    assert_false(delivery_events_match("create_auth", "create_aut", NULL));
    assert_true(delivery_events_match("change_contact", "change_contact",
                                      "create_user"));
    assert_true(delivery_events_match("cancel_auth,change_contact/delete_user",
                                      "change_contact", "delete_user"));
    assert_false(delivery_events_match("change_contact/delete_user",
                                       "change_contact", "create_user"));
    assert_false(delivery_events_match("change_contact/delete_user",
                                       "change_contact", NULL));
    assert_true(delivery_is_lifecycle("cancel_auth"));
    assert_false(delivery_is_lifecycle("change_contact"));
}

static void
test_backoff(void **state)
{
    (void)state;
    assert_int_equal(delivery_backoff_ms(1), 1000);
    assert_int_equal(delivery_backoff_ms(2), 2000);
    assert_int_equal(delivery_backoff_ms(9), 256000);
    assert_int_equal(delivery_backoff_ms(10), 300000);
    assert_int_equal(delivery_backoff_ms(1000), 300000);
}

static void
test_generated_keys(void **state)
{
    char key[DELIVERY_AES_KEY_LEN + 1], tok[DELIVERY_TOKEN_LEN + 1];
    struct wecom_crypto *c = NULL;
    char *enc = NULL, *msg = NULL, *rid = NULL;
    size_t len = 0;
    int i;

    (void)state;
    for (i = 0; i < 50; i++) {
        assert_int_equal(delivery_aes_key_new(key), BRK_OK);
        assert_int_equal(strlen(key), 43);
        assert_int_equal(strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijk"
                                     "lmnopqrstuvwxyz0123456789"),
                         43);
        assert_non_null(strchr("AEIMQUYcgkosw048", key[42]));
        assert_int_equal(delivery_random_alnum(tok, DELIVERY_TOKEN_LEN),
                         BRK_OK);
        assert_int_equal(strlen(tok), DELIVERY_TOKEN_LEN);
        assert_int_equal(wecom_crypto_new(tok, key, &c), BRK_OK);
        assert_int_equal(wecom_crypto_encrypt(c, "<xml/>", 6, "wwS", &enc),
                         BRK_OK);
        assert_int_equal(
            wecom_crypto_decrypt(c, enc, strlen(enc), &msg, &len, &rid),
            BRK_OK);
        assert_string_equal(msg, "<xml/>");
        assert_string_equal(rid, "wwS");
        brk_free(enc);
        brk_free_secret(msg, len);
        brk_free(rid);
        wecom_crypto_free(c);
        c = NULL;
    }
}

static void
test_keys_and_ids(void **state)
{
    struct delivery_keys k;
    char a[DELIVERY_EVENT_ID_LEN + 1], b[DELIVERY_EVENT_ID_LEN + 1];

    (void)state;
    assert_int_equal(delivery_keys(&k, "wb:", "0123456789abcdef", "wwS", "wwC"),
                     BRK_OK);
    assert_string_equal(k.q, "wb:svc:{0123456789abcdef}:dq:wwS:wwC");
    assert_string_equal(k.dead, "wb:svc:{0123456789abcdef}:dd:wwS:wwC");
    assert_string_equal(k.ready, "wb:svc:{0123456789abcdef}:dready");
    assert_string_equal(k.member, "wwS:wwC");
    assert_int_equal(delivery_keys(&k, "wb:", "0123456789abcdef", "w:S", "C"),
                     BRK_ERR_INVAL);
    assert_int_equal(delivery_keys_member(&k, "wb:", "0123456789abcdef", "x"),
                     BRK_ERR_INVAL);
    assert_int_equal(
        delivery_keys_member(&k, "wb:", "0123456789abcdef", "wwS:a:b"),
        BRK_ERR_INVAL);
    delivery_event_id("wwS", "wwC", "1-0", "create_auth", a);
    delivery_event_id("wwS", "wwC", "1-0", "create_auth", b);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), DELIVERY_EVENT_ID_LEN);
    delivery_event_id("wwS", "wwC", "1-1", "create_auth", b);
    assert_string_not_equal(a, b);
    delivery_event_id("wwSw", "wC", "1-0", "create_auth", b);
    assert_string_not_equal(a, b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_events),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_generated_keys),
        cmocka_unit_test(test_keys_and_ids),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
