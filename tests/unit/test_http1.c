/*
 * Unit tests for http1.c: every framing, keep-alive, interim responses,
 * and hostile heads and bodies. Every input is parsed whole, a byte at a
 * time and in pieces of a few sizes; all must agree.
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
#include "http1.h"

#define BODY_MAX (256 * 1024)

/* What parsing one input gave. */
struct out {
    enum http1_ev end; /* DONE, ERROR or MORE (incomplete) */
    enum http1_why why;
    int status;
    int keep_alive;
    enum http1_framing framing;
    int heads;
    size_t rest; /* bytes after the response, not taken */
    size_t nbody;
    char body[BODY_MAX];
};

static struct out g_whole, g_split;

/*
 * Parse in, fed piece bytes at a time (0: whole), then the end of input
 * when eof. Checks that body bytes point into the piece given.
 */
static void
parse_in(const char *in, size_t len, size_t piece, int eof,
         const struct http1_limits *lim, struct out *o)
{
    static struct http1 p;
    size_t off = 0, k, pos, used, dlen;
    const char *data;
    enum http1_ev ev = HTTP1_MORE;

    memset(o, 0, sizeof(*o));
    http1_init(&p, lim);
    if (piece == 0)
        piece = len > 0 ? len : 1;
    while (off < len && ev != HTTP1_DONE && ev != HTTP1_ERROR) {
        k = len - off < piece ? len - off : piece;
        pos = 0;
        for (;;) {
            ev = http1_parse(&p, in + off + pos, k - pos, &used, &data, &dlen);
            assert_true(used <= k - pos);
            pos += used;
            if (ev == HTTP1_HEAD) {
                o->heads++;
                o->status = p.status;
                o->keep_alive = p.keep_alive;
                o->framing = p.framing;
                continue;
            }
            if (ev == HTTP1_DATA) {
                assert_true(dlen > 0);
                assert_true(data >= in + off && data + dlen <= in + off + k);
                assert_true(o->nbody + dlen <= BODY_MAX);
                memcpy(o->body + o->nbody, data, dlen);
                o->nbody += dlen;
                continue;
            }
            break;
        }
        if (ev == HTTP1_MORE)
            assert_int_equal(pos, k);
        if (ev == HTTP1_DONE)
            o->rest = len - off - pos;
        off += k;
    }
    if (ev == HTTP1_MORE && eof)
        ev = http1_eof(&p);
    o->end = ev;
    o->why = ev == HTTP1_ERROR ? p.why : HTTP1_OK;
    if (ev == HTTP1_DONE || ev == HTTP1_ERROR) {
        /* final: every later call says the same and takes nothing */
        assert_int_equal(http1_parse(&p, "x", 1, &used, &data, &dlen), ev);
        assert_int_equal(used, 0);
    }
}

/* Parse whole and in pieces of 1, 2, 3, 7 and 64 bytes; all must agree.
 * The whole parse is left in g_whole. */
static void
parse_lim(const char *in, size_t len, int eof, const struct http1_limits *lim)
{
    static const size_t pieces[] = {1, 2, 3, 7, 64};
    size_t i;

    parse_in(in, len, 0, eof, lim, &g_whole);
    for (i = 0; i < nitems(pieces); i++) {
        parse_in(in, len, pieces[i], eof, lim, &g_split);
        if (g_split.end != g_whole.end || g_split.why != g_whole.why ||
            g_split.status != g_whole.status ||
            g_split.keep_alive != g_whole.keep_alive ||
            g_split.heads != g_whole.heads || g_split.nbody != g_whole.nbody ||
            g_split.rest != g_whole.rest ||
            memcmp(g_split.body, g_whole.body, g_whole.nbody) != 0)
            fail_msg("pieces of %zu disagree with the whole: end %d/%d "
                     "why %d/%d body %zu/%zu",
                     pieces[i], g_split.end, g_whole.end, g_split.why,
                     g_whole.why, g_split.nbody, g_whole.nbody);
    }
}

