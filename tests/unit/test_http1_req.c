/*
 * Unit tests for the request side of http1.c: every rule of a request head
 * and of a chunked request body, each valid input fed whole, one byte per
 * call and split at every position (all must agree), refusals at the first
 * bad byte, the bounds at exactly their value and one past, resumption
 * without rescanning, and the bytes after a head left alone.
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

/* What parsing one head gave. */
struct res {
    enum http1_ev ev;
    enum http1_why why;
    size_t at; /* the length given when the parse ended */
    enum http1_method method;
    struct http1_span target;
    int minor, keep_alive, expect_continue, has_host;
    enum http1_framing framing;
    uint64_t length;
    size_t head_len;
    unsigned nfields;
    struct http1_field fields[HTTP1_REQ_FIELDS_MAX];
};

static struct http1_req g_q;
static struct res g_whole, g_split;

/*
 * One call on a copy of in[0..k) in a buffer of exactly k bytes, so that
 * the buffer moves between calls and a read past k shows under ASan.
 */
static enum http1_ev
call(struct http1_req *q, const char *in, size_t k)
{
    char *buf = malloc(k > 0 ? k : 1);
    enum http1_ev ev;

    assert_non_null(buf);
    memcpy(buf, in, k);
    ev = http1_req_head(q, buf, k);
    free(buf);
    return ev;
}

static void
record(const struct http1_req *q, enum http1_ev ev, size_t at, struct res *r)
{
    memset(r, 0, sizeof(*r));
    r->ev = ev;
    r->at = at;
    r->why = ev == HTTP1_ERROR ? q->why : HTTP1_OK;
    if (ev != HTTP1_HEAD)
        return;
    r->method = q->method;
    r->target = q->target;
    r->minor = q->minor;
    r->keep_alive = q->keep_alive;
    r->expect_continue = q->expect_continue;
    r->has_host = q->has_host;
    r->framing = q->framing;
    r->length = q->length;
    r->head_len = q->head_len;
    r->nfields = q->nfields;
    memcpy(r->fields, q->fields, q->nfields * sizeof(q->fields[0]));
}

/* Feed in[0..len) with the lengths cuts[0..ncuts) and then len. */
static void
run_cuts(const char *in, size_t len, const struct http1_limits *lim,
         const size_t *cuts, size_t ncuts, struct res *r)
{
    enum http1_ev ev = HTTP1_MORE;
    size_t i, k = 0;

    http1_req_init(&g_q, lim);
    for (i = 0; i <= ncuts && ev == HTTP1_MORE; i++) {
        k = i < ncuts ? cuts[i] : len;
        ev = call(&g_q, in, k);
    }
    record(&g_q, ev, k, r);
    if (ev == HTTP1_HEAD || ev == HTTP1_ERROR) {
        /* final: later calls say the same */
        assert_int_equal(call(&g_q, in, len), ev);
        if (ev == HTTP1_ERROR)
            assert_int_equal(g_q.why, r->why);
    }
}

static int
same(const struct res *a, const struct res *b)
{
    return a->ev == b->ev && a->why == b->why && a->method == b->method &&
           memcmp(&a->target, &b->target, sizeof(a->target)) == 0 &&
           a->minor == b->minor && a->keep_alive == b->keep_alive &&
           a->expect_continue == b->expect_continue &&
           a->has_host == b->has_host && a->framing == b->framing &&
           a->length == b->length && a->head_len == b->head_len &&
           a->nfields == b->nfields &&
           memcmp(a->fields, b->fields, a->nfields * sizeof(a->fields[0])) == 0;
}

static size_t g_cuts[256 * 1024];

/*
 * Parse whole (left in g_whole), one byte per call (left in g_split) and
 * split at every position; all must agree.
 */
static void
parse_lim(const char *in, size_t len, const struct http1_limits *lim)
{
    struct res bytewise;
    size_t i;

    run_cuts(in, len, lim, NULL, 0, &g_whole);
    for (i = 0; i < len; i++)
        g_cuts[i] = i + 1;
    run_cuts(in, len, lim, g_cuts, len, &bytewise);
    if (!same(&bytewise, &g_whole))
        fail_msg("one byte per call disagrees with the whole: ev %d/%d why "
                 "%s/%s",
                 bytewise.ev, g_whole.ev, http1_strwhy(bytewise.why),
                 http1_strwhy(g_whole.why));
    /* the head is reported the moment its last byte arrives */
    if (bytewise.ev == HTTP1_HEAD)
        assert_int_equal(bytewise.at, bytewise.head_len);
    for (i = 0; i <= len; i++) {
        g_cuts[0] = i;
        run_cuts(in, len, lim, g_cuts, 1, &g_split);
        if (!same(&g_split, &g_whole))
            fail_msg("split at %zu disagrees with the whole", i);
    }
    g_split = bytewise;
}

static void
parse_s(const char *in)
{
    parse_lim(in, strlen(in), NULL);
}

static void
expect_head(const char *in)
{
    parse_s(in);
    if (g_whole.ev != HTTP1_HEAD)
        fail_msg("want a head, got ev %d why %s for: %s", g_whole.ev,
                 http1_strwhy(g_whole.why), in);
}

static void
expect_refused_lim(const char *in, size_t len, const struct http1_limits *lim,
                   enum http1_why why)
{
    parse_lim(in, len, lim);
    if (g_whole.ev != HTTP1_ERROR || g_whole.why != why)
        fail_msg("want refusal %s, got ev %d why %s for: %.*s",
                 http1_strwhy(why), g_whole.ev, http1_strwhy(g_whole.why),
                 (int)(len < 200 ? len : 200), in);
}

static void
expect_refused(const char *in, enum http1_why why)
{
    expect_refused_lim(in, strlen(in), NULL, why);
}

/* Refused with why the moment byte `bad` (0-based) arrives, one byte per
 * call; in may hold NULs, so its length is given. */
static void
expect_refused_at(const char *in, size_t len, enum http1_why why, size_t bad)
{
    /* the whole input, NULs included */
    assert_true(len >= strlen(in));
    expect_refused_lim(in, len, NULL, why);
    if (g_split.at != bad + 1)
        fail_msg("refused after %zu bytes, want %zu", g_split.at, bad + 1);
}

