/*
 * Fuzz the request side of the HTTP/1.1 parser. The first input byte picks
 * the size of the pieces the rest arrives in (0: whole), the second the
 * limits and, with its top bit, whether the rest is a request head (and its
 * chunked body, if it says chunked) or a chunked body alone.
 *
 * Properties: the pieces never change the outcome (event, refusal, every
 * result, the body decoded); a head's spans lie inside the head, the head
 * inside the input, the fields within their bound, the framing never by
 * the close; each byte is looked at once and none past the head; a body
 * decoder keeps out <= in <= len and out within its bound; a refusal is
 * final.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "http1.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define H1R_BODY_MAX 4096

struct h1r_out {
    enum http1_ev ev, dev;
    enum http1_why why, dwhy;
    struct http1_req q;
    uint64_t out;
    size_t in;
    uint32_t sum; /* of the decoded body, in order */
};

static int
h1r_span_in(struct http1_span s, size_t end)
{
    return (size_t)s.off + s.len <= end;
}

/* Decode in[0..len) as a chunked body, piece bytes at a time. */
static void
h1r_dechunk(const char *in, size_t len, size_t piece, uint64_t max,
            const struct http1_limits *lim, struct h1r_out *o)
{
    static struct http1_dechunk d;
    char *buf = brk_malloc(len > 0 ? len : 1);
    enum http1_ev ev = HTTP1_MORE;
    size_t k = 0, next, prev_in = 0, i;
    uint64_t prev_out = 0;

    if (buf == NULL)
        abort();
    http1_dechunk_init(&d, max, lim);
    if (piece == 0)
        piece = len > 0 ? len : 1;
    do {
        next = len - k < piece ? len : k + piece;
        memcpy(buf + k, in + k, next - k);
        k = next;
        ev = http1_dechunk(&d, buf, k);
        FUZZ_CHECK(d.out <= d.in && d.in <= k);
        FUZZ_CHECK(d.in >= prev_in && d.out >= prev_out);
        FUZZ_CHECK(d.out <= max);
        prev_in = d.in;
        prev_out = d.out;
    } while (ev == HTTP1_MORE && k < len);
    o->dev = ev;
    o->dwhy = ev == HTTP1_ERROR ? d.why : HTTP1_OK;
    FUZZ_CHECK(ev != HTTP1_ERROR || d.why != HTTP1_OK);
    o->in = d.in;
    o->out = d.out;
    o->sum = 0;
    for (i = 0; i < (size_t)d.out; i++)
        o->sum = o->sum * 31 + (unsigned char)buf[i];
    if (ev != HTTP1_MORE)
        FUZZ_CHECK(http1_dechunk(&d, buf, k) == ev);
    brk_free(buf);
}

/* Parse in[0..len) as a request head, piece bytes at a time. */
static void
h1r_head(const char *in, size_t len, size_t piece,
         const struct http1_limits *lim, struct h1r_out *o)
{
    struct http1_req *q = &o->q;
    enum http1_ev ev = HTTP1_MORE;
    size_t k = 0, i;

    http1_req_init(q, lim);
    if (piece == 0)
        piece = len > 0 ? len : 1;
    do {
        k = len - k < piece ? len : k + piece;
        ev = http1_req_head(q, in, k);
        FUZZ_CHECK(q->examined <= k);
    } while (ev == HTTP1_MORE && k < len);
    o->ev = ev;
    o->why = ev == HTTP1_ERROR ? q->why : HTTP1_OK;
    if (ev == HTTP1_ERROR) {
        FUZZ_CHECK(q->why != HTTP1_OK);
        FUZZ_CHECK(http1_req_head(q, in, len) == HTTP1_ERROR);
        return;
    }
    if (ev != HTTP1_HEAD)
        return;
    FUZZ_CHECK(q->head_len <= len && q->examined == q->head_len);
    FUZZ_CHECK(q->head_len <= lim->head_max);
    FUZZ_CHECK(q->target.len > 0 && h1r_span_in(q->target, q->head_len));
    FUZZ_CHECK(q->minor == 0 || q->minor == 1);
    FUZZ_CHECK(q->nfields <= HTTP1_REQ_FIELDS_MAX && q->nfields <= lim->fields);
    FUZZ_CHECK(q->framing != HTTP1_BODY_CLOSE);
    FUZZ_CHECK(q->framing != HTTP1_BODY_LENGTH || q->length > 0);
    FUZZ_CHECK(q->framing != HTTP1_BODY_CHUNKED || q->minor == 1);
    FUZZ_CHECK(!q->expect_continue || q->minor == 1);
    for (i = 0; i < q->nfields; i++) {
        FUZZ_CHECK(q->fields[i].name.len > 0);
        FUZZ_CHECK(h1r_span_in(q->fields[i].name, q->head_len));
        FUZZ_CHECK(h1r_span_in(q->fields[i].value, q->head_len));
        FUZZ_CHECK(q->fields[i].value.off > q->fields[i].name.off);
    }
    FUZZ_CHECK(http1_req_head(q, in, len) == HTTP1_HEAD);
}

static int
h1r_same_head(const struct http1_req *a, const struct http1_req *b)
{
    return a->method == b->method && a->target.off == b->target.off &&
           a->target.len == b->target.len && a->minor == b->minor &&
           a->keep_alive == b->keep_alive &&
           a->expect_continue == b->expect_continue &&
           a->framing == b->framing && a->length == b->length &&
           a->head_len == b->head_len && a->nfields == b->nfields &&
           memcmp(a->fields, b->fields, a->nfields * sizeof(a->fields[0])) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct h1r_out whole, split;
    static const struct http1_limits lims[] = {
        {HTTP1_LINE_MAX, 100, 65536},
        {64, 4, 256},
        {32, 200, 100000},
        {8192, 1, 40},
    };
    const struct http1_limits *lim;
    const char *in;
    size_t piece, len;
    uint64_t max;
    int body_only;

    if (size < 2)
        return 0;
    piece = data[0] % 17;
    lim = &lims[data[1] & 3];
    max = (data[1] >> 2) & 1 ? 16 : H1R_BODY_MAX;
    body_only = data[1] >> 7;
    in = (const char *)data + 2;
    len = size - 2;
    memset(&whole, 0, sizeof(whole));
    memset(&split, 0, sizeof(split));
    if (body_only) {
        h1r_dechunk(in, len, 0, max, lim, &whole);
        h1r_dechunk(in, len, piece, max, lim, &split);
    } else {
        h1r_head(in, len, 0, lim, &whole);
        h1r_head(in, len, piece, lim, &split);
        FUZZ_CHECK(whole.ev == split.ev && whole.why == split.why);
        if (whole.ev != HTTP1_HEAD)
            return 0;
        FUZZ_CHECK(h1r_same_head(&whole.q, &split.q));
        if (whole.q.framing != HTTP1_BODY_CHUNKED)
            return 0;
        in += whole.q.head_len;
        len -= whole.q.head_len;
        h1r_dechunk(in, len, 0, max, lim, &whole);
        h1r_dechunk(in, len, piece, max, lim, &split);
    }
    FUZZ_CHECK(whole.dev == split.dev && whole.dwhy == split.dwhy);
    if (whole.dev == HTTP1_DONE)
        FUZZ_CHECK(whole.in == split.in && whole.out == split.out &&
                   whole.sum == split.sum);
    return 0;
}
