/*
 * Fuzz the JSON tokenizer, and hold it against yajl (the parser the filter
 * used before it) on the same bytes. The first input byte seeds the sizes
 * of the pieces the rest is fed in; the rest is the document.
 *
 * Properties:
 * - fed whole and fed in pieces, the tokens, their text and the result are
 *   the same, and so they are on one tokenizer reused from input to input
 *   (jsontok_reset), left done, failed or half-way through by the last;
 * - a number is JSONTOK_REAL exactly when it has '.', 'e' or 'E';
 * - what the tokenizer accepts, yajl accepts, with the same events
 *   (strings decoded alike, numbers as written);
 * - what yajl accepts, the tokenizer accepts too, with the same events,
 *   except where it is stricter on purpose: a vertical tab or form feed
 *   as whitespace, a surrogate escape without its other half (yajl makes
 *   it '?' or pairs it with anything), a number at the very end of the
 *   document (the top level a bare number), nesting over JTK_DEPTH, an
 *   unfinished string after the top-level value (yajl waits for its end,
 *   then forgets it); even then its events are the first of yajl's;
 * - when both refuse, one's events are the first of the other's.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "broker.h"
#include "jsontok.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define JTK_DEPTH     64
#define JTK_MAX_TOKEN 4096

/* Events as bytes: a tag, then for text its length (4 bytes) and bytes. */
struct jtk_log {
    unsigned char *p;
    size_t len, cap;
    size_t depth, max_depth;
    int scalar_root; /* the first event was a scalar */
    int closed;      /* the top-level container was closed */
};

