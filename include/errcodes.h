/*
 * The WeCom errcodes the broker answers with, named: one table of (errcode,
 * HTTP status, WeCom's errmsg) for every reply the broker builds itself
 * and for brokerctl explain. errcode -1 appears several times: the HTTP
 * status says which failure it was (SPEC §5, the error table). Pure.
 */
#ifndef ERRCODES_H
#define ERRCODES_H

#include <stddef.h>

#include "broker.h"

enum errcode {
    ERRCODE_OK,                /* 0, 200 */
    ERRCODE_UNAVAILABLE,       /* -1, 503: the store or the broker itself */
    ERRCODE_BAD_GATEWAY,       /* -1, 502: WeCom unreachable or unusable */
    ERRCODE_GATEWAY_TIMEOUT,   /* -1, 504: WeCom timed out */
    ERRCODE_INVALID_SECRET,    /* 40001: gettoken's corpsecret */
    ERRCODE_INVALID_CORPID,    /* 40013 */
    ERRCODE_INVALID_TOKEN,     /* 40014: unknown or revoked broker token */
    ERRCODE_INVALID_CODE,      /* 40029: OAuth code */
    ERRCODE_INVALID_PARAMETER, /* 40035 */
    ERRCODE_INVALID_VALUE,     /* 40058: a write body's bad value (§5b) */
    ERRCODE_TOKEN_MISSING,     /* 41001 */
    ERRCODE_WELCOME_INVALID,   /* 41050: WelcomeCode invalid or expired */
    ERRCODE_WELCOME_USED,      /* 41051: WelcomeCode already used */
    ERRCODE_TOKEN_EXPIRED,     /* 42001 */
    ERRCODE_FREQ_LIMIT,        /* 45009 */
    ERRCODE_CONCURRENT_LIMIT,  /* 45033 */
    ERRCODE_API_FORBIDDEN,     /* 48002: undeclared path, grant lacks scope */
    ERRCODE_NOT_AUTHORIZED,    /* 48004: tenant not active, corp not allowed */
    ERRCODE_OUT_OF_RANGE,      /* 60011: subject outside the visible range */
    ERRCODE_TICKET_EXPIRED,    /* 84014 */
    ERRCODE_INVALID_TICKET,    /* 84015 */
    ERRCODE_IDEMPOTENCY_CONFLICT, /* -1, 409: a key reused with another
                                     body (§5b) */
    ERRCODE__COUNT
};

/*
 * Errcodes WeCom answers with that the broker acts on (wecom-protocol.md
 * §9), named so that each rule reads as what it means. Not replies of the
 * broker's own: those are enum errcode above.
 */
enum wecom_errcode {
    WECOM_ERR_BUSY = -1,                 /* system busy: retry */
    WECOM_ERR_INVALID_SECRET = 40001,    /* corp token: secret mismatch */
    WECOM_ERR_INVALID_TOKEN = 40014,     /* access_token invalid */
    WECOM_ERR_INVALID_TAGID = 40068,     /* tag gone */
    WECOM_ERR_INVALID_AUTH_CODE = 40078, /* AuthCode used or made up */
    WECOM_ERR_INVALID_SUITE_TOKEN = 40082,
    WECOM_ERR_TOKEN_EXPIRED = 42001,
    WECOM_ERR_SUITE_TOKEN_EXPIRED = 42009,
    WECOM_ERR_FREQ_LIMIT = 45009,       /* over a minute or hour budget */
    WECOM_ERR_CONCURRENT_LIMIT = 45033, /* too many calls at once */
    WECOM_ERR_DEPT_NOT_FOUND = 60003,
    WECOM_ERR_NO_PRIVILEGE = 60011, /* outside the visible range */
    WECOM_ERR_USER_NOT_FOUND = 60111,
    WECOM_ERR_DEPT_NOT_FOUND_ID = 60123, /* the same, for an id */
};

/* Nonzero when WeCom refused a suite token (40082, 42009): forget it and
 * fetch another. */
int errcodes_suite_token_refused(long code);

/* The errcode WeCom's JSON carries (0, -1, 40014, ...). */
long errcodes_code(enum errcode e);
/* The HTTP status the reply is sent with. */
int errcodes_http(enum errcode e);
/* WeCom's errmsg for the code (static): the reply's errmsg when the
 * broker has nothing more precise to say. */
const char *errcodes_msg(enum errcode e);

/*
 * {"errcode":CODE,"errmsg":MSG} into buf (len bytes), MSG JSON-escaped.
 * code is errcodes_code(e), or WeCom's own for a relayed error. Returns
 * BRK_OK, BRK_ERR_INVAL when msg is NULL or not UTF-8 (or memory failed
 * while copying it: jansson does not say which), BRK_ERR_TOOBIG when buf
 * is too small, BRK_ERR_NOMEM; buf is written only on success.
 */
enum brk_err errcodes_body(long code, const char *msg, char *buf,
                           size_t len) BRK_WUR;

#endif /* ERRCODES_H */
