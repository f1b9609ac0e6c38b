/*
 * Query-string parsing (see query.h).
 */
#include <string.h>

#include "codec.h"
#include "query.h"

void
query_free(struct query *q)
{
    size_t i;

    if (q == NULL)
        return;
    for (i = 0; i < q->n; i++) {
        brk_free(q->params[i].name);
        brk_free(q->params[i].value);
    }
    brk_free(q->params);
    brk_free(q);
}

static enum brk_err
decode(const char *s, size_t n, char **out, size_t *outlen)
{
    char *d = brk_malloc(n + 1);
    size_t len;
    enum brk_err err;

    if (d == NULL)
        return BRK_ERR_NOMEM;
    err = codec_pct_decode(s, n, d, &len);
    if (err) {
        brk_free(d);
        return err;
    }
    *out = d;
    if (outlen != NULL)
        *outlen = len;
    return BRK_OK;
}

/*
 * Parse a raw query (see query.h). Returns BRK_OK, BRK_ERR_INVAL,
 * BRK_ERR_TOOBIG or BRK_ERR_NOMEM; *out is written only on success.
 */
enum brk_err
query_parse(const char *raw, size_t max_params, struct query **out)
{
    struct query *q = NULL;
    const char *p, *amp, *eq;
    size_t cap = 0, seglen;
    struct query_param *np;
    enum brk_err err = BRK_OK;

    q = brk_calloc(1, sizeof(*q));
    if (q == NULL)
        return BRK_ERR_NOMEM;
    p = raw ? raw : "";
    while (*p != '\0') {
        amp = strchr(p, '&');
        seglen = amp ? (size_t)(amp - p) : strlen(p);
        if (seglen == 0) { /* "a=1&&b=2": tolerate empty segments */
            p += amp ? 1 : 0;
            if (amp == NULL)
                break;
            continue;
        }
        if (q->n == max_params) {
            err = BRK_ERR_TOOBIG;
            goto fail;
        }
        if (q->n == cap) {
            cap = cap ? cap * 2 : 8;
            np = brk_realloc(q->params, cap * sizeof(*np));
            if (np == NULL) {
                err = BRK_ERR_NOMEM;
                goto fail;
            }
            q->params = np;
        }
        eq = memchr(p, '=', seglen);
        np = &q->params[q->n];
        memset(np, 0, sizeof(*np));
        err = decode(p, eq ? (size_t)(eq - p) : seglen, &np->name, NULL);
        if (err)
            goto fail;
        err = eq ? decode(eq + 1, seglen - (size_t)(eq - p) - 1, &np->value,
                          &np->value_len)
                 : decode("", 0, &np->value, &np->value_len);
        if (err) {
            brk_free(np->name);
            goto fail;
        }
        q->n++;
        if (amp == NULL)
            break;
        p = amp + 1;
    }
    *out = q;
    return BRK_OK;
fail:
    query_free(q);
    return err;
}

const char *
query_get(const struct query *q, const char *name)
{
    size_t i;

    for (i = 0; i < q->n; i++)
        if (strcmp(q->params[i].name, name) == 0)
            return q->params[i].value;
    return NULL;
}

size_t
query_count(const struct query *q, const char *name)
{
    size_t i, c = 0;

    for (i = 0; i < q->n; i++)
        if (strcmp(q->params[i].name, name) == 0)
            c++;
    return c;
}
