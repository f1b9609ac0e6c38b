/*
 * Every Lua script the broker and brokerctl run against Redis, named by
 * what it does. Each script's KEYS, ARGV and reply are stated with its
 * text in scripts.c. The daemon loads them when its connection comes up
 * and runs them by digest (store.c); brokerctl simply EVALs the text.
 */
#ifndef SCRIPTS_H
#define SCRIPTS_H

#include <stddef.h>

#include "broker.h"

/* The length of a script's digest in hex, without the NUL. */
#define SCRIPTS_SHA1_HEX 40

enum script_id {
    SCRIPT_EVQ_PUSH,
    SCRIPT_EVQ_HANDOVER,
    SCRIPT_EVQ_CLAIM,
    SCRIPT_EVQ_RECLAIM,
    SCRIPT_EVQ_REFRESH,
    SCRIPT_EVQ_RELEASE,
    SCRIPT_EVQ_BACKOFF,
    SCRIPT_EVQ_TENANT_ACK,
    SCRIPT_EVQ_TENANT_DEAD,
    SCRIPT_STREAM_ACK,
    SCRIPT_STREAM_DEAD,
    SCRIPT_SUITE_TICKET_STORE,
    SCRIPT_ACCESS_TOKEN_STORE,
    SCRIPT_TOKEN_LOCK_RELEASE,
    SCRIPT_ACCESS_TOKEN_REJECT,
    SCRIPT_BUDGET_LEASE,
    SCRIPT_BUDGET_PAUSE,
    SCRIPT_DIRECTORY_ACTIVATE,
    SCRIPT_TENANT_REINSTALL_MARK,
    SCRIPT_TENANT_STATE_READ,
    SCRIPT_TENANT_INSTALL,
    SCRIPT_TENANT_LOST_COUNT,
    SCRIPT_CONTACT_APPLY,
    SCRIPT_TENANT_ADMINS_STORE,
    SCRIPT_PURGE_MARK_GONE,
    SCRIPT_PURGE_BROKER_TOKENS,
    SCRIPT_PURGE_REPORT,
    SCRIPT_SERVICE_TOKEN_MINT,
    SCRIPT_OAUTH_CODE_TAKE,
    SCRIPT_MEMBER_TICKET_READ,
    SCRIPT_BROWSER_STATE_SAVE,
    SCRIPT_BROWSER_STATE_TAKE,
    SCRIPT_AUTHCODE_ENQUEUE,
    SCRIPT_MEMBER_LOGIN_STORE,
    SCRIPT_KEY_SWAP,
    SCRIPT_SERVICE_ADD,
    SCRIPT_SERVICE_END,
    SCRIPT_TENANT_EXISTS,
    SCRIPT_DLV_SET,
    SCRIPT_DLV_READ,
    SCRIPT_DLV_PUSH,
    SCRIPT_DLV_HEAD,
    SCRIPT_DLV_RELEASE,
    SCRIPT_DLV_DEAD,
    SCRIPT_DLV_RETRY,
    SCRIPT_DLV_PURGE,
    SCRIPT_CUSTIDX_ADD,
    SCRIPT_CUSTIDX_DEL,
    SCRIPT_WELCOME_RECORD,
    SCRIPT_WELCOME_TAKE,
    SCRIPT_IDEM_BEGIN,
    SCRIPT_IDEM_FINISH,
    SCRIPT_WRITE_RATE,
    SCRIPT_COUNT
};

/* The script's text (static storage); NULL for an id out of range. */
const char *scripts_text(enum script_id id);
/* The script's name, lower case ("evq_push"); NULL out of range. */
const char *scripts_name(enum script_id id);
/*
 * The SHA-1 of text[0..len) in lower-case hex, as Redis names a loaded
 * script: out gets SCRIPTS_SHA1_HEX digits and a NUL. Returns BRK_ERR_CRYPTO
 * when the digest is unavailable, BRK_OK else.
 */
enum brk_err scripts_sha1(const char *text, size_t len,
                          char out[SCRIPTS_SHA1_HEX + 1]) BRK_WUR;

#endif /* SCRIPTS_H */
