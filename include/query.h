/*
 * URL query strings, percent-decoded only: '+' stays '+' (WeCom's base64
 * echostr carries literal '+' that form decoding would turn into spaces).
 */
#ifndef QUERY_H
#define QUERY_H

#include <stddef.h>

#include "broker.h"

struct query_param {
    char *name;
    char *value;
    size_t value_len;
};

struct query {
    struct query_param *params;
    size_t n;
};

/*
 * Split raw (may be NULL or empty) on '&' and decode names and values.
 * Returns BRK_ERR_INVAL for a malformed escape or a decoded NUL,
 * BRK_ERR_TOOBIG for more than max_params parameters. Owned: query_free.
 */
enum brk_err query_parse(const char *raw, size_t max_params,
                         struct query **out) BRK_WUR;
void query_free(struct query *q);
/* Value of the first parameter called name, or NULL. Borrowed. */
const char *query_get(const struct query *q, const char *name);
/* How many times name appears. */
size_t query_count(const struct query *q, const char *name);

#endif /* QUERY_H */