static void
jtk_put(struct jtk_log *l, const void *s, size_t n)
{
    unsigned char *np;
    size_t ncap;

    if (n > l->cap - l->len) {
        ncap = l->cap ? l->cap : 1024;
        while (ncap - l->len < n)
            ncap *= 2;
        np = realloc(l->p, ncap);
        if (np == NULL)
            abort();
        l->p = np;
        l->cap = ncap;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

/* Tags: n null, t true, f false, # number, s string, k key, { } [ ] */
static void
jtk_ev(struct jtk_log *l, char tag, const char *s, size_t n)
{
    uint32_t n32 = (uint32_t)n;

    if (l->len == 0 && tag != '{' && tag != '[')
        l->scalar_root = 1;
    if (tag == '{' || tag == '[') {
        if (++l->depth > l->max_depth)
            l->max_depth = l->depth;
    } else if (tag == '}' || tag == ']') {
        if (--l->depth == 0)
            l->closed = 1;
    }
    jtk_put(l, &tag, 1);
    if (s != NULL) {
        jtk_put(l, &n32, sizeof(n32));
        jtk_put(l, s, n);
    }
}

/* yajl's side */
static int
jtk_y_null(void *c)
{
    jtk_ev(c, 'n', NULL, 0);
    return 1;
}

static int
jtk_y_bool(void *c, int v)
{
    jtk_ev(c, v ? 't' : 'f', NULL, 0);
    return 1;
}

static int
jtk_y_number(void *c, const char *s, size_t n)
{
    jtk_ev(c, '#', s, n);
    return 1;
}

static int
jtk_y_string(void *c, const unsigned char *s, size_t n)
{
    jtk_ev(c, 's', (const char *)s, n);
    return 1;
}

static int
jtk_y_key(void *c, const unsigned char *s, size_t n)
{
    jtk_ev(c, 'k', (const char *)s, n);
    return 1;
}

static int
jtk_y_smap(void *c)
{
    jtk_ev(c, '{', NULL, 0);
    return 1;
}

static int
jtk_y_emap(void *c)
{
    jtk_ev(c, '}', NULL, 0);
    return 1;
}

static int
jtk_y_sarr(void *c)
{
    jtk_ev(c, '[', NULL, 0);
    return 1;
}

static int
jtk_y_earr(void *c)
{
    jtk_ev(c, ']', NULL, 0);
    return 1;
}

static const yajl_callbacks jtk_ycb = {
    jtk_y_null, jtk_y_bool, NULL,       NULL,       jtk_y_number, jtk_y_string,
    jtk_y_smap, jtk_y_key,  jtk_y_emap, jtk_y_sarr, jtk_y_earr,
};

/* 1 when yajl accepts the document */
static int
jtk_yajl(const uint8_t *doc, size_t n, struct jtk_log *l)
{
    yajl_handle h = yajl_alloc(&jtk_ycb, NULL, l);
    yajl_status st;

    if (h == NULL)
        abort();
    yajl_config(h, yajl_dont_validate_strings, 1);
    st = yajl_parse(h, doc, n);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    yajl_free(h);
    return st == yajl_status_ok;
}

/* The tokenizer reused from input to input. */
static struct jsontok *jtk_reused;

/* The tokenizer's side, in pieces from the seed (0: whole); its result.
 * On reuse (not NULL) that tokenizer is reset and left as it ends. */
static enum brk_err
jtk_run(struct jsontok *reuse, const uint8_t *doc, size_t n, unsigned seed,
        struct jtk_log *l)
{
    struct jsontok *t = reuse;
    enum jsontok_type tt;
    enum brk_err err;
    const char *s;
    size_t off = 0, piece, len, i;
    uint32_t rng = 2654435761u * (seed + 1);
    int real;

    if (reuse != NULL)
        jsontok_reset(t);
    else if (jsontok_new(JTK_DEPTH, JTK_MAX_TOKEN, &t) != BRK_OK)
        abort();
    do {
        piece = n - off;
        if (seed != 0) {
            rng = rng * 1103515245u + 12345u;
            piece = (rng >> 16) % 17;
            if (piece > n - off)
                piece = n - off;
        }
        jsontok_input(t, (const char *)doc + off, piece);
        off += piece;
        while ((tt = jsontok_next(t, &s, &len)) > JSONTOK_MORE) {
            switch (tt) {
            case JSONTOK_NULL:
                jtk_ev(l, 'n', NULL, 0);
                break;
            case JSONTOK_TRUE:
                jtk_ev(l, 't', NULL, 0);
                break;
            case JSONTOK_FALSE:
                jtk_ev(l, 'f', NULL, 0);
                break;
            case JSONTOK_INTEGER:
            case JSONTOK_REAL:
                real = 0;
                for (i = 0; i < len; i++)
                    if (s[i] == '.' || s[i] == 'e' || s[i] == 'E')
                        real = 1;
                FUZZ_CHECK(real == (tt == JSONTOK_REAL));
                FUZZ_CHECK(len <= JTK_MAX_TOKEN);
                jtk_ev(l, '#', s, len);
                break;
            case JSONTOK_STRING:
                jtk_ev(l, 's', s, len);
                break;
            case JSONTOK_KEY:
                jtk_ev(l, 'k', s, len);
                break;
            case JSONTOK_OBJ_START:
                jtk_ev(l, '{', NULL, 0);
                break;
            case JSONTOK_OBJ_END:
                jtk_ev(l, '}', NULL, 0);
                break;
            case JSONTOK_ARR_START:
                jtk_ev(l, '[', NULL, 0);
                break;
            case JSONTOK_ARR_END:
                jtk_ev(l, ']', NULL, 0);
                break;
            default:
                FUZZ_CHECK(0);
            }
        }
        if (tt == JSONTOK_ERROR)
            break;
        FUZZ_CHECK(jsontok_error(t) == BRK_OK);
    } while (off < n);
    if (tt == JSONTOK_ERROR) {
        err = jsontok_error(t);
        FUZZ_CHECK(err == BRK_ERR_UPSTREAM_BAD || err == BRK_ERR_TOOBIG);
        /* an error is final */
        FUZZ_CHECK(jsontok_next(t, &s, &len) == JSONTOK_ERROR);
        FUZZ_CHECK(jsontok_finish(t) == err);
    } else {
        err = jsontok_finish(t);
        FUZZ_CHECK(err == BRK_OK || err == BRK_ERR_UPSTREAM_BAD);
        FUZZ_CHECK((err == BRK_OK) == jsontok_done(t));
    }
    if (reuse == NULL)
        jsontok_free(t);
    return err;
}

static int
jtk_prefix(const struct jtk_log *a, const struct jtk_log *b)
{
    return a->len <= b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* Where the tokenizer is stricter than yajl on purpose (see the top). */
static int
jtk_stricter(const uint8_t *doc, size_t n, const struct jtk_log *y,
             const struct jtk_log *mine)
{
    size_t i;

    if (y->scalar_root || y->max_depth > JTK_DEPTH)
        return 1;
    /* yajl waits for the end of a string after the top-level value, and
     * finishing forgets it */
    if (mine->closed)
        return 1;
    for (i = 0; i < n; i++) {
        if (doc[i] == '\v' || doc[i] == '\f')
            return 1;
        if (doc[i] == '\\' && n - i >= 4 && doc[i + 1] == 'u' &&
            (doc[i + 2] | 0x20) == 'd' && doc[i + 3] >= '8')
            return 1;
    }
    return 0;
}

static int
jtk_long_token(const struct jtk_log *y)
{
    size_t i = 0;
    uint32_t n;

    while (i < y->len) {
        if (y->p[i] == '#' || y->p[i] == 's' || y->p[i] == 'k') {
            memcpy(&n, y->p + i + 1, 4);
            /* decoded no longer than written: a long one may be cut */
            if (n > JTK_MAX_TOKEN / 6)
                return 1;
            i += 5 + n;
        } else {
            i++;
        }
    }
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct jtk_log whole = {0}, split = {0}, y = {0};
    enum brk_err e1, e2;
    unsigned seed;
    int yok;

    if (size < 1)
        return 0;
    seed = data[0];
    data++;
    size--;
    e1 = jtk_run(NULL, data, size, 0, &whole);
    e2 = jtk_run(NULL, data, size, seed | 1u, &split);
    FUZZ_CHECK(e1 == e2);
    FUZZ_CHECK(whole.len == split.len && jtk_prefix(&whole, &split));
    if (jtk_reused != NULL ||
        jsontok_new(JTK_DEPTH, JTK_MAX_TOKEN, &jtk_reused) == BRK_OK) {
        struct jtk_log again = {0};
        const char *s;
        size_t len;

        e2 = jtk_run(jtk_reused, data, size, seed | 1u, &again);
        FUZZ_CHECK(e1 == e2);
        FUZZ_CHECK(whole.len == again.len && jtk_prefix(&whole, &again));
        free(again.p);
        /* now and then left half-way through for the next input */
        if (seed & 2) {
            jsontok_reset(jtk_reused);
            jsontok_input(jtk_reused, (const char *)data, size / 2);
            while (jsontok_next(jtk_reused, &s, &len) > JSONTOK_MORE)
                ;
        }
    }
    yok = jtk_yajl(data, size, &y);
    if (e1 == BRK_OK) {
        FUZZ_CHECK(yok);
        FUZZ_CHECK(whole.len == y.len && jtk_prefix(&whole, &y));
    } else if (yok) {
        FUZZ_CHECK(jtk_stricter(data, size, &y, &whole) ||
                   (e1 == BRK_ERR_TOOBIG && jtk_long_token(&y)));
        FUZZ_CHECK(jtk_prefix(&whole, &y));
    } else if (e1 == BRK_ERR_UPSTREAM_BAD) {
        FUZZ_CHECK(jtk_prefix(&whole, &y) || jtk_prefix(&y, &whole));
    }
    free(whole.p);
    free(split.p);
    free(y.p);
    return 0;
}