static void
parse_s(const char *in, int eof)
{
    parse_lim(in, strlen(in), eof, NULL);
}

static void
expect_body(const char *in, int eof, int status, const char *body,
            int keep_alive)
{
    parse_s(in, eof);
    assert_int_equal(g_whole.end, HTTP1_DONE);
    assert_int_equal(g_whole.heads, 1);
    assert_int_equal(g_whole.status, status);
    assert_int_equal(g_whole.nbody, strlen(body));
    assert_memory_equal(g_whole.body, body, strlen(body));
    assert_int_equal(g_whole.keep_alive, keep_alive);
    assert_int_equal(g_whole.rest, 0);
}

static void
expect_refused(const char *in, int eof, enum http1_why why)
{
    parse_s(in, eof);
    if (g_whole.end != HTTP1_ERROR || g_whole.why != why)
        fail_msg("want refusal %s, got end %d why %s for: %s",
                 http1_strwhy(why), g_whole.end, http1_strwhy(g_whole.why), in);
}

/*---- Framing ----*/

static void
test_content_length(void **state)
{
    (void)state;
    expect_body("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                "Content-Type: application/json\r\n\r\nhello",
                0, 200, "hello", 1);
    assert_int_equal(g_whole.framing, HTTP1_BODY_LENGTH);
    /* the same length twice is one length */
    expect_body("HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: "
                "2\r\n\r\nok",
                0, 200, "ok", 1);
    /* zero: no body, nothing more awaited */
    expect_body("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, 200, "", 1);
    assert_int_equal(g_whole.framing, HTTP1_BODY_NONE);
    /* leading zeros are digits */
    expect_body("HTTP/1.1 200 OK\r\nContent-Length: 003\r\n\r\nabc", 0, 200,
                "abc", 1);
}

static void
test_bytes_after_the_response_are_left(void **state)
{
    (void)state;
    parse_s("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200", 0);
    assert_int_equal(g_whole.end, HTTP1_DONE);
    assert_int_equal(g_whole.nbody, 2);
    assert_int_equal(g_whole.rest, strlen("HTTP/1.1 200"));
    parse_s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            "0\r\n\r\nXYZ",
            0);
    assert_int_equal(g_whole.end, HTTP1_DONE);
    assert_int_equal(g_whole.rest, 3);
}

static void
test_chunked_with_extensions_and_trailers(void **state)
{
    (void)state;
    expect_body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "5\r\nhello\r\n"
                "1;name=value\r\n \r\n"
                "A ; a=\"quoted; \\\"x\" ;b\r\n0123456789\r\n"
                "0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n",
                0, 200, "hello 0123456789", 1);
    assert_int_equal(g_whole.framing, HTTP1_BODY_CHUNKED);
    /* upper-case hex and the coding's case */
    expect_body("HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n"
                "1F\r\n0123456789abcdef0123456789abcde\r\n0\r\n\r\n",
                0, 200, "0123456789abcdef0123456789abcde", 1);
    /* the largest size allowed is taken (the body then runs short) */
    parse_s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            "1000000000000000\r\nabc",
            1);
    assert_int_equal(g_whole.end, HTTP1_ERROR);
    assert_int_equal(g_whole.why, HTTP1_E_TRUNCATED);
    assert_int_equal(g_whole.nbody, 3);
}

static void
test_close_delimited(void **state)
{
    (void)state;
    expect_body("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                "until the end",
                1, 200, "until the end", 0);
    assert_int_equal(g_whole.framing, HTTP1_BODY_CLOSE);
    /* without the end of input, it is not complete */
    parse_s("HTTP/1.1 200 OK\r\n\r\nmore to come", 0);
    assert_int_equal(g_whole.end, HTTP1_MORE);
    assert_int_equal(g_whole.nbody, strlen("more to come"));
    /* an empty close-delimited body */
    expect_body("HTTP/1.1 200 OK\r\n\r\n", 1, 200, "", 0);
}