static int
target_is(const char *in, const char *want)
{
    return g_whole.target.len == strlen(want) &&
           memcmp(in + g_whole.target.off, want, g_whole.target.len) == 0;
}

/*---- Request lines ----*/

static void
test_methods_and_targets(void **state)
{
    static const struct {
        const char *in;
        enum http1_method m;
        const char *target;
    } cases[] = {
        {"GET /cgi-bin/user/get?x=1 HTTP/1.1\r\n\r\n", HTTP1_M_GET,
         "/cgi-bin/user/get?x=1"},
        {"HEAD / HTTP/1.1\r\n\r\n", HTTP1_M_HEAD, "/"},
        {"POST /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n", HTTP1_M_POST, "/a"},
        {"PUT /a HTTP/1.1\r\n\r\n", HTTP1_M_PUT, "/a"},
        {"DELETE /a HTTP/1.1\r\n\r\n", HTTP1_M_DELETE, "/a"},
        {"OPTIONS * HTTP/1.1\r\n\r\n", HTTP1_M_OPTIONS, "*"},
        {"PATCH /a HTTP/1.1\r\n\r\n", HTTP1_M_PATCH, "/a"},
        {"PROPFIND /a HTTP/1.1\r\n\r\n", HTTP1_M_OTHER, "/a"},
        /* methods are case-sensitive */
        {"get /a HTTP/1.1\r\n\r\n", HTTP1_M_OTHER, "/a"},
        {"GETS /a HTTP/1.1\r\n\r\n", HTTP1_M_OTHER, "/a"},
        {"GE /a HTTP/1.1\r\n\r\n", HTTP1_M_OTHER, "/a"},
        /* the target's form is not judged */
        {"GET http://h.example/p?q=%20&r=~!$'()*+,;= HTTP/1.1\r\n\r\n",
         HTTP1_M_GET, "http://h.example/p?q=%20&r=~!$'()*+,;="},
        {"CONNECT h.example:443 HTTP/1.1\r\n\r\n", HTTP1_M_OTHER,
         "h.example:443"},
        {"!#$%&'*+-.^_`|~09azAZ x HTTP/1.0\r\n\r\n", HTTP1_M_OTHER, "x"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < nitems(cases); i++) {
        expect_head(cases[i].in);
        assert_int_equal(g_whole.method, cases[i].m);
        if (!target_is(cases[i].in, cases[i].target))
            fail_msg("target of %s", cases[i].in);
        assert_int_equal(g_whole.head_len, strlen(cases[i].in));
    }
    assert_int_equal(g_whole.minor, 0);
    expect_head("GET / HTTP/1.1\r\n\r\n");
    assert_int_equal(g_whole.minor, 1);
    assert_int_equal(g_whole.framing, HTTP1_BODY_NONE);
    assert_int_equal(g_whole.nfields, 0);
}

static void
test_bad_request_lines(void **state)
{
    (void)state;
    /* not a token */
    expect_refused_at("G(T / HTTP/1.1\r\n\r\n", 18, HTTP1_E_METHOD, 1);
    expect_refused_at("G\x80T / HTTP/1.1\r\n\r\n", 18, HTTP1_E_METHOD, 1);
    expect_refused_at("GE\0T / HTTP/1.1\r\n\r\n", 19, HTTP1_E_METHOD, 2);
    expect_refused_at("\0GET / HTTP/1.1\r\n\r\n", 19, HTTP1_E_METHOD, 0);
    /* exactly one SP each, no empty part */
    expect_refused_at(" GET / HTTP/1.1\r\n\r\n", 19, HTTP1_E_REQUEST_LINE, 0);
    expect_refused_at("GET  / HTTP/1.1\r\n\r\n", 19, HTTP1_E_REQUEST_LINE, 4);
    expect_refused_at("GET /  HTTP/1.1\r\n\r\n", 19, HTTP1_E_VERSION, 6);
    expect_refused_at("GET\t/ HTTP/1.1\r\n\r\n", 18, HTTP1_E_METHOD, 3);
    expect_refused("GET / HTTP/1.1 \r\n\r\n", HTTP1_E_VERSION);
    expect_refused("GET /\tHTTP/1.1\r\n\r\n", HTTP1_E_TARGET);
    /* the target: visible ASCII only */
    expect_refused_at("GET /a\0b HTTP/1.1\r\n\r\n", 21, HTTP1_E_TARGET, 6);
    expect_refused_at("GET /a\x7f HTTP/1.1\r\n\r\n", 20, HTTP1_E_TARGET, 6);
    expect_refused_at("GET /\xe4\xbd\xa0 HTTP/1.1\r\n\r\n", 21, HTTP1_E_TARGET,
                      5);
    expect_refused_at("GET /a\x01 HTTP/1.1\r\n\r\n", 20, HTTP1_E_TARGET, 6);
    /* HTTP/0.9 and other lines without a version */
    expect_refused_at("GET /\r\n\r\n", 9, HTTP1_E_REQUEST_LINE, 5);
    expect_refused_at("GET\r\n\r\n", 7, HTTP1_E_REQUEST_LINE, 3);
    expect_refused_at("GET \r\n\r\n", 8, HTTP1_E_REQUEST_LINE, 4);
    /* versions: HTTP/1.0 and HTTP/1.1 exactly */
    expect_refused("GET / HTTP/1.2\r\n\r\n", HTTP1_E_VERSION);
    expect_refused("GET / HTTP/2.0\r\n\r\n", HTTP1_E_VERSION);
    expect_refused("GET / HTTP/9.9\r\n\r\n", HTTP1_E_VERSION);
    assert_int_equal(http1_req_status(g_whole.why), 400);
    expect_refused("GET / http/1.1\r\n\r\n", HTTP1_E_VERSION);
    expect_refused("GET / HTTP/1.10\r\n\r\n", HTTP1_E_VERSION);
    expect_refused("GET / HTTP/1\r\n\r\n", HTTP1_E_VERSION);
    expect_refused("GET / HTTP/1.\r\n\r\n", HTTP1_E_VERSION);
    expect_refused("GET / HTTP/01.1\r\n\r\n", HTTP1_E_VERSION);
    expect_refused_at("GET / HTTP/1.1\0\r\n\r\n", 19, HTTP1_E_VERSION, 14);
}

static void
test_line_ends(void **state)
{
    (void)state;
    /* a bare LF refused when it arrives, wherever it is */
    expect_refused_at("GET / HTTP/1.1\n\r\n", 17, HTTP1_E_LINE_END, 14);
    expect_refused_at("GET /\nx HTTP/1.1\r\n\r\n", 20, HTTP1_E_LINE_END, 5);
    expect_refused_at("GE\nT / HTTP/1.1\r\n\r\n", 19, HTTP1_E_LINE_END, 2);
    expect_refused_at("GET \n", 5, HTTP1_E_LINE_END, 4);
    expect_refused_at("GET / HTTP/1.\n", 14, HTTP1_E_LINE_END, 13);
    expect_refused_at("GET / HTTP/1.1\r\nA: b\n\r\n", 23, HTTP1_E_LINE_END, 20);
    expect_refused_at("GET / HTTP/1.1\r\nA\n", 18, HTTP1_E_LINE_END, 17);
    expect_refused_at("GET / HTTP/1.1\r\n\n", 17, HTTP1_E_LINE_END, 16);
    expect_refused_at("GET / HTTP/1.1\r\nA: b\r\n\r\r\n", 25, HTTP1_E_LINE_END,
                      23);
    /* a bare CR */
    expect_refused_at("GET / HTTP/1.1\rX\n\r\n", 19, HTTP1_E_LINE_END, 15);
    expect_refused_at("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 27, HTTP1_E_LINE_END,
                      21);
    expect_refused_at("GET / HTTP/1.1\r\nA: b\r\r\n\r\n", 26, HTTP1_E_LINE_END,
                      21);
}

static void
test_leading_empty_lines(void **state)
{
    static const char *const ok[] = {
        "\r\nGET /x HTTP/1.1\r\nA: 1\r\n\r\n",
        "\r\n\r\n\r\n\r\nGET /x HTTP/1.1\r\nA: 1\r\n\r\n",
    };
    size_t i;

    (void)state;
    for (i = 0; i < nitems(ok); i++) {
        expect_head(ok[i]);
        assert_int_equal(g_whole.head_len, strlen(ok[i]));
        assert_true(target_is(ok[i], "/x"));
        assert_int_equal(g_whole.method, HTTP1_M_GET);
        assert_int_equal(g_whole.nfields, 1);
        assert_memory_equal(ok[i] + g_whole.fields[0].name.off, "A", 1);
    }
    /* at most four: the fifth is not skipped */
    expect_refused_at("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", 28,
                      HTTP1_E_REQUEST_LINE, 9);
    expect_refused_at("\nGET / HTTP/1.1\r\n\r\n", 19, HTTP1_E_LINE_END, 0);
    expect_refused_at("\r\r\nGET / HTTP/1.1\r\n\r\n", 21, HTTP1_E_LINE_END, 1);
}

/*---- Fields ----*/

static void
test_fields(void **state)
{
    static const char in[] = "GET / HTTP/1.1\r\nHost: h.example\r\n"
                             "X-Empty:\r\n"
                             "X-Spaces: \t a  b \t \r\n"
                             "X-Text: caf\xc3\xa9 \"q\"\t;x\r\n"
                             "x-text: second\r\n\r\n";
    const char *v;
    size_t n = 99;

    (void)state;
    expect_head(in);
    assert_int_equal(g_whole.nfields, 5);
    /* values trimmed of SP and HTAB, spans inside the head */
    http1_req_init(&g_q, NULL);
    assert_int_equal(http1_req_head(&g_q, in, sizeof(in) - 1), HTTP1_HEAD);
    v = http1_req_field(&g_q, in, "HOST", &n);
    assert_non_null(v);
    assert_int_equal(n, 9);
    assert_memory_equal(v, "h.example", 9);
    v = http1_req_field(&g_q, in, "x-empty", &n);
    assert_non_null(v);
    assert_int_equal(n, 0);
    v = http1_req_field(&g_q, in, "X-Spaces", &n);
    assert_int_equal(n, 4);
    assert_memory_equal(v, "a  b", 4);
    v = http1_req_field(&g_q, in, "x-text", &n);
    assert_int_equal(n, strlen("caf\xc3\xa9 \"q\"\t;x"));
    /* a missing field: NULL and *n untouched */
    n = 77;
    assert_null(http1_req_field(&g_q, in, "X-None", &n));
    assert_int_equal(n, 77);
    assert_null(http1_req_field(&g_q, in, "Hos", &n));
    assert_null(http1_req_field(&g_q, in, "Hostt", &n));
}

/* Host: one at most, of an authority's characters; its absence is the
 * server's to judge (HTTP/1.0 may omit it). */
static void
test_host_field(void **state)
{
    static const char *const good[] = {
        "GET / HTTP/1.1\r\nHost: h.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h.example:8443\r\n\r\n",
        "GET / HTTP/1.1\r\nhost: 127.0.0.1:80\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1]:9000\r\n\r\n",
        "GET / HTTP/1.1\r\nHost:\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a-b_c~d%41\r\n\r\n",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        expect_head(good[i]);
        assert_int_equal(g_whole.has_host, 1);
    }
    expect_head("GET / HTTP/1.1\r\nX-Host: h\r\n\r\n");
    assert_int_equal(g_whole.has_host, 0);
    expect_head("GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(g_whole.has_host, 0);
    /* a second Host, even the same, and values no authority has */
    expect_refused("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
                   HTTP1_E_HOST);
    expect_refused("GET / HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n",
                   HTTP1_E_HOST);
    expect_refused("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", HTTP1_E_HOST);
    expect_refused("GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", HTTP1_E_HOST);
    expect_refused("GET / HTTP/1.1\r\nHost: h/x\r\n\r\n", HTTP1_E_HOST);
    expect_refused("GET / HTTP/1.1\r\nHost: h,\"x\"\r\n\r\n", HTTP1_E_HOST);
    expect_refused("GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n", HTTP1_E_HOST);
    assert_int_equal(http1_req_status(HTTP1_E_HOST), 400);
}

static void
test_bad_fields(void **state)
{
    (void)state;
    /* obs-fold */
    expect_refused_at("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 28, HTTP1_E_FOLD,
                      22);
    expect_refused_at("GET / HTTP/1.1\r\n\tA: b\r\n\r\n", 25, HTTP1_E_FOLD, 16);
    /* names: tokens, the colon right after */
    expect_refused_at("GET / HTTP/1.1\r\nA b: c\r\n\r\n", 26, HTTP1_E_FIELD,
                      17);
    expect_refused_at("GET / HTTP/1.1\r\nA : c\r\n\r\n", 25, HTTP1_E_FIELD, 17);
    expect_refused_at("GET / HTTP/1.1\r\nA\t: c\r\n\r\n", 25, HTTP1_E_FIELD,
                      17);
    expect_refused_at("GET / HTTP/1.1\r\n: c\r\n\r\n", 23, HTTP1_E_FIELD, 16);
    expect_refused_at("GET / HTTP/1.1\r\nA(b: c\r\n\r\n", 26, HTTP1_E_FIELD,
                      17);
    expect_refused_at("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 27, HTTP1_E_FIELD,
                      23);
    expect_refused_at("GET / HTTP/1.1\r\nA\x80: c\r\n\r\n", 25, HTTP1_E_FIELD,
                      17);
    /* values: no control byte but HTAB */
    expect_refused_at("GET / HTTP/1.1\r\nA: b\0c\r\n\r\n", 26, HTTP1_E_FIELD,
                      20);
    expect_refused_at("GET / HTTP/1.1\r\nA: \x01\r\n\r\n", 24, HTTP1_E_FIELD,
                      19);
    expect_refused_at("GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", 25, HTTP1_E_FIELD,
                      20);
    expect_refused_at("GET / HTTP/1.1\r\nA: b\x1b[0m\r\n\r\n", 29,
                      HTTP1_E_FIELD, 20);
}

static void
test_content_length(void **state)
{
    (void)state;
    expect_head("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
    assert_int_equal(g_whole.framing, HTTP1_BODY_LENGTH);
    assert_int_equal(g_whole.length, 5);
    /* the same value twice is one length */
    expect_head("POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: "
                "005\r\n\r\n");
    assert_int_equal(g_whole.length, 5);
    expect_head("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(g_whole.framing, HTTP1_BODY_NONE);
    assert_int_equal(g_whole.length, 0);
    expect_head("POST / HTTP/1.1\r\nContent-Length: "
                "18446744073709551615\r\n\r\n");
    assert_int_equal(g_whole.length, UINT64_MAX);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: "
                   "18446744073709551616\r\n\r\n",
                   HTTP1_E_LENGTH);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
                   HTTP1_E_LENGTH);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
                   HTTP1_E_LENGTH);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                   HTTP1_E_LENGTH);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
                   HTTP1_E_LENGTH);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 1 0\r\n\r\n",
                   HTTP1_E_LENGTH);
    expect_refused("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
                   HTTP1_E_LENGTH);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 5\r\n"
                   "Content-Length: 6\r\n\r\n",
                   HTTP1_E_LENGTHS);
    assert_int_equal(http1_req_status(g_whole.why), 400);
}

