/*
 * Unit tests for jsontok.c: the tokens of a document with every kind of
 * value, the same fed whole, one byte per piece and split at every two
 * positions; every refusal the header lists; the depth and token bounds at
 * exactly their value and one past, whole and in pieces; strings handed
 * out in place; errors final; allocation failures. A reset tokenizer,
 * whatever it was in the middle of (an error, a cut token, an unclosed
 * container), reads the next document exactly as a new one does, keeps
 * its buffers for it and lets a huge one go.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "jsontok.h"

#define LOG_MAX 8192

/* Tokens as text, one per line: a letter for the kind, then the text. */
struct run {
    char log[LOG_MAX];
    size_t len;
    enum brk_err err; /* jsontok_finish's, or the error's */
};

static void
log_tok(struct run *r, enum jsontok_type tt, const char *s, size_t n)
{
    static const char kinds[] = "?ntfirskOoAa";
    size_t i;

    assert_true(tt > JSONTOK_MORE && tt <= JSONTOK_ARR_END);
    if (tt < JSONTOK_INTEGER || tt > JSONTOK_KEY)
        n = 0; /* no text: s and n are stale */
    assert_true(r->len + 4 + 4 * n < LOG_MAX);
    r->log[r->len++] = kinds[tt];
    if (tt >= JSONTOK_INTEGER && tt <= JSONTOK_KEY) {
        r->log[r->len++] = ' ';
        for (i = 0; i < n; i++) {
            /* bytes outside printable ASCII as \xNN */
            if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
                r->len += (size_t)snprintf(r->log + r->len, 5, "\\x%02x",
                                           (unsigned char)s[i]);
            else
                r->log[r->len++] = s[i];
        }
    }
    r->log[r->len++] = '\n';
    r->log[r->len] = '\0';
}

/* Feed doc in pieces ending at cuts[0] < cuts[1] < ... (ncuts of them)
 * to t (NULL: a new tokenizer with depth and max_token, freed after). */
static void
run_on(struct jsontok *reused, const char *doc, size_t n, const size_t *cuts,
       size_t ncuts, size_t depth, size_t max_token, struct run *r)
{
    struct jsontok *t = reused;
    enum jsontok_type tt = JSONTOK_MORE;
    const char *s;
    size_t len, off = 0, i, end;

    memset(r, 0, sizeof(*r));
    if (t == NULL)
        assert_int_equal(jsontok_new(depth, max_token, &t), BRK_OK);
    for (i = 0; i <= ncuts; i++) {
        end = i < ncuts ? cuts[i] : n;
        jsontok_input(t, doc + off, end - off);
        off = end;
        while ((tt = jsontok_next(t, &s, &len)) > JSONTOK_MORE)
            log_tok(r, tt, s, len);
        if (tt == JSONTOK_ERROR)
            break;
    }
    if (tt == JSONTOK_ERROR) {
        r->err = jsontok_error(t);
        assert_int_not_equal(r->err, BRK_OK);
        assert_int_equal(jsontok_next(t, &s, &len), JSONTOK_ERROR);
        assert_int_equal(jsontok_finish(t), r->err);
    } else {
        r->err = jsontok_finish(t);
    }
    if (reused == NULL)
        jsontok_free(t);
}

static void
run_cuts(const char *doc, size_t n, const size_t *cuts, size_t ncuts,
         size_t depth, size_t max_token, struct run *r)
{
    run_on(NULL, doc, n, cuts, ncuts, depth, max_token, r);
}

/* Whole, a byte per piece, and cut at every two positions: one result. */
static void
check_splits(const char *doc, size_t depth, size_t max_token, struct run *whole)
{
    size_t n = strlen(doc), cuts[2], i, j, bytes[512];
    struct run r;

    run_cuts(doc, n, NULL, 0, depth, max_token, whole);
    assert_true(n < 512);
    for (i = 1; i < n; i++)
        bytes[i - 1] = i;
    run_cuts(doc, n, bytes, n > 0 ? n - 1 : 0, depth, max_token, &r);
    assert_int_equal(r.err, whole->err);
    assert_string_equal(r.log, whole->log);
    for (i = 0; i <= n; i++)
        for (j = i; j <= n; j++) {
            cuts[0] = i;
            cuts[1] = j;
            run_cuts(doc, n, cuts, 2, depth, max_token, &r);
            assert_int_equal(r.err, whole->err);
            assert_string_equal(r.log, whole->log);
        }
}

