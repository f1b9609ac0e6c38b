/*
 * Tests for the strict text codecs: base64 round trips and RFC 4648
 * vectors, every kind of malformed base64, hex, and percent-decoding that
 * must keep '+' and refuse anything ambiguous.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "broker.h"
#include "codec.h"

/*---- Helpers ----*/

/* Fixed-seed xorshift64 so a failure reproduces exactly. */
static uint64_t prng_state;

static void
prng_seed(uint64_t seed)
{
    prng_state = seed;
}

static unsigned char
prng_byte(void)
{
    prng_state ^= prng_state << 13;
    prng_state ^= prng_state >> 7;
    prng_state ^= prng_state << 17;
    return (unsigned char)(prng_state >> 24);
}

/* Decode a NUL-terminated string with a generous capacity. */
static enum brk_err
b64_dec(const char *in, unsigned char *out, size_t cap, size_t *outlen)
{
    return codec_b64_decode(in, strlen(in), out, cap, outlen);
}

static void
expect_b64_inval(const char *in)
{
    unsigned char out[64];
    size_t outlen = 777;
    enum brk_err err = b64_dec(in, out, sizeof(out), &outlen);

    if (err != BRK_ERR_INVAL)
        print_error("\"%s\": got %s, want invalid_input\n", in,
                    brk_strerror(err));
    assert_int_equal(err, BRK_ERR_INVAL);
    assert_int_equal(outlen, 777);
}

static enum brk_err
pct_dec(const char *in, char *out, size_t *outlen)
{
    return codec_pct_decode(in, strlen(in), out, outlen);
}

static void
expect_pct_inval_len(const char *in, size_t n)
{
    char out[64];
    size_t outlen = 777;

    assert_true(n + 1 <= sizeof(out));
    assert_int_equal(codec_pct_decode(in, n, out, &outlen), BRK_ERR_INVAL);
    assert_int_equal(outlen, 777);
}

static void
expect_pct_inval(const char *in)
{
    expect_pct_inval_len(in, strlen(in));
}

static void
expect_pct(const char *in, const char *want)
{
    char out[128];
    size_t outlen = 777;

    assert_true(strlen(in) + 1 <= sizeof(out));
    assert_int_equal(pct_dec(in, out, &outlen), BRK_OK);
    assert_string_equal(out, want);
    assert_int_equal(outlen, strlen(want));
}

/*---- Base64 ----*/