static void
test_transfer_encoding(void **state)
{
    (void)state;
    expect_head("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_int_equal(g_whole.framing, HTTP1_BODY_CHUNKED);
    expect_head("POST / HTTP/1.1\r\ntransfer-encoding: ChUnKeD\r\n\r\n");
    assert_int_equal(g_whole.framing, HTTP1_BODY_CHUNKED);
    /* codings other than chunked: 501 */
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                   HTTP1_E_CODING);
    assert_int_equal(http1_req_status(g_whole.why), 501);
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n"
                   "\r\n",
                   HTTP1_E_CODING);
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked"
                   "\r\n\r\n",
                   HTTP1_E_CODING);
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n",
                   HTTP1_E_CODING);
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n",
                   HTTP1_E_CODING);
    /* both framings, either order: 400 */
    expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                   "Content-Length: 5\r\n\r\n",
                   HTTP1_E_FRAMING);
    expect_refused("POST / HTTP/1.1\r\nContent-Length: 5\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n",
                   HTTP1_E_FRAMING);
    assert_int_equal(http1_req_status(g_whole.why), 400);
    /* chunked in HTTP/1.0 */
    expect_refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                   HTTP1_E_FRAMING);
    assert_int_equal(http1_req_status(g_whole.why), 400);
}