static void
test_keep_alive(void **state)
{
    (void)state;
    expect_body("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: "
                "1\r\n\r\nx",
                0, 200, "x", 0);
    expect_body("HTTP/1.1 200 OK\r\nConnection: keep-alive, CLOSE\r\n"
                "Content-Length: 1\r\n\r\nx",
                0, 200, "x", 0);
    expect_body("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n"
                "Content-Length: 1\r\n\r\nx",
                0, 200, "x", 1);
    /* a token that merely contains "close" */
    expect_body("HTTP/1.1 200 OK\r\nConnection: closed\r\n"
                "Content-Length: 1\r\n\r\nx",
                0, 200, "x", 1);
    /* HTTP/1.0 is never kept, even when it asks */
    expect_body("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                "Content-Length: 1\r\n\r\nx",
                0, 200, "x", 0);
}

static void
test_interim_and_bodiless(void **state)
{
    (void)state;
    expect_body("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n"
                "X-A: 1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                0, 200, "ok", 1);
    /* a 100's own Content-Length frames nothing */
    expect_body("HTTP/1.1 100 Continue\r\nContent-Length: 9\r\n\r\n"
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                0, 200, "ok", 1);
    expect_refused("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
                   0, HTTP1_E_INTERIM);
    expect_refused("HTTP/1.1 103 Early Hints\r\n\r\n", 0, HTTP1_E_INTERIM);
    expect_body("HTTP/1.1 204 No Content\r\n\r\n", 0, 204, "", 1);
    expect_body("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", 0, 204,
                "", 1);
    expect_body("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", 0,
                304, "", 1);
    expect_body("HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\n{}", 0, 500,
                "{}", 1);
    /* a status line with no reason, or an empty one */
    expect_body("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", 0, 200, "", 1);
    expect_body("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", 0, 200, "", 1);
}

/*---- Hostile heads ----*/

static void
test_bad_status_lines(void **state)
{
    (void)state;
    expect_refused("HTTP/1.1 20 OK\r\n\r\n", 0, HTTP1_E_STATUS_LINE);
    expect_refused("HTTP/1.1 2000 OK\r\n\r\n", 0, HTTP1_E_STATUS_LINE);
    expect_refused("HTTP/1.1 600 OK\r\n\r\n", 0, HTTP1_E_STATUS_LINE);
    expect_refused("HTTP/1.1 099 OK\r\n\r\n", 0, HTTP1_E_STATUS_LINE);
    expect_refused("HTTP/1.1 2x0 OK\r\n\r\n", 0, HTTP1_E_STATUS_LINE);
    expect_refused("http/1.1 200 OK\r\n\r\n", 0, HTTP1_E_STATUS_LINE);
    expect_refused("ICY 200 OK\r\n\r\n", 0, HTTP1_E_STATUS_LINE);
    expect_refused("HTTP/2 200 OK\r\n\r\n", 0, HTTP1_E_VERSION);
    expect_refused("HTTP/1.2 200 OK\r\n\r\n", 0, HTTP1_E_VERSION);
    expect_refused("HTTP/0.9 200 OK\r\n\r\n", 0, HTTP1_E_VERSION);
    expect_refused("HTTP/1.1  200 OK\r\n\r\n", 0, HTTP1_E_STATUS_LINE);
    expect_refused("HTTP/1.1 200 O\x01K\r\n\r\n", 0, HTTP1_E_STATUS_LINE);
    expect_refused("HTTP/1.1 200 O\rK\r\n\r\n", 0, HTTP1_E_LINE_END);
    expect_refused("\r\nHTTP/1.1 200 OK\r\n\r\n", 0, HTTP1_E_STATUS_LINE);
    /* garbage of any kind: an HTML page where a response belongs */
    expect_refused("<html><body>busy</body></html>\r\n", 0,
                   HTTP1_E_STATUS_LINE);
}

static void
test_line_ends(void **state)
{
    (void)state;
    expect_refused("HTTP/1.1 200 OK\nContent-Length: 0\n\n", 0,
                   HTTP1_E_LINE_END);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n", 0,
                   HTTP1_E_LINE_END);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n", 0,
                   HTTP1_E_LINE_END);
    /* a bare CR inside a value, and one ending a name */
    expect_refused("HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n", 0, HTTP1_E_LINE_END);
    expect_refused("HTTP/1.1 200 OK\r\nX-A\r: a\r\n\r\n", 0, HTTP1_E_LINE_END);
    expect_refused("HTTP/1.1 200 OK\r\nX-A: a\r\r\n\r\n", 0, HTTP1_E_LINE_END);
}

