/*
 * The WeCom errcodes the broker answers with: the one table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "errcodes.h"

struct row {
    long code;
    int http;
    const char *msg;
};

/* Indexed by enum errcode; errmsgs as WeCom writes them. */
static const struct row rows[] = {
    [ERRCODE_OK] = {0, 200, "ok"},
    [ERRCODE_UNAVAILABLE] = {-1, 503, "system busy"},
    [ERRCODE_BAD_GATEWAY] = {-1, 502, "system busy"},
    [ERRCODE_GATEWAY_TIMEOUT] = {-1, 504, "system busy"},
    [ERRCODE_INVALID_SECRET] = {40001, 200, "invalid credential"},
    [ERRCODE_INVALID_CORPID] = {40013, 200, "invalid corpid"},
    [ERRCODE_INVALID_TOKEN] = {40014, 200, "invalid access_token"},
    [ERRCODE_INVALID_CODE] = {40029, 200, "invalid code"},
    [ERRCODE_INVALID_PARAMETER] = {40035, 200, "invalid parameter"},
    [ERRCODE_INVALID_VALUE] = {40058, 200, "invalid parameter"},
    [ERRCODE_TOKEN_MISSING] = {41001, 200, "access_token missing"},
    [ERRCODE_WELCOME_INVALID] = {41050, 200, "invalid welcome_code"},
    [ERRCODE_WELCOME_USED] = {41051, 200, "welcome_code already used"},
    [ERRCODE_TOKEN_EXPIRED] = {42001, 200, "access_token expired"},
    [ERRCODE_FREQ_LIMIT] = {45009, 200, "api freq out of limit"},
    [ERRCODE_CONCURRENT_LIMIT] = {45033, 200, "api concurrent out of limit"},
    [ERRCODE_API_FORBIDDEN] = {48002, 200, "api forbidden"},
    [ERRCODE_NOT_AUTHORIZED] = {48004, 200, "authorization relation invalid"},
    [ERRCODE_OUT_OF_RANGE] = {60011, 200,
                              "no privilege to access/modify "
                              "contact/party/agent"},
    [ERRCODE_TICKET_EXPIRED] = {84014, 200, "user_ticket expired"},
    [ERRCODE_INVALID_TICKET] = {84015, 200, "invalid user_ticket"},
    [ERRCODE_IDEMPOTENCY_CONFLICT] = {-1, 409,
                                      "idempotency key reused with "
                                      "another body"},
};

_Static_assert(nitems(rows) == ERRCODE__COUNT, "one row per errcode");

/* An out-of-range e reads as the store failing: never as success. */
static const struct row *
row_of(enum errcode e)
{
    if ((unsigned)e >= nitems(rows))
        return &rows[ERRCODE_UNAVAILABLE];
    return &rows[e];
}

long
errcodes_code(enum errcode e)
{
    return row_of(e)->code;
}

int
errcodes_http(enum errcode e)
{
    return row_of(e)->http;
}

const char *
errcodes_msg(enum errcode e)
{
    return row_of(e)->msg;
}

enum brk_err
errcodes_body(long code, const char *msg, char *buf, size_t len)
{
    enum brk_err err = BRK_ERR_NOMEM;
    json_t *s = NULL;
    char *esc = NULL;
    int n;

    s = msg != NULL ? json_string(msg) : NULL;
    if (s == NULL) {
        /* jansson fails alike for text that is not UTF-8 and for memory */
        err = BRK_ERR_INVAL;
        goto out;
    }
    esc = json_dumps(s, JSON_ENCODE_ANY);
    if (esc == NULL)
        goto out;
    n = snprintf(NULL, 0, "{\"errcode\":%ld,\"errmsg\":%s}", code, esc);
    if (n < 0 || (size_t)n >= len) {
        err = BRK_ERR_TOOBIG;
        goto out;
    }
    snprintf(buf, len, "{\"errcode\":%ld,\"errmsg\":%s}", code, esc);
    err = BRK_OK;
out:
    free(esc); /* from jansson */
    json_decref(s);
    return err;
}

int
errcodes_suite_token_refused(long code)
{
    return code == WECOM_ERR_INVALID_SUITE_TOKEN ||
           code == WECOM_ERR_SUITE_TOKEN_EXPIRED;
}