static void
test_expect(void **state)
{
    (void)state;
    expect_head("POST / HTTP/1.1\r\nExpect: 100-continue\r\n"
                "Content-Length: 3\r\n\r\n");
    assert_int_equal(g_whole.expect_continue, 1);
    expect_head("POST / HTTP/1.1\r\nexpect: 100-CONTINUE\r\n\r\n");
    assert_int_equal(g_whole.expect_continue, 1);
    expect_head("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n");
    assert_int_equal(g_whole.expect_continue, 0);
    /* a 1.0 client waits for no 100: accepted, ignored */
    expect_head("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(g_whole.expect_continue, 0);
    expect_refused("POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", HTTP1_E_EXPECT);
    assert_int_equal(http1_req_status(g_whole.why), 417);
    expect_refused("POST / HTTP/1.1\r\nExpect: 100-continue, x\r\n\r\n",
                   HTTP1_E_EXPECT);
    expect_refused("POST / HTTP/1.1\r\nExpect:\r\n\r\n", HTTP1_E_EXPECT);
}

static void
test_keep_alive(void **state)
{
    static const struct {
        const char *in;
        int keep_alive;
    } cases[] = {
        {"GET / HTTP/1.1\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nConnection: CLOSE\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nConnection: x\r\nConnection: close\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nConnection: ,, upgrade ,\r\n\r\n", 1},
        {"GET / HTTP/1.1\r\nX-Connection: close\r\n\r\n", 1},
        {"GET / HTTP/1.0\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 1},
        {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\nConnection: keep-alived\r\n\r\n", 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < nitems(cases); i++) {
        expect_head(cases[i].in);
        if (g_whole.keep_alive != cases[i].keep_alive)
            fail_msg("keep_alive %d for: %s", g_whole.keep_alive, cases[i].in);
    }
    /* a list of tokens or nothing */
    expect_refused("GET / HTTP/1.1\r\nConnection: clo se\r\n\r\n",
                   HTTP1_E_FIELD);
    expect_refused("GET / HTTP/1.1\r\nConnection: close;x\r\n\r\n",
                   HTTP1_E_FIELD);
    expect_refused("GET / HTTP/1.1\r\nConnection: \"close\"\r\n\r\n",
                   HTTP1_E_FIELD);
}

/*---- Bounds ----*/

static char g_big[256 * 1024];

/* "GET /aaa… HTTP/1.1\r\n" of exactly n bytes, then "\r\n". */
static size_t
long_request_line(size_t n)
{
    size_t t = n - strlen("GET  HTTP/1.1\r\n");

    memcpy(g_big, "GET /", 5);
    memset(g_big + 5, 'a', t - 1);
    memcpy(g_big + 4 + t, " HTTP/1.1\r\n\r\n", 13);
    return n + 2;
}

static void
test_line_bounds(void **state)
{
    struct http1_limits lim = {128, 10, 4096};
    size_t n;

    (void)state;
    /* the request line: line_max with its CRLF fits, one more is 414 */
    n = long_request_line(128);
    parse_lim(g_big, n, &lim);
    assert_int_equal(g_whole.ev, HTTP1_HEAD);
    n = long_request_line(129);
    expect_refused_lim(g_big, n, &lim, HTTP1_E_URI_LONG);
    assert_int_equal(http1_req_status(g_whole.why), 414);
    /* refused at the byte that cannot end within the bound */
    assert_int_equal(g_split.at, 128);
    /* the default bound */
    n = long_request_line(HTTP1_LINE_MAX);
    run_cuts(g_big, n, NULL, NULL, 0, &g_whole);
    assert_int_equal(g_whole.ev, HTTP1_HEAD);
    n = long_request_line(HTTP1_LINE_MAX + 1);
    run_cuts(g_big, n, NULL, NULL, 0, &g_whole);
    assert_int_equal(g_whole.why, HTTP1_E_URI_LONG);
    /* a field line likewise, and 431 */
    n = (size_t)snprintf(g_big, sizeof(g_big), "GET / HTTP/1.1\r\nX: ");
    memset(g_big + n, 'v', 128 - 5);
    memcpy(g_big + n + 123, "\r\n\r\n", 4);
    parse_lim(g_big, n + 127, &lim);
    assert_int_equal(g_whole.ev, HTTP1_HEAD);
    n = (size_t)snprintf(g_big, sizeof(g_big), "GET / HTTP/1.1\r\nX: ");
    memset(g_big + n, 'v', 128 - 4);
    memcpy(g_big + n + 124, "\r\n\r\n", 4);
    expect_refused_lim(g_big, n + 128, &lim, HTTP1_E_LINE_LONG);
    assert_int_equal(http1_req_status(g_whole.why), 431);
    /* a line_max over the parser's own is its own */
    lim.line_max = 1000000;
    lim.head_max = 65536;
    n = long_request_line(HTTP1_LINE_MAX + 1);
    run_cuts(g_big, n, &lim, NULL, 0, &g_whole);
    assert_int_equal(g_whole.why, HTTP1_E_URI_LONG);
}

static void
test_head_bound(void **state)
{
    struct http1_limits lim = {HTTP1_LINE_MAX, 100, 0};
    static const char in[] = "\r\nGET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
    size_t n = sizeof(in) - 1;

    (void)state;
    /* the empty lines before the request line count */
    lim.head_max = n;
    parse_lim(in, n, &lim);
    assert_int_equal(g_whole.ev, HTTP1_HEAD);
    assert_int_equal(g_whole.head_len, n);
    lim.head_max = n - 1;
    expect_refused_lim(in, n, &lim, HTTP1_E_HEAD_BIG);
    assert_int_equal(http1_req_status(g_whole.why), 431);
    assert_int_equal(g_split.at, n);
    /* the default: 64 KiB */
    n = 0;
    n += (size_t)snprintf(g_big, sizeof(g_big), "GET / HTTP/1.1\r\n");
    while (n < 65536 - 2 - 4000) {
        n += (size_t)snprintf(g_big + n, sizeof(g_big) - n, "X-%05zu: ", n);
        memset(g_big + n, 'v', 3900);
        n += 3900;
        memcpy(g_big + n, "\r\n", 2);
        n += 2;
    }
    /* the last field fills the head to exactly 64 KiB */
    n += (size_t)snprintf(g_big + n, sizeof(g_big) - n, "Y: ");
    memset(g_big + n, 'w', 65536 - 4 - n);
    n = 65536 - 4;
    memcpy(g_big + n, "\r\n\r\n", 4);
    run_cuts(g_big, 65536, NULL, NULL, 0, &g_whole);
    assert_int_equal(g_whole.ev, HTTP1_HEAD);
    assert_int_equal(g_whole.head_len, 65536);
    memcpy(g_big + 65536 - 4, "w\r\n\r\n", 5);
    run_cuts(g_big, 65537, NULL, NULL, 0, &g_whole);
    assert_int_equal(g_whole.why, HTTP1_E_HEAD_BIG);
}

static void
test_field_count_bound(void **state)
{
    struct http1_limits lim = {HTTP1_LINE_MAX, 3, 65536};
    size_t n;
    int i;

    (void)state;
    expect_head("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
    parse_s("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
    parse_lim("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 36, &lim);
    assert_int_equal(g_whole.ev, HTTP1_HEAD);
    assert_int_equal(g_whole.nfields, 3);
    expect_refused_lim("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
                       42, &lim, HTTP1_E_FIELDS);
    assert_int_equal(http1_req_status(g_whole.why), 431);
    /* refused at the fourth field's first byte */
    assert_int_equal(g_split.at, 35);
    /* 100 at most, whatever the limits say */
    lim.fields = 1000;
    for (i = 100; i <= 101; i++) {
        int k;

        n = (size_t)snprintf(g_big, sizeof(g_big), "GET / HTTP/1.1\r\n");
        for (k = 0; k < i; k++)
            n += (size_t)snprintf(g_big + n, sizeof(g_big) - n, "X-%d: v\r\n",
                                  k);
        n += (size_t)snprintf(g_big + n, sizeof(g_big) - n, "\r\n");
        run_cuts(g_big, n, &lim, NULL, 0, &g_whole);
        if (i == 100) {
            assert_int_equal(g_whole.ev, HTTP1_HEAD);
            assert_int_equal(g_whole.nfields, 100);
        } else {
            assert_int_equal(g_whole.why, HTTP1_E_FIELDS);
        }
    }
}

/*---- Resumption ----*/

static void
test_trickled_head_is_linear(void **state)
{
    struct http1_limits lim = {HTTP1_LINE_MAX, 100, 65536};
    size_t n, k;
    enum http1_ev ev = HTTP1_MORE;

    (void)state;
    /* a 64 KiB head, one byte per call: each byte looked at once */
    n = (size_t)snprintf(g_big, sizeof(g_big), "POST /x HTTP/1.1\r\n");
    while (n < 65536 - 8000) {
        n += (size_t)snprintf(g_big + n, sizeof(g_big) - n, "X-%05zu: ", n);
        memset(g_big + n, 'v', 7000);
        n += 7000;
        memcpy(g_big + n, "\r\n", 2);
        n += 2;
    }
    n += (size_t)snprintf(g_big + n, sizeof(g_big) - n,
                          "Content-Length: 4\r\n\r\nbody");
    http1_req_init(&g_q, &lim);
    for (k = 1; k <= n && ev == HTTP1_MORE; k++)
        ev = http1_req_head(&g_q, g_big, k);
    assert_int_equal(ev, HTTP1_HEAD);
    assert_int_equal(g_q.head_len, n - 4);
    assert_int_equal(g_q.examined, n - 4);
    assert_int_equal(g_q.length, 4);
    /* calls with nothing new look at nothing */
    http1_req_init(&g_q, &lim);
    for (k = 0; k < 1000; k++)
        assert_int_equal(http1_req_head(&g_q, g_big, 10), HTTP1_MORE);
    assert_int_equal(g_q.examined, 10);
}

static void
test_pipelined_bytes_untouched(void **state)
{
    /* what follows the head is not looked at, however broken */
    static const char in[] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                             "\n\0\x01 garbage\r\r";
    const size_t head = sizeof("GET /a HTTP/1.1\r\nHost: h\r\n\r\n") - 1;

    (void)state;
    http1_req_init(&g_q, NULL);
    assert_int_equal(http1_req_head(&g_q, in, sizeof(in) - 1), HTTP1_HEAD);
    assert_int_equal(g_q.head_len, head);
    assert_int_equal(g_q.examined, head);
    /* and a second request right behind is a new parse from head_len */
    expect_head("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    assert_int_equal(g_whole.head_len, 19);
    parse_s("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n" + 19);
    assert_true(target_is("GET /b HTTP/1.1\r\n\r\n", "/b"));
}

static void
test_refusal_is_final(void **state)
{
    (void)state;
    http1_req_init(&g_q, NULL);
    assert_int_equal(http1_req_head(&g_q, "GET\n", 4), HTTP1_ERROR);
    assert_int_equal(g_q.why, HTTP1_E_LINE_END);
    assert_int_equal(http1_req_head(&g_q, "GET\n / HTTP/1.1\r\n\r\n", 19),
                     HTTP1_ERROR);
    assert_int_equal(g_q.why, HTTP1_E_LINE_END);
    /* a reused struct starts afresh */
    http1_req_init(&g_q, NULL);
    assert_int_equal(http1_req_head(&g_q, "GET / HTTP/1.1\r\n\r\n", 18),
                     HTTP1_HEAD);
    assert_int_equal(g_q.why, HTTP1_OK);
    assert_int_equal(g_q.nfields, 0);
}

static void
test_status_and_strwhy(void **state)
{
    int w;

    (void)state;
    assert_int_equal(http1_req_status(HTTP1_E_BODY_BIG), 413);
    assert_int_equal(http1_req_status(HTTP1_E_URI_LONG), 414);
    assert_int_equal(http1_req_status(HTTP1_E_HEAD_BIG), 431);
    assert_int_equal(http1_req_status(HTTP1_E_FIELDS), 431);
    assert_int_equal(http1_req_status(HTTP1_E_LINE_LONG), 431);
    assert_int_equal(http1_req_status(HTTP1_E_CODING), 501);
    assert_int_equal(http1_req_status(HTTP1_E_EXPECT), 417);
    assert_int_equal(http1_req_status(HTTP1_E_VERSION), 400);
    assert_int_equal(http1_req_status(HTTP1_E_METHOD), 400);
    assert_int_equal(http1_req_status(HTTP1_E_TARGET), 400);
    assert_int_equal(http1_req_status(HTTP1_E_REQUEST_LINE), 400);
    assert_int_equal(http1_req_status(HTTP1_E_FRAMING), 400);
    assert_int_equal(http1_req_status(HTTP1_E_CHUNK_SIZE), 400);
    for (w = HTTP1_OK; w <= HTTP1_E_HOST; w++)
        assert_string_not_equal(http1_strwhy((enum http1_why)w), "unknown");
}

/*---- Chunked bodies ----*/

/* What decoding one body gave. */
struct dres {
    enum http1_ev ev;
    enum http1_why why;
    size_t in, at;
    uint64_t out;
    char body[4096];
};

/*
 * Decode in[0..len) with bound max, the bytes arriving in the lengths
 * cuts[0..ncuts) and then len, in one buffer that grows at its end.
 */
static void
dc_run(const char *in, size_t len, uint64_t max, const struct http1_limits *lim,
       const size_t *cuts, size_t ncuts, struct dres *r)
{
    struct http1_dechunk d;
    enum http1_ev ev = HTTP1_MORE;
    char *buf = malloc(len > 0 ? len : 1);
    size_t i, k = 0, prev_in = 0;
    uint64_t prev_out = 0;

    assert_non_null(buf);
    memset(r, 0, sizeof(*r));
    http1_dechunk_init(&d, max, lim);
    for (i = 0; i <= ncuts && ev == HTTP1_MORE; i++) {
        k = i < ncuts ? cuts[i] : len;
        memcpy(buf + prev_in, in + prev_in, k - prev_in);
        ev = http1_dechunk(&d, buf, k);
        assert_true(d.out <= d.in && d.in <= k);
        assert_true(d.in >= prev_in && d.out >= prev_out);
        /* the decoded bytes are the body so far */
        assert_true(d.out <= sizeof(r->body));
        memcpy(r->body, buf, (size_t)d.out);
        prev_in = d.in;
        prev_out = d.out;
    }
    r->ev = ev;
    r->why = ev == HTTP1_ERROR ? d.why : HTTP1_OK;
    r->in = d.in;
    r->out = d.out;
    r->at = k;
    if (ev != HTTP1_MORE)
        assert_int_equal(http1_dechunk(&d, buf, len), ev);
    free(buf);
}

static struct dres g_dwhole, g_dsplit;

static void
dc_parse(const char *in, size_t len, uint64_t max,
         const struct http1_limits *lim)
{
    size_t i;

    dc_run(in, len, max, lim, NULL, 0, &g_dwhole);
    for (i = 0; i < len; i++)
        g_cuts[i] = i + 1;
    dc_run(in, len, max, lim, g_cuts, len, &g_dsplit);
    for (i = 0; i <= len + 1; i++) {
        struct dres r;

        if (i <= len) {
            g_cuts[0] = i;
            dc_run(in, len, max, lim, g_cuts, 1, &r);
        } else {
            r = g_dsplit;
        }
        if (r.ev != g_dwhole.ev || r.why != g_dwhole.why ||
            (r.ev == HTTP1_DONE &&
             (r.in != g_dwhole.in || r.out != g_dwhole.out ||
              memcmp(r.body, g_dwhole.body, (size_t)r.out) != 0)))
            fail_msg("split at %zu: ev %d/%d why %s/%s", i, r.ev, g_dwhole.ev,
                     http1_strwhy(r.why), http1_strwhy(g_dwhole.why));
    }
}

static void
dc_parse_s(const char *in, uint64_t max, const struct http1_limits *lim)
{
    dc_parse(in, strlen(in), max, lim);
}

static void
expect_body(const char *in, const char *body, size_t rest)
{
    size_t len = strlen(in);

    dc_parse(in, len, 1 << 20, NULL);
    if (g_dwhole.ev != HTTP1_DONE)
        fail_msg("want a body, got ev %d why %s for: %s", g_dwhole.ev,
                 http1_strwhy(g_dwhole.why), in);
    assert_int_equal(g_dwhole.out, strlen(body));
    assert_memory_equal(g_dwhole.body, body, strlen(body));
    assert_int_equal(g_dwhole.in, len - rest);
    /* the whole body is there the moment its last byte arrives */
    assert_int_equal(g_dsplit.at, len - rest);
}

static void
expect_body_refused_n(const char *in, size_t len, uint64_t max,
                      enum http1_why why)
{
    dc_parse(in, len, max, NULL);
    if (g_dwhole.ev != HTTP1_ERROR || g_dwhole.why != why)
        fail_msg("want refusal %s, got ev %d why %s for: %s", http1_strwhy(why),
                 g_dwhole.ev, http1_strwhy(g_dwhole.why), in);
}

static void
expect_body_refused(const char *in, uint64_t max, enum http1_why why)
{
    expect_body_refused_n(in, strlen(in), max, why);
}

static void
test_chunked_bodies(void **state)
{
    (void)state;
    expect_body("5\r\nhello\r\n0\r\n\r\n", "hello", 0);
    expect_body("0\r\n\r\n", "", 0);
    expect_body("5\r\nhello\r\n1;name=value\r\n \r\n"
                "A ; a=\"quoted; \\\"x\" ;b\r\n0123456789\r\n"
                "0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n",
                "hello 0123456789", 0);
    expect_body("1F\r\n0123456789abcdef0123456789abcde\r\n0\r\n\r\n",
                "0123456789abcdef0123456789abcde", 0);
    expect_body("000003\r\nabc\r\n0000\r\n\r\n", "abc", 0);
    /* bytes after the body are not taken */
    expect_body("3\r\nabc\r\n0\r\n\r\nPOST / HTTP/1.1\r\n\r\n", "abc",
                strlen("POST / HTTP/1.1\r\n\r\n"));
    expect_body("3\r\nabc\r\n0\r\n\r\n\n\x01", "abc", 2);
}

static void
test_bad_chunks(void **state)
{
    (void)state;
    expect_body_refused("x\r\n", 100, HTTP1_E_CHUNK_SIZE);
    expect_body_refused("\r\n", 100, HTTP1_E_CHUNK_SIZE);
    expect_body_refused("-1\r\n", 100, HTTP1_E_CHUNK_SIZE);
    expect_body_refused("0x5\r\nhello\r\n0\r\n\r\n", 100, HTTP1_E_CHUNK_SIZE);
    expect_body_refused("5 5\r\nhello\r\n0\r\n\r\n", 100, HTTP1_E_CHUNK_SIZE);
    /* at most 16 digits */
    expect_body_refused("00000000000000001\r\nx\r\n0\r\n\r\n", 100,
                        HTTP1_E_CHUNK_SIZE);
    expect_body_refused("1;a\x01\r\nx\r\n0\r\n\r\n", 100, HTTP1_E_CHUNK_EXT);
    expect_body_refused_n("1;a\0\r\nx\r\n0\r\n\r\n", 14, 100,
                          HTTP1_E_CHUNK_EXT);
    expect_body_refused_n("1\0\r\nx\r\n0\r\n\r\n", 12, 100, HTTP1_E_CHUNK_SIZE);
    expect_body_refused("3\r\nabcd\r\n0\r\n\r\n", 100, HTTP1_E_CHUNK_END);
    expect_body_refused("3\r\nabc\n0\r\n\r\n", 100, HTTP1_E_CHUNK_END);
    expect_body_refused("3\r\nabc\rx", 100, HTTP1_E_CHUNK_END);
    expect_body_refused("3\nabc\r\n0\r\n\r\n", 100, HTTP1_E_LINE_END);
    expect_body_refused("0\r\n\n", 100, HTTP1_E_LINE_END);
    /* trailers parse like fields */
    expect_body_refused("0\r\n x: y\r\n\r\n", 100, HTTP1_E_FOLD);
    expect_body_refused("0\r\nx y: z\r\n\r\n", 100, HTTP1_E_FIELD);
    expect_body_refused("0\r\nx: \x01\r\n\r\n", 100, HTTP1_E_FIELD);
    expect_body_refused("0\r\nnocolon\r\n\r\n", 100, HTTP1_E_FIELD);
}

static void
test_chunked_bounds(void **state)
{
    struct http1_limits lim = {16, 2, 24};
    size_t n;

    (void)state;
    /* the body's bound: exactly max passes, one more is 413 */
    dc_parse_s("5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n", 8, NULL);
    assert_int_equal(g_dwhole.ev, HTTP1_DONE);
    assert_int_equal(g_dwhole.out, 8);
    expect_body_refused("5\r\nhello\r\n4\r\nabcd\r\n0\r\n\r\n", 8,
                        HTTP1_E_BODY_BIG);
    assert_int_equal(http1_req_status(g_dwhole.why), 413);
    /* refused when the size line ends, before any of its data */
    assert_int_equal(g_dsplit.at, 13);
    assert_int_equal(g_dsplit.out, 5);
    /* sizes over 2^60 whatever the bound */
    expect_body_refused("FFFFFFFFFFFFFFFF\r\n", UINT64_MAX, HTTP1_E_CHUNK_SIZE);
    expect_body_refused("1000000000000001\r\n", UINT64_MAX, HTTP1_E_CHUNK_SIZE);
    dc_parse_s("1000000000000000\r\nabc", UINT64_MAX, NULL);
    assert_int_equal(g_dwhole.ev, HTTP1_MORE);
    assert_int_equal(g_dwhole.out, 3);
    expect_body_refused("1\r\n", 0, HTTP1_E_BODY_BIG);
    /* a line of line_max with its CRLF fits, one more does not */
    dc_parse_s("1;aaaaaaaaaaaa\r\nx\r\n0\r\n\r\n", 100, &lim);
    assert_int_equal(g_dwhole.ev, HTTP1_DONE);
    dc_parse_s("1;aaaaaaaaaaaaa\r\nx\r\n0\r\n\r\n", 100, &lim);
    assert_int_equal(g_dwhole.why, HTTP1_E_LINE_LONG);
    dc_parse_s("1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 100, &lim);
    assert_int_equal(g_dwhole.why, HTTP1_E_LINE_LONG);
    /* trailer fields: two pass, three do not */
    dc_parse_s("0\r\na: 1\r\nb: 2\r\n\r\n", 100, &lim);
    assert_int_equal(g_dwhole.ev, HTTP1_DONE);
    dc_parse_s("0\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n", 100, &lim);
    assert_int_equal(g_dwhole.why, HTTP1_E_FIELDS);
    /* the trailer section's bytes: 24 pass, 25 do not */
    lim.fields = 100;
    n = strlen("0\r\naaaa: 1\r\nbbbbbb: 123\r\n\r\n");
    dc_parse("0\r\naaaa: 1\r\nbbbbbb: 123\r\n\r\n", n, 100, &lim);
    assert_int_equal(g_dwhole.ev, HTTP1_DONE);
    dc_parse("0\r\naaaa: 1\r\nbbbbbb: 1234\r\n\r\n", n + 1, 100, &lim);
    assert_int_equal(g_dwhole.why, HTTP1_E_HEAD_BIG);
}

/* Random bodies cut in random chunks: decoded in place, byte by byte too. */
static void
test_random_chunked_bodies(void **state)
{
    static char wire[64 * 1024];
    static char body[4096];
    uint32_t seed = 4242;
    size_t n, blen, off, c;
    int round;

    (void)state;
    for (round = 0; round < 40; round++) {
        seed = seed * 1103515245u + 12345u;
        blen = (seed >> 8) % 1500;
        for (off = 0; off < blen; off++) {
            seed = seed * 1103515245u + 12345u;
            body[off] = (char)(seed >> 16);
        }
        n = 0;
        off = 0;
        while (off < blen) {
            seed = seed * 1103515245u + 12345u;
            c = 1 + (seed >> 8) % 300;
            if (c > blen - off)
                c = blen - off;
            n += (size_t)snprintf(wire + n, sizeof(wire) - n, "%zx\r\n", c);
            memcpy(wire + n, body + off, c);
            n += c;
            memcpy(wire + n, "\r\n", 2);
            n += 2;
            off += c;
        }
        memcpy(wire + n, "0\r\n\r\n", 5);
        n += 5;
        for (off = 0; off < n; off++)
            g_cuts[off] = off + 1;
        dc_run(wire, n, blen, NULL, g_cuts, n, &g_dsplit);
        assert_int_equal(g_dsplit.ev, HTTP1_DONE);
        assert_int_equal(g_dsplit.out, blen);
        assert_memory_equal(g_dsplit.body, body, blen);
        dc_run(wire, n, blen, NULL, NULL, 0, &g_dwhole);
        assert_int_equal(g_dwhole.ev, HTTP1_DONE);
        assert_int_equal(g_dwhole.in, n);
        assert_memory_equal(g_dwhole.body, body, blen);
        if (blen > 0) {
            dc_run(wire, n, blen - 1, NULL, NULL, 0, &g_dwhole);
            assert_int_equal(g_dwhole.why, HTTP1_E_BODY_BIG);
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_methods_and_targets),
        cmocka_unit_test(test_bad_request_lines),
        cmocka_unit_test(test_line_ends),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_host_field),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_transfer_encoding),
        cmocka_unit_test(test_expect),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_line_bounds),
        cmocka_unit_test(test_head_bound),
        cmocka_unit_test(test_field_count_bound),
        cmocka_unit_test(test_trickled_head_is_linear),
        cmocka_unit_test(test_pipelined_bytes_untouched),
        cmocka_unit_test(test_refusal_is_final),
        cmocka_unit_test(test_status_and_strwhy),
        cmocka_unit_test(test_chunked_bodies),
        cmocka_unit_test(test_bad_chunks),
        cmocka_unit_test(test_chunked_bounds),
        cmocka_unit_test(test_random_chunked_bodies),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