static void
test_bad_fields(void **state)
{
    (void)state;
    expect_refused("HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n", 0,
                   HTTP1_E_FOLD);
    expect_refused("HTTP/1.1 200 OK\r\nX-A: 1\r\n\tfolded\r\n\r\n", 0,
                   HTTP1_E_FOLD);
    expect_refused("HTTP/1.1 200 OK\r\n folded: 1\r\n\r\n", 0, HTTP1_E_FOLD);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello", 0,
                   HTTP1_E_FIELD);
    expect_refused("HTTP/1.1 200 OK\r\n: no name\r\n\r\n", 0, HTTP1_E_FIELD);
    expect_refused("HTTP/1.1 200 OK\r\nno colon\r\n\r\n", 0, HTTP1_E_FIELD);
    expect_refused("HTTP/1.1 200 OK\r\nX(A): 1\r\n\r\n", 0, HTTP1_E_FIELD);
    expect_refused("HTTP/1.1 200 OK\r\nX-A: a\x7f\r\n\r\n", 0, HTTP1_E_FIELD);
    parse_lim("HTTP/1.1 200 OK\r\nX-A: a\0b\r\n\r\n", 27, 0, NULL);
    assert_int_equal(g_whole.end, HTTP1_ERROR);
    assert_int_equal(g_whole.why, HTTP1_E_FIELD);
    /* obs-text and tabs in values are text */
    expect_body("HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\tb \r\nContent-Length: "
                "0\r\n\r\n",
                0, 200, "", 1);
}

static void
test_bad_content_length(void **state)
{
    (void)state;
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", 0,
                   HTTP1_E_LENGTH);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", 0,
                   HTTP1_E_LENGTH);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0,
                   HTTP1_E_LENGTH);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", 0,
                   HTTP1_E_LENGTH);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n", 0,
                   HTTP1_E_LENGTH);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", 0,
                   HTTP1_E_LENGTH);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: "
                   "18446744073709551616\r\n\r\n",
                   0, HTTP1_E_LENGTH);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: "
                   "99999999999999999999999\r\n\r\n",
                   0, HTTP1_E_LENGTH);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: "
                   "6\r\n\r\nhello!",
                   0, HTTP1_E_LENGTHS);
    /* the largest 64-bit length parses (and then runs short) */
    parse_s("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n",
            1);
    assert_int_equal(g_whole.heads, 1);
    assert_int_equal(g_whole.why, HTTP1_E_TRUNCATED);
}

static void
test_bad_transfer_encoding(void **state)
{
    (void)state;
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                   0, HTTP1_E_FRAMING);
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                   "Content-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                   0, HTTP1_E_FRAMING);
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n"
                   "\r\n",
                   0, HTTP1_E_CODING);
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n"
                   "\r\n",
                   0, HTTP1_E_CODING);
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n",
                   0, HTTP1_E_CODING);
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n", 0,
                   HTTP1_E_CODING);
    expect_refused("HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\n\r\n", 0,
                   HTTP1_E_CODING);
    expect_refused("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "0\r\n\r\n",
                   0, HTTP1_E_FRAMING);
    expect_refused("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 0,
                   HTTP1_E_FRAMING);
    expect_refused("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n"
                   "\r\n",
                   0, HTTP1_E_FRAMING);
}

