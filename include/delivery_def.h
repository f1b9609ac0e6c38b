/*
 * Event delivery to services (SPEC §6b): what a delivery setting may hold
 * and the Redis names of its queues. Pure: no I/O. Used by the daemon
 * (delivery.c, record.c) and by brokerctl alike.
 *
 * A service's delivery lives under the service's own hash tag, so every
 * script touches one slot:
 *   <prefix>svc:{<id>}:dlv               hash: the setting (record.c)
 *   <prefix>svc:{<id>}:dk                the service's data key (wrapped
 *                                        for "service:<id>"): seals the
 *                                        callback token and key
 *   <prefix>svc:{<id>}:dq:<suite>:<corp>   stream, one (service, tenant)
 *                                        queue, in order
 *   <prefix>svc:{<id>}:dqa:<suite>:<corp>  hash entry id -> failed attempts
 *                                        and "p:<entry id>" -> ack ms: a
 *                                        WelcomeCode sent ahead of the queue
 *   <prefix>svc:{<id>}:dd:<suite>:<corp>   stream of dead letters
 *   <prefix>svc:{<id>}:dready            zset "<suite>:<corp>" -> ms after
 *                                        which it may be sent (while
 *                                        leased: when the lease ends)
 *   <prefix>svc:{<id>}:dlease            hash member -> the instance
 *   <prefix>svc:{<id>}:dseq              hash member -> entries queued
 *   <prefix>svc:{<id>}:dtenants          set of members with a queue or
 *                                        dead letters
 *   <prefix>svc:{<id>}:dseen:<event id>  marker: queued once per event
 */
#ifndef DELIVERY_DEF_H
#define DELIVERY_DEF_H

#include <stddef.h>

#include "broker.h"
#include "keys.h"

/* Longest receiver URL. */
#define DELIVERY_URL_MAX 2048
/* Callback token: WeCom's console allows up to 32 letters and digits. */
#define DELIVERY_TOKEN_LEN 32
/* EncodingAESKey: 43 of [A-Za-z0-9]. */
#define DELIVERY_AES_KEY_LEN 43
/* Longest stored --events list. */
#define DELIVERY_EVENTS_MAX 1024
/* An event id: 32 lower-case hex digits. */
#define DELIVERY_EVENT_ID_LEN 32
/* "<suite>:<corp>": the member naming one tenant in a service's queues. */
#define DELIVERY_MEMBER_MAX 130

/*
 * Nonzero when url may receive events: http:// or https://, a host, at
 * most DELIVERY_URL_MAX bytes of printable ASCII, no userinfo (no
 * credentials in a URL that is shown and logged), no fragment, no
 * backslash.
 */
int delivery_url_ok(const char *url);

/*
 * Check an --events list: comma-separated InfoType or InfoType/ChangeType
 * of the events the broker knows (delivery_info_types), each once, at most
 * DELIVERY_EVENTS_MAX - 1 bytes. BRK_OK or BRK_ERR_INVAL.
 */
enum brk_err delivery_events_check(const char *list) BRK_WUR;

/* Nonzero when list ("" = every event) takes (info_type, change_type);
 * change_type may be NULL or "". */
int delivery_events_match(const char *list, const char *info_type,
                          const char *change_type);

/* Nonzero for an InfoType the broker can deliver (any ChangeType NULL), or
 * a known ChangeType of it. */
int delivery_event_known(const char *info_type, const char *change_type);

/* Nonzero for the lifecycle notices (create_auth, change_auth,
 * cancel_auth), which carry no personal data. */
int delivery_is_lifecycle(const char *info_type);

/* len random characters of [A-Za-z0-9] and a NUL into out (len + 1
 * bytes), uniformly. BRK_ERR_CRYPTO when the generator fails. */
enum brk_err delivery_random_alnum(char *out, size_t len) BRK_WUR;

/* A fresh EncodingAESKey into out (DELIVERY_AES_KEY_LEN + 1 bytes): 43
 * of [A-Za-z0-9], the last one with no stray bits, so that every base64
 * decoder reads the same 32 bytes. BRK_ERR_CRYPTO. */
enum brk_err delivery_aes_key_new(char *out) BRK_WUR;

/* The stable id of an event: hex of SHA-256 over its suite, corp, source
 * entry id and InfoType, cut to DELIVERY_EVENT_ID_LEN digits. */
void delivery_event_id(const char *suite, const char *corp, const char *src_id,
                       const char *info_type,
                       char out[DELIVERY_EVENT_ID_LEN + 1]);

/* Backoff after the attempts-th failed attempt (1 s doubling, at most
 * 300 s), in ms. */
long long delivery_backoff_ms(int attempts);

/* The names of one service's delivery keys; tenant ones only with a
 * member. */
struct delivery_keys {
    char dlv[KEYS_MAX];
    char dk[KEYS_MAX];
    char ready[KEYS_MAX];
    char lease[KEYS_MAX];
    char seq[KEYS_MAX];
    char tenants[KEYS_MAX];
    char member[DELIVERY_MEMBER_MAX + 1]; /* "" without a tenant */
    char q[KEYS_MAX];
    char qa[KEYS_MAX];
    char dead[KEYS_MAX];
};

/* Fill k for service id and, with suite and corp, that tenant. BRK_OK,
 * BRK_ERR_INVAL for an id keys_id_ok refuses, BRK_ERR_TOOBIG. */
enum brk_err delivery_keys(struct delivery_keys *k, const char *prefix,
                           const char *svc, const char *suite,
                           const char *corp) BRK_WUR;
/* The same from a member "<suite>:<corp>". */
enum brk_err delivery_keys_member(struct delivery_keys *k, const char *prefix,
                                  const char *svc, const char *member) BRK_WUR;
/* The dedupe marker of event id for service svc. */
enum brk_err delivery_seen_key(char *out, size_t len, const char *prefix,
                               const char *svc, const char *event_id) BRK_WUR;
/* The wrapping context of a service's data key: "service:<id>". */
enum brk_err delivery_dk_context(char *out, size_t len,
                                 const char *svc) BRK_WUR;

#endif /* DELIVERY_DEF_H */