static void
test_document(void **state)
{
    struct run r;

    (void)state;
    check_splits(" {\"a\" : [1, -0.5e+10, 0, -0, 1E5, 12345678901234567890],"
                 "\"b\":true,\"c\":false,\"d\":null,\"e\":{},\"f\":[[]],"
                 "\"g\":\"x\\u00e9\\ud83d\\ude00\\n\\t\\\"\\\\\\/\\b\\f\\r\","
                 "\"\":\"\",\"\\u0000k\":\"\xe4\xb8\x89\"} \r\n\t",
                 32, 4096, &r);
    assert_int_equal(r.err, BRK_OK);
    assert_string_equal(r.log,
                        "O\nk a\nA\ni 1\nr -0.5e+10\ni 0\ni -0\nr 1E5\n"
                        "i 12345678901234567890\na\nk b\nt\nk c\nf\nk d\nn\n"
                        "k e\nO\no\nk f\nA\nA\na\na\nk g\n"
                        "s x\\xc3\\xa9\\xf0\\x9f\\x98\\x80\\x0a\\x09\"\\/"
                        "\\x08\\x0c\\x0d\nk \ns \nk \\x00k\n"
                        "s \\xe4\\xb8\\x89\no\n");
}

static void
test_top_level_any_value(void **state)
{
    struct run r;

    (void)state;
    check_splits("[1,\"a\",[true]]", 32, 4096, &r);
    assert_int_equal(r.err, BRK_OK);
    check_splits("\"s\"", 32, 4096, &r);
    assert_int_equal(r.err, BRK_OK);
    assert_string_equal(r.log, "s s\n");
    check_splits("null ", 32, 4096, &r);
    assert_int_equal(r.err, BRK_OK);
    /* a bare number's end is never seen without a byte after it */
    check_splits("12 ", 32, 4096, &r);
    assert_int_equal(r.err, BRK_OK);
    check_splits("12", 32, 4096, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
}

static void
test_refusals(void **state)
{
    static const char *const bad[] = {
        "",
        " ",
        "{",
        "[",
        "{\"a\"",
        "{\"a\":",
        "{\"a\":1",
        "{\"a\":\"x",
        "{\"a\":\"x\\",
        "{\"a\":tr",
        "\v{}",
        "{\f}",
        "\xef\xbb\xbf{}",
        "{/*c*/}",
        "{}/",
        "{} x",
        "{}{}",
        "{} \"",
        "{\"a\":01}",
        "{\"a\":-}",
        "{\"a\":1.}",
        "{\"a\":1.e5}",
        "{\"a\":1e}",
        "{\"a\":1e+}",
        "{\"a\":.5}",
        "{\"a\":+1}",
        "{\"a\":1x}",
        "{\"a\":0x10}",
        "{\"a\":-a}",
        "{\"a\":tru}",
        "{\"a\":truex}",
        "{\"a\":nul}",
        "{\"a\":True}",
        "{\"a\":NaN}",
        "{\"a\":\"\x01\"}",
        "{\"a\":\"\x1f\"}",
        "{\"a\":\"\t\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\U0041\"}",
        "{\"a\":\"\\u00zz\"}",
        "{\"a\":\"\\u00\"}",
        "{\"a\":\"\\ud83d\"}",
        "{\"a\":\"\\ud83dx\"}",
        "{\"a\":\"\\ud83d\\n\"}",
        "{\"a\":\"\\ud83d\\u0041\"}",
        "{\"a\":\"\\ud83d\\ud83d\"}",
        "{\"a\":\"\\ude00\"}",
        "{\"a\":\"\\\x01\"}",
        "{\"a\" 1}",
        "{\"a\"::1}",
        "{\"a\":1,}",
        "{,}",
        "{\"a\":1,,\"b\":2}",
        "{1:2}",
        "{null:1}",
        "{\"a\":1 \"b\":2}",
        "[1,]",
        "[,1]",
        "[1 2]",
        "[1,,2]",
        "[1:2]",
        "{\"a\":[}",
        "{\"a\":{]}",
        "[}",
        "{]",
        "]",
        "}",
        ",",
        ":",
        "[\"a\":1]",
        "{\"a\":1}}",
        "'a'",
        "{\"a\":'b'}",
        "{\"a\":undefined}",
        "{\"a\":Infinity}",
    };
    struct run r;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        check_splits(bad[i], 32, 4096, &r);
        if (r.err != BRK_ERR_UPSTREAM_BAD)
            fail_msg("accepted or wrong error: \"%s\" (%d)", bad[i], r.err);
    }
}