static void
test_b64_rfc4648_vectors(void **state)
{
    static const struct {
        const char *plain;
        const char *enc;
    } v[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    char enc[32];
    unsigned char dec[32];
    size_t i, outlen;

    (void)state;
    for (i = 0; i < nitems(v); i++) {
        size_t n = strlen(v[i].plain);

        memset(enc, 'X', sizeof(enc));
        codec_b64_encode((const unsigned char *)v[i].plain, n, enc);
        assert_string_equal(enc, v[i].enc);
        assert_int_equal(strlen(enc) + 1, CODEC_B64_ENC_SIZE(n));

        outlen = 777;
        assert_int_equal(b64_dec(v[i].enc, dec, sizeof(dec), &outlen), BRK_OK);
        assert_int_equal(outlen, n);
        assert_memory_equal(dec, v[i].plain, n);
    }
}

static void
test_b64_round_trip_random(void **state)
{
    unsigned char in[300] = {0}, dec[300];
    char enc[CODEC_B64_ENC_SIZE(300) + 1];
    size_t n, i, outlen;

    (void)state;
    prng_seed(0x9e3779b97f4a7c15ULL);
    for (n = 0; n <= sizeof(in); n++) {
        for (i = 0; i < n; i++)
            in[i] = prng_byte();
        /* a sentinel right after the promised size catches overruns */
        enc[CODEC_B64_ENC_SIZE(n)] = '#';
        codec_b64_encode(in, n, enc);
        assert_int_equal(strlen(enc) + 1, CODEC_B64_ENC_SIZE(n));
        assert_int_equal(enc[CODEC_B64_ENC_SIZE(n)], '#');
        assert_int_equal(strlen(enc) % 4, 0);

        outlen = 777;
        assert_int_equal(codec_b64_decode(enc, strlen(enc), dec, n, &outlen),
                         BRK_OK);
        assert_int_equal(outlen, n);
        if (n > 0)
            assert_memory_equal(dec, in, n);
    }
}

static void
test_b64_all_byte_values(void **state)
{
    unsigned char in[256], dec[256];
    char enc[CODEC_B64_ENC_SIZE(256)];
    size_t i, outlen = 0;

    (void)state;
    for (i = 0; i < sizeof(in); i++)
        in[i] = (unsigned char)i;
    codec_b64_encode(in, sizeof(in), enc);
    assert_int_equal(b64_dec(enc, dec, sizeof(dec), &outlen), BRK_OK);
    assert_int_equal(outlen, sizeof(in));
    assert_memory_equal(dec, in, sizeof(in));
    /* both non-alphanumeric symbols of the standard alphabet appear */
    assert_non_null(strchr(enc, '+'));
    assert_non_null(strchr(enc, '/'));
}

static void
test_b64_reject_bad_length(void **state)
{
    (void)state;
    expect_b64_inval("Z");
    expect_b64_inval("Zg");
    expect_b64_inval("Zg=");
    expect_b64_inval("Zm9vY");
    expect_b64_inval("Zm9vYg");
    expect_b64_inval("Zm9vYg=");
}

static void
test_b64_reject_url_safe_alphabet(void **state)
{
    (void)state;
    /* "-" and "_" are the base64url forms of "+" and "/" */
    expect_b64_inval("-_-_");
    expect_b64_inval("ab-d");
    expect_b64_inval("ab_d");
}

static void
test_b64_reject_whitespace(void **state)
{
    (void)state;
    expect_b64_inval("Zm9v Zm9v");
    expect_b64_inval("Zm9 ");
    expect_b64_inval("Zm9v\nZm9v");
    expect_b64_inval("Zm9\n");
    expect_b64_inval("Zm9\r");
    expect_b64_inval("Zm9\t");
}

static void
test_b64_reject_other_chars(void **state)
{
    (void)state;
    expect_b64_inval("Zm9!");
    expect_b64_inval("Zm9.");
    expect_b64_inval("Zm9\x80");
    expect_b64_inval("Zm9\xff");
}

static void
test_b64_reject_embedded_nul(void **state)
{
    unsigned char out[8];
    size_t outlen = 777;

    (void)state;
    assert_int_equal(codec_b64_decode("Zm\0v", 4, out, sizeof(out), &outlen),
                     BRK_ERR_INVAL);
    assert_int_equal(outlen, 777);
}

static void
test_b64_reject_pad_in_middle(void **state)
{
    (void)state;
    expect_b64_inval("Zg==Zm9v");
    expect_b64_inval("Zm8=Zm9v");
    expect_b64_inval("Z=9v");
    expect_b64_inval("Zm=v");
    expect_b64_inval("Z=g=");
    expect_b64_inval("=Zm9");
}

static void
test_b64_reject_triple_pad(void **state)
{
    (void)state;
    expect_b64_inval("Z===");
    expect_b64_inval("====");
    expect_b64_inval("Zm9vZ===");
}

static void
test_b64_reject_nonzero_pad_bits(void **state)
{
    unsigned char out[8];
    size_t outlen = 0;

    (void)state;
    /* the canonical forms decode */
    assert_int_equal(b64_dec("Zg==", out, sizeof(out), &outlen), BRK_OK);
    assert_int_equal(outlen, 1);
    assert_int_equal(out[0], 'f');
    assert_int_equal(b64_dec("Zm8=", out, sizeof(out), &outlen), BRK_OK);
    assert_int_equal(outlen, 2);
    assert_memory_equal(out, "fo", 2);
    /* same bytes with stray bits under the padding do not */
    expect_b64_inval("Zh==");
    expect_b64_inval("Zv==");
    expect_b64_inval("Zm9=");
    expect_b64_inval("Zm/=");
    expect_b64_inval("Zm9vZh==");
}

static void
test_b64_cap_one_short_toobig(void **state)
{
    static const char *const enc[] = {"Zg==", "Zm8=", "Zm9v", "Zm9vYmFy"};
    static const size_t len[] = {1, 2, 3, 6};
    unsigned char out[8];
    size_t i, outlen;

    (void)state;
    for (i = 0; i < nitems(enc); i++) {
        outlen = 777;
        assert_int_equal(b64_dec(enc[i], out, len[i] - 1, &outlen),
                         BRK_ERR_TOOBIG);
        assert_int_equal(outlen, 777);
    }
}

static void
test_b64_exact_cap_ok(void **state)
{
    unsigned char out[6];
    size_t outlen = 777;

    (void)state;
    assert_int_equal(b64_dec("Zm9vYmE=", out, 5, &outlen), BRK_OK);
    assert_int_equal(outlen, 5);
    assert_memory_equal(out, "fooba", 5);
    assert_int_equal(b64_dec("Zm9vYmFy", out, 6, &outlen), BRK_OK);
    assert_int_equal(outlen, 6);
    assert_memory_equal(out, "foobar", 6);
    assert_int_equal(b64_dec("", out, 0, &outlen), BRK_OK);
    assert_int_equal(outlen, 0);
}

static void
test_b64_exact_cap_no_overrun(void **state)
{
    unsigned char out[4];
    size_t outlen = 0;

    (void)state;
    memset(out, 0xAA, sizeof(out));
    assert_int_equal(b64_dec("Zg==", out, 1, &outlen), BRK_OK);
    assert_int_equal(out[0], 'f');
    assert_int_equal(out[1], 0xAA);
    memset(out, 0xAA, sizeof(out));
    assert_int_equal(b64_dec("Zm8=", out, 2, &outlen), BRK_OK);
    assert_int_equal(out[2], 0xAA);
}

/*---- Hex ----*/

static void
test_hex_encode(void **state)
{
    static const unsigned char in[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char out[2 * sizeof(in) + 1];

    (void)state;
    codec_hex_encode(in, sizeof(in), out);
    assert_string_equal(out, "00017f80abff");
    codec_hex_encode(in, 0, out);
    assert_string_equal(out, "");
}

/* Every byte value: the digits' values in either case, -1 for the rest. */
static void
test_hex_val_every_byte(void **state)
{
    int c, want;

    (void)state;
    for (c = 0; c < 256; c++) {
        want = c >= '0' && c <= '9'   ? c - '0'
               : c >= 'a' && c <= 'f' ? c - 'a' + 10
               : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                      : -1;
        assert_int_equal(codec_hex_val((unsigned char)c), want);
    }
}

static void
test_hex_round_trip(void **state)
{
    unsigned char in[64] = {0}, dec[64];
    char enc[129];
    size_t n, i;

    (void)state;
    prng_seed(12345);
    for (n = 0; n <= sizeof(in); n++) {
        for (i = 0; i < n; i++)
            in[i] = prng_byte();
        codec_hex_encode(in, n, enc);
        assert_int_equal(strlen(enc), 2 * n);
        assert_int_equal(codec_hex_decode(enc, strlen(enc), dec, n), BRK_OK);
        if (n > 0)
            assert_memory_equal(dec, in, n);
    }
}

static void
test_hex_decode_uppercase(void **state)
{
    unsigned char out[4];

    (void)state;
    assert_int_equal(codec_hex_decode("DEADbeef", 8, out, 4), BRK_OK);
    assert_int_equal(out[0], 0xde);
    assert_int_equal(out[1], 0xad);
    assert_int_equal(out[2], 0xbe);
    assert_int_equal(out[3], 0xef);
}

static void
test_hex_reject_odd_length(void **state)
{
    unsigned char out[4];

    (void)state;
    assert_int_equal(codec_hex_decode("abc", 3, out, 1), BRK_ERR_INVAL);
    assert_int_equal(codec_hex_decode("abc", 3, out, 2), BRK_ERR_INVAL);
}

static void
test_hex_reject_bad_digit(void **state)
{
    unsigned char out[4];

    (void)state;
    assert_int_equal(codec_hex_decode("0g", 2, out, 1), BRK_ERR_INVAL);
    assert_int_equal(codec_hex_decode("g0", 2, out, 1), BRK_ERR_INVAL);
    assert_int_equal(codec_hex_decode("0 ", 2, out, 1), BRK_ERR_INVAL);
    assert_int_equal(codec_hex_decode("-1", 2, out, 1), BRK_ERR_INVAL);
    assert_int_equal(codec_hex_decode("0x", 2, out, 1), BRK_ERR_INVAL);
    assert_int_equal(codec_hex_decode("0\0", 2, out, 1), BRK_ERR_INVAL);
}

static void
test_hex_reject_wrong_length(void **state)
{
    unsigned char out[4];

    (void)state;
    assert_int_equal(codec_hex_decode("abcd", 4, out, 1), BRK_ERR_INVAL);
    assert_int_equal(codec_hex_decode("ab", 2, out, 2), BRK_ERR_INVAL);
    assert_int_equal(codec_hex_decode("", 0, out, 1), BRK_ERR_INVAL);
    assert_int_equal(codec_hex_decode("", 0, out, 0), BRK_OK);
}

/*---- Percent ----*/

static void
test_pct_plain_passthrough(void **state)
{
    (void)state;
    expect_pct("", "");
    expect_pct("abc", "abc");
    expect_pct("a b", "a b");
}

static void
test_pct_plus_kept(void **state)
{
    (void)state;
    expect_pct("a+b", "a+b");
    expect_pct("+++", "+++");
}

static void
test_pct_escaped_plus(void **state)
{
    (void)state;
    expect_pct("%2B", "+");
    expect_pct("%2b", "+");
    expect_pct("a%2Bb%2bc", "a+b+c");
    expect_pct("%20", " ");
    expect_pct("%25", "%");
    expect_pct("%3D%26", "=&");
}

static void
test_pct_utf8(void **state)
{
    char out[16];
    size_t outlen = 0;

    (void)state;
    assert_int_equal(pct_dec("%E4%BD%A0", out, &outlen), BRK_OK);
    assert_int_equal(outlen, 3);
    assert_memory_equal(out, "\xE4\xBD\xA0", 4);
    expect_pct("%e4%bd%a0x", "\xE4\xBD\xA0x");
}

static void
test_pct_reject_truncated_percent(void **state)
{
    (void)state;
    expect_pct_inval("%");
    expect_pct_inval("abc%");
}

static void
test_pct_reject_truncated_one_digit(void **state)
{
    (void)state;
    expect_pct_inval("%4");
    expect_pct_inval("abc%4");
    /* n stops inside the escape even though more bytes follow */
    expect_pct_inval_len("%41", 2);
}

static void
test_pct_reject_bad_digit(void **state)
{
    (void)state;
    expect_pct_inval("%G0");
    expect_pct_inval("%0G");
    expect_pct_inval("%%41");
    expect_pct_inval("% 1");
    expect_pct_inval("%-1");
    expect_pct_inval("%+1");
}

static void
test_pct_reject_decoded_nul(void **state)
{
    (void)state;
    expect_pct_inval("%00");
    expect_pct_inval("a%00b");
}

static void
test_pct_reject_raw_nul(void **state)
{
    (void)state;
    expect_pct_inval_len("a\0b", 3);
    expect_pct_inval_len("\0", 1);
}

static void
test_pct_encode_reserved(void **state)
{
    char out[3 * 32 + 1];

    (void)state;
    codec_pct_encode("a b&c=d/e?f+g%h#i", out);
    assert_string_equal(out, "a%20b%26c%3Dd%2Fe%3Ff%2Bg%25h%23i");
    codec_pct_encode("AZaz09-._~", out);
    assert_string_equal(out, "AZaz09-._~");
    codec_pct_encode("\xE4\xBD\xA0", out);
    assert_string_equal(out, "%E4%BD%A0");
    codec_pct_encode("", out);
    assert_string_equal(out, "");
}

static void
test_pct_encode_round_trip(void **state)
{
    char in[256], enc[3 * 255 + 1], dec[3 * 255 + 1];
    size_t i, outlen = 0;

    (void)state;
    /* every byte except NUL, which a C string cannot carry */
    for (i = 1; i < 256; i++)
        in[i - 1] = (char)i;
    in[255] = '\0';
    codec_pct_encode(in, enc);
    assert_true(strlen(enc) <= 3 * strlen(in));
    assert_int_equal(codec_pct_decode(enc, strlen(enc), dec, &outlen), BRK_OK);
    assert_int_equal(outlen, 255);
    assert_memory_equal(dec, in, 256);
    /* only unreserved characters survive unescaped */
    for (i = 0; enc[i] != '\0'; i++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                   "0123456789-._~%",
                   enc[i]));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex_val_every_byte),
        cmocka_unit_test(test_b64_rfc4648_vectors),
        cmocka_unit_test(test_b64_round_trip_random),
        cmocka_unit_test(test_b64_all_byte_values),
        cmocka_unit_test(test_b64_reject_bad_length),
        cmocka_unit_test(test_b64_reject_url_safe_alphabet),
        cmocka_unit_test(test_b64_reject_whitespace),
        cmocka_unit_test(test_b64_reject_other_chars),
        cmocka_unit_test(test_b64_reject_embedded_nul),
        cmocka_unit_test(test_b64_reject_pad_in_middle),
        cmocka_unit_test(test_b64_reject_triple_pad),
        cmocka_unit_test(test_b64_reject_nonzero_pad_bits),
        cmocka_unit_test(test_b64_cap_one_short_toobig),
        cmocka_unit_test(test_b64_exact_cap_ok),
        cmocka_unit_test(test_b64_exact_cap_no_overrun),
        cmocka_unit_test(test_hex_encode),
        cmocka_unit_test(test_hex_round_trip),
        cmocka_unit_test(test_hex_decode_uppercase),
        cmocka_unit_test(test_hex_reject_odd_length),
        cmocka_unit_test(test_hex_reject_bad_digit),
        cmocka_unit_test(test_hex_reject_wrong_length),
        cmocka_unit_test(test_pct_plain_passthrough),
        cmocka_unit_test(test_pct_plus_kept),
        cmocka_unit_test(test_pct_escaped_plus),
        cmocka_unit_test(test_pct_utf8),
        cmocka_unit_test(test_pct_reject_truncated_percent),
        cmocka_unit_test(test_pct_reject_truncated_one_digit),
        cmocka_unit_test(test_pct_reject_bad_digit),
        cmocka_unit_test(test_pct_reject_decoded_nul),
        cmocka_unit_test(test_pct_reject_raw_nul),
        cmocka_unit_test(test_pct_encode_reserved),
        cmocka_unit_test(test_pct_encode_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
