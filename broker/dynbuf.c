/*
 * Bounded growable buffer (see dynbuf.h).
 */
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

void
dynbuf_free(struct dynbuf *d)
{
    if (d->secret)
        brk_free_secret(d->buf, d->cap);
    else
        brk_free(d->buf);
    d->buf = NULL;
    d->len = d->cap = 0;
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
    if (d->secret) {
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

    if (d->buf == NULL) {
        err = grow(d, 0);
        if (err)
            return err;
        d->buf[0] = '\0';
    }
    *out = d->buf;
    if (len != NULL)
        *len = d->len;
    d->buf = NULL;
    d->len = d->cap = 0;
    return BRK_OK;
}
