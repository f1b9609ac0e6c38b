/*
 * Bounded growable buffer (see dynbuf.h).
 */
#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dynbuf.h"

void
dynbuf_init(struct dynbuf *d, size_t limit)
{
    memset(d, 0, sizeof(*d));
    /* keeps limit + 1 and the capacity doubling in grow() from wrapping */
    d->limit = limit < SIZE_MAX / 2 ? limit : SIZE_MAX / 2;
}

void
dynbuf_init_secret(struct dynbuf *d, size_t limit)
{
    dynbuf_init(d, limit);
    d->secret = 1;
}

/* Back to the first storage (inline buffers) or to none, empty. */
static void
restart(struct dynbuf *d)
{
    d->buf = d->first;
    d->cap = d->first != NULL ? d->first_cap : 0;
    d->len = 0;
    if (d->buf != NULL)
        d->buf[0] = '\0';
}

void
dynbuf_init_inline(struct dynbuf *d, char *first, size_t first_cap,
                   size_t limit)
{
    assert(first != NULL && first_cap > 0);
    dynbuf_init(d, limit);
    d->first = first;
    d->first_cap = first_cap;
    restart(d);
}

void
dynbuf_init_inline_secret(struct dynbuf *d, char *first, size_t first_cap,
                          size_t limit)
{
    dynbuf_init_inline(d, first, first_cap, limit);
    d->secret = 1;
}

void
dynbuf_free(struct dynbuf *d)
{
    if (d->buf == d->first) {
        /* never freed: only the bytes go, when secret */
        if (d->secret)
            brk_wipe(d->buf, d->cap);
    } else if (d->secret) {
        brk_free_secret(d->buf, d->cap);
    } else {
        brk_free(d->buf);
    }
    restart(d);
}

void
dynbuf_reset(struct dynbuf *d)
{
    if (d->buf != NULL) {
        if (d->secret)
            brk_wipe(d->buf, d->len);
        d->buf[0] = '\0';
    }
    d->len = 0;
}

static enum brk_err
grow(struct dynbuf *d, size_t need)
{
    size_t ncap;
    char *nb;

    if (need > d->limit) {
        dynbuf_free(d);
        return BRK_ERR_TOOBIG;
    }
    if (need + 1 <= d->cap)
        return BRK_OK;
    ncap = d->cap ? d->cap : 64;
    while (ncap < need + 1)
        ncap *= 2;
    if (ncap > d->limit + 1)
        ncap = d->limit + 1;
    if (d->buf != NULL && d->buf == d->first) {
        /* leaving the first storage: copied, never freed */
        nb = brk_malloc(ncap);
        if (nb != NULL) {
            memcpy(nb, d->buf, d->len + 1);
            if (d->secret)
                brk_wipe(d->buf, d->cap);
        }
    } else if (d->secret) {
        /* realloc could leave a copy of the secret behind: move by hand */
        nb = brk_malloc(ncap);
        if (nb != NULL && d->buf != NULL)
            memcpy(nb, d->buf, d->len + 1);
        if (nb != NULL)
            brk_free_secret(d->buf, d->cap);
    } else {
        nb = brk_realloc(d->buf, ncap);
    }
    if (nb == NULL) {
        dynbuf_free(d);
        return BRK_ERR_NOMEM;
    }
    d->buf = nb;
    d->cap = ncap;
    return BRK_OK;
}

enum brk_err
dynbuf_add(struct dynbuf *d, const void *p, size_t n)
{
    enum brk_err err;

    if (n > d->limit || d->len > d->limit - n) {
        dynbuf_free(d);
        return BRK_ERR_TOOBIG;
    }
    err = grow(d, d->len + n);
    if (err)
        return err;
    if (n > 0)
        memcpy(d->buf + d->len, p, n);
    d->len += n;
    d->buf[d->len] = '\0';
    return BRK_OK;
}

enum brk_err
dynbuf_reserve(struct dynbuf *d, size_t n)
{
    if (n > d->limit || d->len > d->limit - n) {
        dynbuf_free(d);
        return BRK_ERR_TOOBIG;
    }
    return grow(d, d->len + n);
}

enum brk_err
dynbuf_add_str(struct dynbuf *d, const char *s)
{
    return dynbuf_add(d, s, strlen(s));
}

enum brk_err
dynbuf_printf(struct dynbuf *d, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    char *big = NULL;
    int n;
    enum brk_err err;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        dynbuf_free(d);
        return BRK_ERR_INVAL;
    }
    if ((size_t)n < sizeof(small)) {
        err = dynbuf_add(d, small, (size_t)n);
        if (d->secret)
            brk_wipe(small, sizeof(small));
        return err;
    }
    big = brk_malloc((size_t)n + 1);
    if (big == NULL) {
        dynbuf_free(d);
        return BRK_ERR_NOMEM;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    err = dynbuf_add(d, big, (size_t)n);
    if (d->secret)
        brk_wipe(big, (size_t)n);
    brk_free(big);
    return err;
}

enum brk_err
dynbuf_take(struct dynbuf *d, char **out, size_t *len)
{
    enum brk_err err;
    char *p;

    if (d->buf == NULL) {
        err = grow(d, 0);
        if (err)
            return err;
        d->buf[0] = '\0';
    }
    if (d->buf == d->first) {
        /* the caller's storage stays with the caller: a copy goes out */
        p = brk_malloc(d->len + 1);
        if (p == NULL) {
            dynbuf_free(d);
            return BRK_ERR_NOMEM;
        }
        memcpy(p, d->buf, d->len + 1);
    } else {
        p = d->buf;
        d->buf = NULL;
    }
    *out = p;
    if (len != NULL)
        *len = d->len;
    if (d->buf != NULL && d->secret)
        brk_wipe(d->buf, d->len);
    restart(d);
    return BRK_OK;
}