/* What comes before the error is handed out; the error stops the rest. */
static void
test_tokens_before_error(void **state)
{
    struct run r;

    (void)state;
    check_splits("{\"a\":[1x]}", 32, 4096, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
    assert_string_equal(r.log, "O\nk a\nA\ni 1\n");
    check_splits("{\"a\":1.5.3}", 32, 4096, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
    assert_string_equal(r.log, "O\nk a\nr 1.5\n");
    check_splits("{\"a\":01}", 32, 4096, &r);
    assert_string_equal(r.log, "O\nk a\ni 0\n");
    check_splits("[truex]", 32, 4096, &r);
    assert_string_equal(r.log, "A\nt\n");
}

static void
test_depth(void **state)
{
    struct run r;

    (void)state;
    check_splits("[[[{\"a\":[]}]]]", 5, 4096, &r);
    assert_int_equal(r.err, BRK_OK);
    check_splits("[[[{\"a\":[[]]}]]]", 5, 4096, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
    assert_string_equal(r.log, "A\nA\nA\nO\nk a\nA\n");
    check_splits("{}", 1, 4096, &r);
    assert_int_equal(r.err, BRK_OK);
    check_splits("{\"a\":{}}", 1, 4096, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
}

static void
test_token_bound(void **state)
{
    struct run r;

    (void)state;
    /* strings count their bytes as written, escapes included */
    check_splits("[\"abcdefgh\",\"\\u00e9\\n\"]", 32, 8, &r);
    assert_int_equal(r.err, BRK_OK);
    check_splits("[\"abcdefghi\"]", 32, 8, &r);
    assert_int_equal(r.err, BRK_ERR_TOOBIG);
    assert_string_equal(r.log, "A\n");
    check_splits("[\"\\u00e9\\n\\t\"]", 32, 8, &r);
    assert_int_equal(r.err, BRK_ERR_TOOBIG);
    check_splits("{\"abcdefghi\":1}", 32, 8, &r);
    assert_int_equal(r.err, BRK_ERR_TOOBIG);
    /* numbers too */
    check_splits("[-1234567,1.5e+100]", 32, 8, &r);
    assert_int_equal(r.err, BRK_OK);
    check_splits("[123456789]", 32, 8, &r);
    assert_int_equal(r.err, BRK_ERR_TOOBIG);
    /* nothing past the bound is judged: too long wins over a bad byte
     * after it, however the pieces fall */
    check_splits("[\"abcdefghi\x01\"]", 32, 8, &r);
    assert_int_equal(r.err, BRK_ERR_TOOBIG);
    check_splits("[\"abcdefgh\x01\"]", 32, 8, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
    check_splits("[123456789x]", 32, 8, &r);
    assert_int_equal(r.err, BRK_ERR_TOOBIG);
    check_splits("[12345678x]", 32, 8, &r);
    assert_int_equal(r.err, BRK_ERR_UPSTREAM_BAD);
    assert_string_equal(r.log, "A\ni 12345678\n");
}

/* A string without escapes lying whole in the piece is not copied. */
static void
test_in_place(void **state)
{
    static const char doc[] = "{\"key\":\"value\",\"e\":\"a\\nb\"}";
    struct jsontok *t = NULL;
    const char *s = NULL;
    size_t len = 0;

    (void)state;
    assert_int_equal(jsontok_new(4, 64, &t), BRK_OK);
    jsontok_input(t, doc, strlen(doc));
    assert_int_equal(jsontok_next(t, &s, &len), JSONTOK_OBJ_START);
    assert_int_equal(jsontok_next(t, &s, &len), JSONTOK_KEY);
    assert_ptr_equal(s, doc + 2);
    assert_int_equal(len, 3);
    assert_int_equal(jsontok_next(t, &s, &len), JSONTOK_STRING);
    assert_ptr_equal(s, doc + 8);
    assert_int_equal(len, 5);
    assert_int_equal(jsontok_next(t, &s, &len), JSONTOK_KEY);
    assert_int_equal(jsontok_next(t, &s, &len), JSONTOK_STRING);
    assert_memory_equal(s, "a\nb", 3);
    assert_int_equal(len, 3);
    assert_false(jsontok_done(t));
    assert_int_equal(jsontok_next(t, &s, &len), JSONTOK_OBJ_END);
    assert_true(jsontok_done(t));
    assert_int_equal(jsontok_next(t, &s, &len), JSONTOK_MORE);
    /* empty pieces are fine, whitespace after the end too */
    jsontok_input(t, NULL, 0);
    assert_int_equal(jsontok_next(t, &s, &len), JSONTOK_MORE);
    jsontok_input(t, " \n", 2);
    assert_int_equal(jsontok_next(t, &s, &len), JSONTOK_MORE);
    assert_int_equal(jsontok_finish(t), BRK_OK);
    jsontok_free(t);
    jsontok_free(NULL);
}

static void
test_new_refuses(void **state)
{
    struct jsontok *t = NULL;

    (void)state;
    assert_int_equal(jsontok_new(0, 10, &t), BRK_ERR_INVAL);
    assert_int_equal(jsontok_new(10, 0, &t), BRK_ERR_INVAL);
    assert_int_equal(jsontok_new(10, 10, NULL), BRK_ERR_INVAL);
    assert_null(t);
}

/* Every allocation, failed in turn: NOMEM, never a wrong token. */
static void
test_alloc_failures(void **state)
{
    static const char doc[] = "{\"a\":\"long string cut\\n\",\"b\":123456}";
    size_t n = strlen(doc), cut, k, hit = 0;
    struct jsontok *t;
    enum jsontok_type tt;
    enum brk_err err;
    const char *s;
    size_t len;

    (void)state;
    for (k = 1; k < 10; k++)
        for (cut = 1; cut < n; cut++) {
            t = NULL;
            brk_alloc_fail_at(k);
            err = jsontok_new(8, 64, &t);
            if (err) {
                assert_int_equal(err, BRK_ERR_NOMEM);
                brk_alloc_fail_at(0);
                continue;
            }
            jsontok_input(t, doc, cut);
            while ((tt = jsontok_next(t, &s, &len)) > JSONTOK_MORE)
                ;
            if (tt != JSONTOK_ERROR) {
                jsontok_input(t, doc + cut, n - cut);
                while ((tt = jsontok_next(t, &s, &len)) > JSONTOK_MORE)
                    ;
            }
            err = tt == JSONTOK_ERROR ? jsontok_error(t) : jsontok_finish(t);
            if (brk_alloc_failed()) {
                assert_int_equal(err, BRK_ERR_NOMEM);
                hit++;
            } else {
                assert_int_equal(err, BRK_OK);
            }
            brk_alloc_fail_at(0);
            jsontok_free(t);
        }
    assert_true(hit > 0);
}

/*---- Reset ----*/

#define RESET_DEPTH 4
#define RESET_TOKEN 16

/* Documents that leave a tokenizer in every kind of state, done or not. */
static const char *const reset_docs[] = {
    "{\"a\":[1,-2.5e3,{\"b\":\"x\\u00e9\"}],\"c\":null}",
    "[[[[[1]]]]]",                    /* one deeper than RESET_DEPTH */
    "\"0123456789abcdefXYZ\"",        /* a token over RESET_TOKEN */
    "{\"a\":1,}",                     /* malformed midway */
    "[1, tru",                        /* a literal cut off */
    "\"abc\\",                        /* a pending backslash */
    "-12.5e",                         /* a number cut in its exponent */
    "{\"k\":\"\\ud83d",               /* a high surrogate, the low not yet */
    "{\"\\u00e9\":\"caf\\u00e9\"} [", /* done, then garbage */
    "  ",
    "[{\"a\":{\"b\":[\"deep\",", /* containers left open */
};

/* The first `upto` bytes of doc fed to t, in two pieces cut at `cut`. */
static void
feed_part(struct jsontok *t, const char *doc, size_t upto, size_t cut)
{
    enum jsontok_type tt;
    const char *s;
    size_t len;

    if (cut > upto)
        cut = upto;
    jsontok_input(t, doc, cut);
    while ((tt = jsontok_next(t, &s, &len)) > JSONTOK_MORE)
        ;
    if (tt == JSONTOK_ERROR)
        return;
    jsontok_input(t, doc + cut, upto - cut);
    while ((tt = jsontok_next(t, &s, &len)) > JSONTOK_MORE)
        ;
}

/*
 * Whatever a tokenizer read before (every prefix of every document above,
 * the last byte cut off from the rest), once reset it gives every document
 * the tokens and the verdict a new tokenizer gives, whole and a byte per
 * piece.
 */
static void
test_reset_as_new(void **state)
{
    size_t a, b, upto, na, nb, i, bytes[64];
    struct run fresh, reused;
    struct jsontok *t = NULL;

    (void)state;
    assert_int_equal(jsontok_new(RESET_DEPTH, RESET_TOKEN, &t), BRK_OK);
    for (a = 0; a < nitems(reset_docs); a++) {
        na = strlen(reset_docs[a]);
        for (upto = 0; upto <= na; upto++)
            for (b = 0; b < nitems(reset_docs); b++) {
                nb = strlen(reset_docs[b]);
                assert_true(nb < nitems(bytes));
                for (i = 1; i < nb; i++)
                    bytes[i - 1] = i;
                feed_part(t, reset_docs[a], upto, upto > 0 ? upto - 1 : 0);
                jsontok_reset(t);
                run_on(t, reset_docs[b], nb, NULL, 0, 0, 0, &reused);
                run_cuts(reset_docs[b], nb, NULL, 0, RESET_DEPTH, RESET_TOKEN,
                         &fresh);
                assert_int_equal(reused.err, fresh.err);
                assert_string_equal(reused.log, fresh.log);

                feed_part(t, reset_docs[a], upto, upto / 2);
                jsontok_reset(t);
                run_on(t, reset_docs[b], nb, bytes, nb > 0 ? nb - 1 : 0, 0, 0,
                       &reused);
                assert_int_equal(reused.err, fresh.err);
                assert_string_equal(reused.log, fresh.log);
            }
    }
    jsontok_free(t);
}

/* A tokenizer that failed for want of memory reads the next document. */
static void
test_reset_after_nomem(void **state)
{
    static const char cut_doc[] = "{\"a\":\"cut here\"}";
    struct jsontok *t = NULL;
    struct run r;

    (void)state;
    assert_int_equal(jsontok_new(8, 64, &t), BRK_OK);
    brk_alloc_fail_at(1);
    feed_part(t, cut_doc, strlen(cut_doc), 10);
    assert_true(brk_alloc_failed());
    brk_alloc_fail_at(0);
    assert_int_equal(jsontok_error(t), BRK_ERR_NOMEM);
    jsontok_reset(t);
    assert_int_equal(jsontok_error(t), BRK_OK);
    run_on(t, cut_doc, strlen(cut_doc), (const size_t[]){10}, 1, 0, 0, &r);
    assert_int_equal(r.err, BRK_OK);
    assert_string_equal(r.log, "O\nk a\ns cut here\no\n");
    jsontok_free(t);
}

/* Cut and escaped tokens, once their buffers are had, cost no allocation
 * after a reset; a buffer grown past 64 KiB is let go by it. */
static void
test_reset_keeps_buffers(void **state)
{
    static const char doc[] = "{\"k\\n\":\"a cut string\",\"n\":12345}";
    struct jsontok *t = NULL;
    char *big;
    size_t n = 100 * 1024;
    struct run r;

    (void)state;
    assert_int_equal(jsontok_new(8, 1 << 20, &t), BRK_OK);
    feed_part(t, doc, strlen(doc), 14);
    assert_int_equal(jsontok_finish(t), BRK_OK);
    jsontok_reset(t);
    brk_alloc_fail_at(1);
    run_on(t, doc, strlen(doc), (const size_t[]){14}, 1, 0, 0, &r);
    assert_false(brk_alloc_failed());
    brk_alloc_fail_at(0);
    assert_int_equal(r.err, BRK_OK);
    assert_string_equal(r.log,
                        "O\nk k\\x0a\ns a cut string\nk n\ni 12345\no\n");

    /* a 100 KiB string cut in two grows the buffer past what is kept */
    big = malloc(n + 3);
    assert_non_null(big);
    big[0] = '"';
    memset(big + 1, 'x', n);
    big[n + 1] = '"';
    big[n + 2] = '\0';
    jsontok_reset(t);
    feed_part(t, big, n + 2, n / 2);
    assert_int_equal(jsontok_finish(t), BRK_OK);
    free(big);
    jsontok_reset(t);
    brk_alloc_fail_at(1);
    feed_part(t, doc, strlen(doc), 14);
    assert_true(brk_alloc_failed());
    brk_alloc_fail_at(0);
    assert_int_equal(jsontok_error(t), BRK_ERR_NOMEM);
    jsontok_free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_document),
        cmocka_unit_test(test_top_level_any_value),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_tokens_before_error),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_token_bound),
        cmocka_unit_test(test_in_place),
        cmocka_unit_test(test_new_refuses),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_reset_as_new),
        cmocka_unit_test(test_reset_after_nomem),
        cmocka_unit_test(test_reset_keeps_buffers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