static void
test_bad_chunks(void **state)
{
#define CH "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    (void)state;
    expect_refused(CH "-1\r\n", 0, HTTP1_E_CHUNK_SIZE);
    expect_refused(CH "+1\r\nx\r\n0\r\n\r\n", 0, HTTP1_E_CHUNK_SIZE);
    expect_refused(CH "0x1\r\nx\r\n0\r\n\r\n", 0, HTTP1_E_CHUNK_SIZE);
    expect_refused(CH "\r\n", 0, HTTP1_E_CHUNK_SIZE);
    expect_refused(CH " 1\r\nx\r\n0\r\n\r\n", 0, HTTP1_E_CHUNK_SIZE);
    expect_refused(CH "1 x\r\nx\r\n0\r\n\r\n", 0, HTTP1_E_CHUNK_SIZE);
    expect_refused(CH "g\r\n", 0, HTTP1_E_CHUNK_SIZE);
    /* 17 digits, even as leading zeros; over 2^60 */
    expect_refused(CH "00000000000000001\r\nx\r\n0\r\n\r\n", 0,
                   HTTP1_E_CHUNK_SIZE);
    expect_refused(CH "1000000000000001\r\n", 0, HTTP1_E_CHUNK_SIZE);
    expect_refused(CH "ffffffffffffffff\r\n", 0, HTTP1_E_CHUNK_SIZE);
    expect_refused(CH "1;a=\x01\r\nx\r\n0\r\n\r\n", 0, HTTP1_E_CHUNK_EXT);
    expect_refused(CH "1;a=\rb\r\nx\r\n0\r\n\r\n", 0, HTTP1_E_LINE_END);
    expect_refused(CH "1\nx\r\n0\r\n\r\n", 0, HTTP1_E_LINE_END);
    expect_refused(CH "1\r\nxy\r\n0\r\n\r\n", 0, HTTP1_E_CHUNK_END);
    expect_refused(CH "1\r\nx\n0\r\n\r\n", 0, HTTP1_E_CHUNK_END);
    expect_refused(CH "1\r\nx\r\r0\r\n\r\n", 0, HTTP1_E_CHUNK_END);
    expect_refused(CH "1\r\nx\r\n0\r\nbad trailer\r\n\r\n", 0, HTTP1_E_FIELD);
    expect_refused(CH "1\r\nx\r\n0\r\n folded\r\n\r\n", 0, HTTP1_E_FOLD);
    expect_refused(CH "1\r\nx\r\n0\r\n\n", 0, HTTP1_E_LINE_END);
    /* the end of input inside a chunk, its CRLF, or the trailers */
    expect_refused(CH "5\r\nhel", 1, HTTP1_E_TRUNCATED);
    expect_refused(CH "5\r\nhello\r", 1, HTTP1_E_TRUNCATED);
    expect_refused(CH "5\r\nhello\r\n0\r\n", 1, HTTP1_E_TRUNCATED);
#undef CH
}

static void
test_truncated(void **state)
{
    struct http1 p;

    (void)state;
    expect_refused("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", 1,
                   HTTP1_E_TRUNCATED);
    assert_int_equal(g_whole.nbody, 3);
    expect_refused("HTTP/1.1 200 OK\r\nContent-Len", 1, HTTP1_E_TRUNCATED);
    expect_refused("HTTP/1.1 200 OK\r\n", 1, HTTP1_E_TRUNCATED);
    /* nothing at all: not started, then truncated */
    http1_init(&p, NULL);
    assert_int_equal(http1_started(&p), 0);
    assert_int_equal(http1_eof(&p), HTTP1_ERROR);
    assert_int_equal(p.why, HTTP1_E_TRUNCATED);
    http1_init(&p, NULL);
    {
        size_t used, dlen;
        const char *data;

        assert_int_equal(http1_parse(&p, "H", 1, &used, &data, &dlen),
                         HTTP1_MORE);
        assert_int_equal(used, 1);
        assert_int_equal(http1_started(&p), 1);
    }
}

