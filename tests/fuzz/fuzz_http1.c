/*
 * Fuzz the HTTP/1.1 response parser: the first input byte picks the size
 * of the pieces the rest is fed in (0: whole), the second whether the input
 * then ends (close).
 *
 * Properties: the pieces never change the outcome (end, refusal, status,
 * body, bytes left over); body bytes lie inside the piece given and never
 * outnumber the input; a response complete by Content-Length carries
 * exactly that many bytes; keep-alive only for HTTP/1.1 not delimited by
 * the close; a refusal is final.
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

struct h1_out {
    enum http1_ev end;
    enum http1_why why;
    int status, keep_alive, heads;
    enum http1_framing framing;
    uint64_t length;
    size_t nbody, rest;
    uint32_t sum; /* of the body bytes, in order */
};

static void
h1_run(const char *in, size_t len, size_t piece, int eof, struct h1_out *o)
{
    static struct http1 p;
    size_t off = 0, k, pos, used, dlen, i;
    const char *d;
    enum http1_ev ev = HTTP1_MORE;

    memset(o, 0, sizeof(*o));
    http1_init(&p, NULL);
    if (piece == 0)
        piece = len > 0 ? len : 1;
    while (off < len && ev != HTTP1_DONE && ev != HTTP1_ERROR) {
        k = len - off < piece ? len - off : piece;
        pos = 0;
        for (;;) {
            ev = http1_parse(&p, in + off + pos, k - pos, &used, &d, &dlen);
            FUZZ_CHECK(used <= k - pos);
            pos += used;
            if (ev == HTTP1_HEAD) {
                FUZZ_CHECK(o->heads == 0);
                FUZZ_CHECK(p.status >= 100 && p.status <= 599 &&
                           p.status != 100);
                FUZZ_CHECK(!p.keep_alive ||
                           (p.minor == 1 && p.framing != HTTP1_BODY_CLOSE));
                o->heads++;
                o->status = p.status;
                o->keep_alive = p.keep_alive;
                o->framing = p.framing;
                o->length = p.length;
                continue;
            }
            if (ev == HTTP1_DATA) {
                FUZZ_CHECK(o->heads == 1);
                FUZZ_CHECK(dlen > 0 && d >= in + off &&
                           d + dlen <= in + off + k);
                for (i = 0; i < dlen; i++)
                    o->sum = o->sum * 31 + (unsigned char)d[i];
                o->nbody += dlen;
                continue;
            }
            break;
        }
        if (ev == HTTP1_MORE)
            FUZZ_CHECK(pos == k);
        if (ev == HTTP1_DONE)
            o->rest = len - off - pos;
        off += k;
    }
    if (ev == HTTP1_MORE && eof)
        ev = http1_eof(&p);
    o->end = ev;
    o->why = ev == HTTP1_ERROR ? p.why : HTTP1_OK;
    FUZZ_CHECK(o->nbody <= len);
    if (ev == HTTP1_DONE) {
        FUZZ_CHECK(o->heads == 1);
        if (o->framing == HTTP1_BODY_LENGTH)
            FUZZ_CHECK(o->nbody == o->length);
        if (o->framing == HTTP1_BODY_NONE)
            FUZZ_CHECK(o->nbody == 0);
    }
    if (ev == HTTP1_ERROR) {
        FUZZ_CHECK(o->why != HTTP1_OK);
        FUZZ_CHECK(http1_parse(&p, "x", 1, &used, &d, &dlen) == HTTP1_ERROR);
        FUZZ_CHECK(used == 0);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct h1_out whole, split;
    size_t piece;
    int eof;

    if (size < 2)
        return 0;
    piece = data[0] % 17;
    eof = data[1] & 1;
    data += 2;
    size -= 2;
    h1_run((const char *)data, size, 0, eof, &whole);
    h1_run((const char *)data, size, piece, eof, &split);
    FUZZ_CHECK(whole.end == split.end && whole.why == split.why);
    FUZZ_CHECK(whole.heads == split.heads && whole.status == split.status &&
               whole.keep_alive == split.keep_alive);
    FUZZ_CHECK(whole.nbody == split.nbody && whole.sum == split.sum);
    FUZZ_CHECK(whole.rest == split.rest);
    return 0;
}
