/*
 * Query-string parsing (see query.h).
 */
#include <string.h>

#include "codec.h"
#include "query.h"

/* The query, its parameters and their decoded text are one block. */
void
query_free(struct query *q)
{
    brk_free(q);
}

/* How many non-empty '&'-separated segments raw has, up to limit + 1. */
static size_t
count_params(const char *raw, size_t limit)
{
    const char *p = raw;
    size_t n = 0;

    while (*p != '\0' && n <= limit) {
        size_t seglen = strcspn(p, "&");

        n += seglen > 0;
        p += seglen;
        if (*p == '&')
            p++;
    }
    return n;
}

/*
 * Parse a raw query (see query.h) into one allocation: the struct, the
 * parameter array, then every name and value decoded after it (decoding
 * never lengthens text, so the raw length plus two NULs a parameter is
 * room enough). Returns BRK_OK, BRK_ERR_INVAL, BRK_ERR_TOOBIG or
 * BRK_ERR_NOMEM; *out is written only on success.
 */
enum brk_err
query_parse(const char *raw, size_t max_params, struct query **out)
{
    struct query *q;
    struct query_param *np;
    const char *p = raw ? raw : "", *eq;
    size_t n = count_params(p, max_params), rawlen = strlen(p), seglen, len;
    char *text;
    enum brk_err err;

    if (n > max_params)
        return BRK_ERR_TOOBIG;
    q = brk_malloc(sizeof(*q) + n * sizeof(*np) + rawlen + 2 * n + 1);
    if (q == NULL)
        return BRK_ERR_NOMEM;
    q->params = (struct query_param *)(q + 1);
    q->n = 0;
    text = (char *)(q->params + n);
    while (*p != '\0') {
        seglen = strcspn(p, "&");
        if (seglen > 0) {
            eq = memchr(p, '=', seglen);
            np = &q->params[q->n];
            np->name = text;
            err =
                codec_pct_decode(p, eq ? (size_t)(eq - p) : seglen, text, &len);
            if (err)
                goto fail;
            text += len + 1;
            np->value = text;
            np->value_len = 0;
            if (eq != NULL) {
                err = codec_pct_decode(eq + 1, seglen - (size_t)(eq - p) - 1,
                                       text, &np->value_len);
                if (err)
                    goto fail;
            } else {
                text[0] = '\0';
            }
            text += np->value_len + 1;
            q->n++;
        }
        p += seglen;
        if (*p == '&')
            p++;
    }
    *out = q;
    return BRK_OK;
fail:
    brk_free(q);
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