/*---- Bounds ----*/

static char g_big[200 * 1024];

static void
test_line_too_long(void **state)
{
    size_t n;

    (void)state;
    n = (size_t)snprintf(g_big, sizeof(g_big), "HTTP/1.1 200 OK\r\nX-A: ");
    memset(g_big + n, 'a', HTTP1_LINE_MAX);
    n += HTTP1_LINE_MAX;
    memcpy(g_big + n, "\r\n\r\n", 4);
    n += 4;
    parse_lim(g_big, n, 0, NULL);
    assert_int_equal(g_whole.end, HTTP1_ERROR);
    assert_int_equal(g_whole.why, HTTP1_E_LINE_LONG);
    /* a line of exactly line_max bytes with its CRLF fits */
    n = (size_t)snprintf(g_big, sizeof(g_big), "HTTP/1.1 200 OK\r\nX-A: ");
    memset(g_big + n, 'a', HTTP1_LINE_MAX - 7);
    n += HTTP1_LINE_MAX - 7;
    memcpy(g_big + n, "\r\nContent-Length: 0\r\n\r\n", 23);
    n += 23;
    parse_lim(g_big, n, 0, NULL);
    assert_int_equal(g_whole.end, HTTP1_DONE);
    /* the same bound for a chunk-size line full of extensions */
    n = (size_t)snprintf(g_big, sizeof(g_big),
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                         "\r\n1;");
    memset(g_big + n, 'e', HTTP1_LINE_MAX);
    n += HTTP1_LINE_MAX;
    parse_lim(g_big, n, 0, NULL);
    assert_int_equal(g_whole.end, HTTP1_ERROR);
    assert_int_equal(g_whole.why, HTTP1_E_LINE_LONG);
    /* a status line that never ends */
    memcpy(g_big, "HTTP/1.1 200 ", 13);
    memset(g_big + 13, 'x', 20000);
    parse_lim(g_big, 20013, 0, NULL);
    assert_int_equal(g_whole.why, HTTP1_E_LINE_LONG);
}

static void
test_too_many_fields(void **state)
{
    struct http1_limits lim = {256, 3, 4096};
    size_t n = 0;
    int i;

    (void)state;
    n = (size_t)snprintf(g_big, sizeof(g_big), "HTTP/1.1 200 OK\r\n");
    for (i = 0; i < 101; i++)
        n += (size_t)snprintf(g_big + n, sizeof(g_big) - n, "X-%d: v\r\n", i);
    n += (size_t)snprintf(g_big + n, sizeof(g_big) - n, "\r\n");
    parse_lim(g_big, n, 0, NULL);
    assert_int_equal(g_whole.why, HTTP1_E_FIELDS);
    /* own limits: three fields pass, four do not; trailers likewise */
    n = (size_t)snprintf(g_big, sizeof(g_big),
                         "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n"
                         "Content-Length: 0\r\n\r\n");
    parse_lim(g_big, n, 0, &lim);
    assert_int_equal(g_whole.end, HTTP1_DONE);
    n = (size_t)snprintf(g_big, sizeof(g_big),
                         "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n"
                         "Content-Length: 0\r\n\r\n");
    parse_lim(g_big, n, 0, &lim);
    assert_int_equal(g_whole.why, HTTP1_E_FIELDS);
    n = (size_t)snprintf(g_big, sizeof(g_big),
                         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n");
    parse_lim(g_big, n, 0, &lim);
    assert_int_equal(g_whole.why, HTTP1_E_FIELDS);
}

static void
test_head_too_big(void **state)
{
    size_t n = 0;
    int i;

    (void)state;
    /* 100 fields of 1000 bytes: each line fits, the head does not */
    n = (size_t)snprintf(g_big, sizeof(g_big), "HTTP/1.1 200 OK\r\n");
    for (i = 0; i < 99; i++) {
        n += (size_t)snprintf(g_big + n, sizeof(g_big) - n, "X-%02d: ", i);
        memset(g_big + n, 'v', 990);
        n += 990;
        memcpy(g_big + n, "\r\n", 2);
        n += 2;
    }
    memcpy(g_big + n, "\r\n", 2);
    n += 2;
    parse_lim(g_big, n, 0, NULL);
    assert_int_equal(g_whole.why, HTTP1_E_HEAD_BIG);
    /* an endless stream of 100 Continue ends the same way */
    n = 0;
    while (n + 30 < sizeof(g_big))
        n += (size_t)snprintf(g_big + n, sizeof(g_big) - n,
                              "HTTP/1.1 100 Continue\r\n\r\n");
    parse_lim(g_big, n, 0, NULL);
    assert_int_equal(g_whole.why, HTTP1_E_HEAD_BIG);
}

/*---- Properties ----*/

/* A small deterministic generator (no libc rand in this code base). */
static uint32_t g_seed = 12345;

static uint32_t
next_rand(void)
{
    g_seed = g_seed * 1103515245u + 12345u;
    return g_seed >> 8;
}

static void
test_random_chunked_bodies(void **state)
{
    static char want[BODY_MAX / 2];
    size_t n, nwant, k, i;
    int round;

    (void)state;
    for (round = 0; round < 50; round++) {
        n = (size_t)snprintf(g_big, sizeof(g_big),
                             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked"
                             "\r\n\r\n");
        nwant = 0;
        while (nwant < 4000) {
            k = 1 + next_rand() % 700;
            n += (size_t)snprintf(g_big + n, sizeof(g_big) - n, "%zx%s\r\n", k,
                                  next_rand() % 3 == 0 ? ";x=1" : "");
            for (i = 0; i < k; i++)
                want[nwant + i] = (char)(next_rand() & 0xff);
            memcpy(g_big + n, want + nwant, k);
            n += k;
            nwant += k;
            memcpy(g_big + n, "\r\n", 2);
            n += 2;
        }
        n += (size_t)snprintf(g_big + n, sizeof(g_big) - n, "0\r\n\r\n");
        parse_in(g_big, n, 0, 0, NULL, &g_whole);
        for (k = 1; k < 40; k += 1 + next_rand() % 9) {
            parse_in(g_big, n, k, 0, NULL, &g_split);
            assert_int_equal(g_split.end, HTTP1_DONE);
            assert_int_equal(g_split.nbody, nwant);
            assert_memory_equal(g_split.body, want, nwant);
        }
        assert_int_equal(g_whole.end, HTTP1_DONE);
        assert_int_equal(g_whole.nbody, nwant);
        assert_memory_equal(g_whole.body, want, nwant);
    }
}

static void
test_strwhy(void **state)
{
    (void)state;
    assert_string_equal(http1_strwhy(HTTP1_E_TRUNCATED), "truncated");
    assert_string_equal(http1_strwhy((enum http1_why)999), "unknown");
    assert_string_equal(http1_strwhy(HTTP1_OK), "ok");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_bytes_after_the_response_are_left),
        cmocka_unit_test(test_chunked_with_extensions_and_trailers),
        cmocka_unit_test(test_close_delimited),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_interim_and_bodiless),
        cmocka_unit_test(test_bad_status_lines),
        cmocka_unit_test(test_line_ends),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_bad_content_length),
        cmocka_unit_test(test_bad_transfer_encoding),
        cmocka_unit_test(test_bad_chunks),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_line_too_long),
        cmocka_unit_test(test_too_many_fields),
        cmocka_unit_test(test_head_too_big),
        cmocka_unit_test(test_random_chunked_bodies),
        cmocka_unit_test(test_strwhy),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
